/* purger_exit.c — the main thread ends with pthread_exit while another thread's start of
 * the background purger is failing (this program's pthread_create, which the library
 * calls, holds a detached creation for 300 ms and then refuses it with EAGAIN): the
 * process must still end when that thread does. Before the fix the failed start put the
 * purger's state back to "not started" over the main thread's "stopped for good", a
 * purger started a second later, and, blocking every signal, it kept the process alive
 * for ever (review R12). Linked with -lswmalloc (so that the library's pthread_create
 * is this one); prints "purger exit ok" from the last thread. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static atomic_int detached_refused;

/** Refuses the first detached creation (swmalloc's purger) after 300 ms. */
int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg) {
    static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    if (!real) real = (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))dlsym(RTLD_NEXT, "pthread_create");
    int state = 0;
    if (attr && pthread_attr_getdetachstate(attr, &state) == 0 && state == PTHREAD_CREATE_DETACHED &&
        atomic_fetch_add(&detached_refused, 1) == 0) {
        struct timespec pause = {0, 300 * 1000 * 1000};
        nanosleep(&pause, NULL);
        return EAGAIN;
    }
    return real(thread, attr, start, arg);
}

static void *worker(void *arg) {
    (void)arg;
    char *a = malloc((size_t)40 << 20);   /* 40 MiB mapped: the purger is wanted */
    CHECK(a != NULL);
    memset(a, 1, 4096);
    sleep(2);                             /* past the retry delay of a failed start */
    void *b = malloc((size_t)8 << 20);    /* slow paths: a start would be tried again */
    CHECK(b != NULL);
    free(b);
    free(a);
    CHECKF(atomic_load(&detached_refused) >= 1, "the purger's start was never attempted: nothing was tested");
    static const char done[] = "purger exit ok\n";
    CHECK(write(1, done, sizeof done - 1) == (ssize_t)(sizeof done - 1));
    return NULL;
}

int main(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
    struct timespec pause = {0, 100 * 1000 * 1000};   /* the worker is in the failing start */
    nanosleep(&pause, NULL);
    pthread_exit(NULL);
}
