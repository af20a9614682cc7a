/* atfork_early.c — fork handlers registered before swmalloc's allocate and free.
 *
 * Built twice: with -DATFORK_EARLY_LIB -shared it is a library whose constructor registers
 * fork handlers; a library the program needs is initialised before a preloaded swmalloc,
 * so its handlers are registered first: its prepare handler runs after swmalloc's, its
 * parent and child handlers before swmalloc's — while swmalloc's fork holds its locks.
 * The handler named by ATFORK_MODE (prepare, parent or child) allocates ATFORK_COUNT
 * blocks of ATFORK_SIZE bytes (large and huge ones take swmalloc's global locks) and
 * frees them. Without -DATFORK_EARLY_LIB it is the program, linked with the library: it
 * forks once, and prints "atfork ok" when the parent and the child both finished (after
 * 20 s it kills the child and exits 3 instead of hanging: before the fix, all three
 * handlers deadlocked). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef ATFORK_EARLY_LIB

/** Which handler allocates (1 prepare, 2 parent, 3 child), and what. */
static int mode;
static size_t size, count;

/** Allocates, writes and frees the blocks if `who` is the chosen handler. */
static void work(int who) {
    if (who != mode) return;
    void *blocks[64];
    for (size_t i = 0; i < count; i++) {
        blocks[i] = malloc(size);
        if (!blocks[i]) abort();
        memset(blocks[i], 1, size);
    }
    for (size_t i = 0; i < count; i++) free(blocks[i]);
}

static void prepare(void) { work(1); }
static void parent(void) { work(2); }
static void child(void) { work(3); }

__attribute__((constructor)) static void register_handlers(void) {
    const char *m = getenv("ATFORK_MODE"), *s = getenv("ATFORK_SIZE"), *c = getenv("ATFORK_COUNT");
    mode = !m ? 0 : !strcmp(m, "prepare") ? 1 : !strcmp(m, "parent") ? 2 : !strcmp(m, "child") ? 3 : 0;
    size = s ? strtoul(s, NULL, 10) : 100000;
    count = c ? strtoul(c, NULL, 10) : 1;
    if (count > 64) count = 64;
    pthread_atfork(prepare, parent, child);
}

#else

/** The child, once forked: killed with the parent when the time is up, so that a child
 *  hung in a fork handler does not outlive the test. */
static volatile pid_t forked;

static void time_up(int signal) {
    (void)signal;
    if (forked > 0) kill(forked, SIGKILL);
    _exit(3);
}

int main(void) {
    signal(SIGALRM, time_up);
    alarm(20);
    free(malloc(10));
    pid_t pid = fork();
    forked = pid;
    if (pid < 0) return 2;
    if (pid == 0) _exit(0);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child status %#x\n", status);
        return 1;
    }
    printf("atfork ok\n");
    return 0;
}

#endif
