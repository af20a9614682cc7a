/*     signal_thread_start handler
 * A signal handler that allocates while its thread is inside glibc's pthread_join: the
 * handler's malloc(40 MiB) is the one that maps enough to start the purger, and
 * pthread_create takes the loader's stack-cache lock, which the interrupted pthread_join
 * holds while it frees the joined thread's stack. The process waits for good there (a
 * known limitation, README "Signals"; glibc's malloc creates no thread). What it must
 * keep is the program's signal mask: swmalloc blocked every signal of the calling thread
 * around pthread_create, and only SIGKILL ended the hung process (review R80). The test
 * runner sends SIGTERM after a few seconds and expects the process to die of it; if the
 * handler ever survives, it prints "signal thread start ok".
 *
 * The signal is raised at the point where the lock is held: this program defines `free`
 * (the executable comes first in the symbol lookup, so glibc's own calls to free, from
 * `_dl_deallocate_tls` under that lock, reach it), which calls swmalloc's free and then,
 * once armed on the main thread, raises SIGUSR1 there. A 64 MiB thread stack is more than
 * glibc's 40 MiB stack cache keeps, so pthread_join frees it.
 *
 *     signal_thread_start sigwait
 * A server's pattern: SIGINT and SIGTERM blocked in every thread (after start-up), to be
 * taken with sigwait, without handlers: a thread's 40 MiB starts the purger at once.
 *     signal_thread_start blocked
 * The same with handlers installed for them (a pool whose workers are born with the
 * process's handled signals blocked, so that the main thread takes them). Versions that
 * put starts off in what they took for signal handlers never started the purger in these
 * two (reviews R84, R85), and the freed memory stayed.
 *
 * Prints "signal thread start ok" and exits 0. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"

static volatile pid_t armed;   /* the thread to raise SIGUSR1 on after a free (0: none) */
static volatile int raised, handled;

void free(void *p) {
    static void (*next)(void *);
    if (next == NULL) next = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    next(p);
    if (armed != 0 && armed == (pid_t)syscall(SYS_gettid)) {
        armed = 0;
        raised = 1;
        syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
    }
}

static void handler(int signo) {
    (void)signo;
    char *p = malloc(40u << 20);
    if (p != NULL) {
        memset(p, 1, 4096);
        free(p);
    }
    handled = 1;
}

static void *body(void *arg) { return arg; }

/** Whether one of this process's threads is swmalloc's purger (`swm-purger`). */
static int purger_runs(void) {
    DIR *tasks = opendir("/proc/self/task");
    CHECK(tasks != NULL);
    int found = 0;
    struct dirent *entry;
    while (!found && (entry = readdir(tasks)) != NULL) {
        char path[300], name[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", entry->d_name);
        FILE *comm = entry->d_name[0] == '.' ? NULL : fopen(path, "r");
        if (comm == NULL) continue;
        found = fgets(name, sizeof name, comm) != NULL && strcmp(name, "swm-purger\n") == 0;
        fclose(comm);
    }
    closedir(tasks);
    return found;
}

static void *map_and_free(void *arg) {
    char *p = malloc(40u << 20);
    CHECK(p != NULL);
    memset(p, 1, 4096);
    free(p);
    return arg;
}

static int blocked_for_sigwait(int handled) {
    if (handled) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        CHECK(sigaction(SIGINT, &sa, NULL) == 0 && sigaction(SIGTERM, &sa, NULL) == 0);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, map_and_free, NULL) == 0 && pthread_join(thread, NULL) == 0);
    int waited = 0;
    while (!purger_runs() && waited < 2000) {
        usleep(10000);
        waited += 10;
    }
    CHECKF(purger_runs(), "no purger %d ms after a thread mapped and freed 40 MiB with SIGINT and SIGTERM blocked", waited);
    printf("signal thread start ok\n");
    return 0;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    if (strcmp(argv[1], "sigwait") == 0) return blocked_for_sigwait(0);
    if (strcmp(argv[1], "blocked") == 0) return blocked_for_sigwait(1);
    CHECK(strcmp(argv[1], "handler") == 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, 64u << 20) == 0);
    pthread_t thread;
    CHECK(pthread_create(&thread, &attr, body, NULL) == 0);
    usleep(100000);   /* the thread has ended: pthread_join frees its stack at once */
    armed = (pid_t)syscall(SYS_gettid);
    CHECK(pthread_join(thread, NULL) == 0);
    armed = 0;
    CHECKF(raised && handled, "the signal was not raised inside pthread_join (raised %d, handled %d)", raised, handled);
    printf("signal thread start ok\n");
    return 0;
}
