/* fatal_once.c — a fatal report whose process does not end, then a misuse on another
 * thread, which must still report its own line (and abort):
 *     fatal_once recovered | recovered_exit | recovered_then_other | cancelled | vfork
 * Run with swmalloc preloaded.
 *   recovered  a SIGABRT handler siglongjmps out of the first report (POSIX allows it);
 *              a second thread's invalid free must report and abort too (the handler
 *              recovers it as well): exit 0, two lines.
 *   recovered_exit  in a child, a worker's invalid free whose SIGABRT handler
 *              siglongjmps out, the worker going on (asleep), then exit(7): the child must
 *              end with status 7 within 1.5 s (the first form of the exit's wait for
 *              another thread's abort, review R124's fix, waited 3 s for this one).
 *   recovered_then_other  in a child, main's invalid free whose SIGABRT handler
 *              siglongjmps out (SIGABRT then back to its default), a worker's invalid free
 *              100 ms later, main's _exit 20 ms after that: the child must die of SIGABRT
 *              (review R127: the worker waited 50 ms for main's long-past abort, and the
 *              _exit ended the child with status 0).
 *   cancelled  a thread with a cancellation pending makes an invalid free: its report
 *              must not be cut short by the cancellation (write is a cancellation point):
 *              SIGABRT with its line, which names the pointer it printed ("thread
 *              pointer 0x…"). Before, the thread ended silently and the main thread's
 *              next misuse waited for it for ever.
 *   vfork      a vfork child reports and dies; the parent's invalid free must report its
 *              line and abort (SIGABRT).
 * The first reporter holds the others off so that one misuse prints one line; a version
 * that held them off for ever hung at the second misuse in each mode (review R18). */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static __thread sigjmp_buf recovery;
static void on_abort(int signal) { (void)signal; siglongjmp(recovery, 1); }

/** SIGABRT goes to `on_abort`, which jumps back to `recovery`. */
static void catch_abort(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_abort;
    CHECK(sigaction(SIGABRT, &sa, NULL) == 0);
}

/** An invalid free: 8 bytes into a live block. */
static void bad_free(void) {
    char *p = malloc(64);
    CHECK(p != NULL);
    free(p + 8);
}

static void *recovered_second(void *arg) {
    if (sigsetjmp(recovery, 1) == 0) {
        bad_free();
        fprintf(stderr, "second: free returned\n");
        exit(1);
    }
    return arg;
}

static volatile sig_atomic_t worker_recovered;

static void *recovered_worker(void *arg) {
    if (sigsetjmp(recovery, 1) == 0) bad_free();
    else worker_recovered = 1;
    for (;;) pause();
    return arg;
}

static double monotonic_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *misuse_later(void *arg) {
    usleep(100000);
    bad_free();
    return arg;
}

static void *cancelled_first(void *arg) {
    int old;
    CHECK(pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old) == 0);
    sleep(1);   /* the main thread cancels it meanwhile */
    char *p = malloc(64);
    CHECK(p != NULL);
    printf("thread pointer %p\n", (void *)(p + 8));
    fflush(stdout);
    CHECK(pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old) == 0);
    free(p + 8);   /* an invalid free, with a cancellation pending */
    return arg;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    free(malloc(1));
    if (!strcmp(argv[1], "recovered")) {
        catch_abort();
        if (sigsetjmp(recovery, 1) == 0) {
            bad_free();
            fprintf(stderr, "main: free returned\n");
            return 1;
        }
        pthread_t t;
        CHECK(pthread_create(&t, NULL, recovered_second, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        printf("recovered twice\n");
        return 0;
    }
    if (!strcmp(argv[1], "recovered_exit")) {
        double start = monotonic_now();
        pid_t child = fork();
        CHECK(child >= 0);
        if (child == 0) {
            catch_abort();
            pthread_t t;
            CHECK(pthread_create(&t, NULL, recovered_worker, NULL) == 0);
            while (!worker_recovered) usleep(1000);
            exit(7);
        }
        int status;
        CHECK(waitpid(child, &status, 0) == child);
        double took = monotonic_now() - start;
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 7, "status %#x, not exit 7", status);
        CHECKF(took < 1.5, "the child took %.2f s to exit after its worker recovered from the abort", took);
        printf("recovered exit\n");
        return 0;
    }
    if (!strcmp(argv[1], "recovered_then_other")) {
        pid_t child = fork();
        CHECK(child >= 0);
        if (child == 0) {
            catch_abort();
            if (sigsetjmp(recovery, 1) == 0) bad_free();
            signal(SIGABRT, SIG_DFL);
            pthread_t t;
            CHECK(pthread_create(&t, NULL, misuse_later, NULL) == 0);
            usleep(120000);
            _exit(0);
        }
        int status;
        CHECK(waitpid(child, &status, 0) == child);
        CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
               "a worker's misuse after main recovered from its own, main's _exit 20 ms later: status %#x", status);
        printf("second misuse aborted\n");
        return 0;
    }
    if (!strcmp(argv[1], "cancelled")) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, cancelled_first, NULL) == 0);
        CHECK(pthread_cancel(t) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        bad_free();
        return 1;
    }
    if (!strcmp(argv[1], "vfork")) {
        pid_t child = vfork();
        if (child == 0) {
            bad_free();
            _exit(0);
        }
        int status;
        CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
        bad_free();
        return 1;
    }
    return 2;
}
