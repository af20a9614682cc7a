/* fork.c — fork from a multithreaded process. Three threads allocate, check and free
 * blocks without pause while the main thread forks 30 times; each child allocates and
 * frees (also from a new thread), checks its heap with swm_validate() and exits 0, with
 * an alarm so that a deadlock kills it. The parent checks every child's status. Linked
 * with -lswmalloc. Prints "fork ok" and exits 0 when every child exited 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "swmalloc.h"

/** Allocating threads, and children forked. */
enum { THREADS = 3, FORKS = 30 };

/** Tells the allocating threads to stop. */
static _Atomic int stop;

/** Set when an allocating thread found a block overwritten. */
static _Atomic int corrupted;

/** Allocates, fills, checks and frees blocks of varied sizes until told to stop. */
static void *churn(void *arg) {
    uintptr_t seed = (uintptr_t)arg;
    void *held[64] = {0};
    for (unsigned long i = 0; !stop; i++) {
        size_t k = (i * 7 + seed) % 64, n = 16 + (i * 131 + seed * 977) % 20000;
        if (held[k]) {
            unsigned char *p = held[k];
            if (p[0] != (unsigned char)k) corrupted = 1;
            free(p);
        }
        held[k] = malloc(n);
        if (held[k]) memset(held[k], (int)k, n);
    }
    for (int k = 0; k < 64; k++) free(held[k]);
    return NULL;
}

/** What a child does on a second thread: allocate and free. */
static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) free(malloc((size_t)(i % 300) * 8 + 1));
    return NULL;
}

/** The child's work: mallocs and frees on its main thread and a new thread, then a heap
 *  check; returns the exit status. */
static int child(void) {
    alarm(10);
    void *blocks[500];
    for (int i = 0; i < 500; i++) {
        blocks[i] = malloc((size_t)(i * 37) % 5000 + (i % 50 == 0 ? 300000 : 0));
        if (!blocks[i]) return 2;
        memset(blocks[i], i, (size_t)(i * 37) % 5000);
    }
    for (int i = 0; i < 500; i++) free(blocks[i]);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL)) return 3;
    pthread_join(t, NULL);
    char *s = NULL;
    if (asprintf(&s, "child %d", (int)getpid()) < 0) return 4;
    free(s);
    return swm_validate() == 0 ? 0 : 5;
}

/** Forks FORKS children while THREADS threads allocate; checks each child's status. */
int main(void) {
    pthread_t threads[THREADS];
    for (uintptr_t t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, churn, (void *)t);
    int failures = 0;
    for (int i = 0; i < FORKS; i++) {
        void *mine = malloc(100 + (size_t)i * 1000);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) _exit(child());
        int status = 0;
        if (waitpid(pid, &status, 0) != pid) {
            perror("waitpid");
            return 1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork %d: child %s %d\n", i, WIFEXITED(status) ? "exited with" : "killed by signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            failures++;
        }
        free(mine);
        usleep(2000);
    }
    stop = 1;
    for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    if (corrupted) fprintf(stderr, "a block was overwritten in the parent\n");
    if (failures || corrupted || swm_validate() != 0) return 1;
    printf("fork ok\n");
    return 0;
}
