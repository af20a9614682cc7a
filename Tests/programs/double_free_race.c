/* double_free_race.c — two threads free the same huge block at the same moment:
 *     double_free_race TRIALS SIZE [vos | realloc | aligned-realloc | interior]
 * Runs with swmalloc preloaded. Each trial is a child process: it allocates a block of
 * SIZE bytes, two threads (the one that allocated it and another, or two others, by
 * turns) wait on one flag and then both call free() on it; with `vos`, the block comes
 * from VOS_MallocModule and both call VOS_Free_Debug (looked up with dlsym, so the
 * program is not linked with swmalloc). The allocator
 * must abort that child (SIGABRT) with exactly one line on stderr that names the block;
 * reaching the end of the trial (the double free absorbed), another signal, or no end
 * within 5 s (an outside review found the huge cache's list made cyclic by the two
 * frees, so that the next malloc spun forever holding its lock) fails the program (exit
 * 1, the trial's outcome on stderr). Prints "N trials aborted" and exits 0 otherwise.
 *
 * With `realloc`, one of the two is a thread that never allocated before and calls
 * realloc instead of free: to 4 × SIZE (grown in its mapping) in trials 0, 1, 4, 5, …,
 * to SIZE / 8 (copied to a large block) in the others. The block must be claimed before
 * it is read or copied. Before, such a thread (no heap yet) copied the block instead of
 * growing it, and every shrink copies: the other thread's free could unmap the block
 * under the copy, SIGSEGV in memcpy (an outside review). A trial may also end normally:
 * the realloc grew the block where it was before the free came, which then freed it.
 * Prints "N trials".
 *
 * With `aligned-realloc`, the same with a block aligned to 4 MiB (aligned_alloc, kept in
 * swmalloc's own table of over-aligned blocks rather than the huge blocks' map). Before
 * realloc claimed such a block before copying it (the shrink to SIZE / 8), the free
 * could unmap it under the copy: SIGSEGV with no message in about half the trials
 * (review R50).
 *
 * With `interior`, one of the two frees a pointer 4 KiB into the block instead (an
 * invalid free): still exactly one line, naming either pointer. Before, the invalid
 * free's brief claim of the mapping made the valid free report a double free as well:
 * two lines in 2–8 % of the trials (an outside review).
 *
 * Only huge blocks are tested: the two frees of a small or large block race on the
 * block's mark with plain loads and stores, which the README lists as not caught. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static atomic_int ready, go;
static void *victim;
static size_t size;
/** The victim's address, for the parent (a shared page). */
static uintptr_t *announced;
/** The VOS functions, in `vos` mode (NULL otherwise). */
static void *(*vos_malloc)(unsigned long size, unsigned long module);
/** `realloc` mode: one racer grows the victim instead of freeing it. */
static int realloc_mode;
/** `aligned-realloc` mode: as `realloc`, with a victim aligned to 4 MiB. */
static int aligned_mode;
/** `interior` mode: one racer frees a pointer 4 KiB into the victim. */
static int interior_mode;
/** What that realloc returned (the victim when it grew in place before the free). */
static void *grown;
/** The size that realloc asks for in this trial. */
static size_t resize_to;
static void (*vos_free)(unsigned long flags, void *ptr, const unsigned char *file, unsigned int line);

/** Frees the victim as it was allocated. */
static void free_victim(void) {
    if (vos_free) vos_free(0, victim, (const unsigned char *)__FILE__, __LINE__);
    else free(victim);
}

/** Says it is ready, waits for the flag, then frees the victim. */
static void spin_free(void) {
    atomic_fetch_add(&ready, 1);
    while (!atomic_load_explicit(&go, memory_order_acquire)) {}
    free_victim();
}

/** A thread with a heap of its own (it allocated before) that frees the victim. */
static void *racer(void *arg) {
    free(malloc(size));
    spin_free();
    return arg;
}

/** A thread with no heap yet that grows the victim when the flag is raised. */
static void *growing_racer(void *arg) {
    atomic_fetch_add(&ready, 1);
    while (!atomic_load_explicit(&go, memory_order_acquire)) {}
    grown = realloc(victim, resize_to);
    return arg;
}

/** A thread with a heap of its own that frees a pointer inside the victim. */
static void *interior_racer(void *arg) {
    free(malloc(size));
    atomic_fetch_add(&ready, 1);
    while (!atomic_load_explicit(&go, memory_order_acquire)) {}
    free((char *)victim + 4096);
    return arg;
}

/** One trial, in a child: the victim freed by the thread that allocated it and another
 *  (`owner`), or by two other threads. Returns only if the double free went unreported. */
static void trial(int owner) {
    alarm(5);
    void *keep = malloc(realloc_mode ? 64 : size);
    victim = vos_malloc ? vos_malloc(size, 7) : aligned_mode ? aligned_alloc(4 << 20, size) : malloc(size);
    CHECK(keep != NULL && victim != NULL);
    memset(victim, 1, size);
    *announced = (uintptr_t)victim;
    int n = owner ? 1 : 2;
    pthread_t t[2];
    for (int i = 0; i < n; i++) {
        void *(*body)(void *) = i > 0 ? racer : realloc_mode ? growing_racer : interior_mode ? interior_racer : racer;
        CHECK(pthread_create(&t[i], NULL, body, NULL) == 0);
    }
    while (atomic_load(&ready) < n) {}
    if (owner) {
        atomic_store_explicit(&go, 1, memory_order_release);
        free_victim();
    } else {
        atomic_store_explicit(&go, 1, memory_order_release);
    }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    if (realloc_mode && grown == victim) _exit(0);   /* grown in place, then freed: in order */
    /* Absorbed: does the allocator hand the block out twice now (or hang)? */
    void *p = malloc(size), *q = malloc(size);
    fprintf(stderr, "double free of %p absorbed (then %p, %p)\n", victim, p, q);
    free(keep);
    _exit(3);
}

int main(int argc, char **argv) {
    CHECK(argc == 3 || (argc == 4 && (strcmp(argv[3], "vos") == 0 || strcmp(argv[3], "realloc") == 0
                                      || strcmp(argv[3], "aligned-realloc") == 0
                                      || strcmp(argv[3], "interior") == 0)));
    int trials = atoi(argv[1]);
    size = (size_t)strtoull(argv[2], NULL, 0);
    CHECK(trials > 0 && size > 0);
    aligned_mode = argc == 4 && strcmp(argv[3], "aligned-realloc") == 0;
    realloc_mode = aligned_mode || (argc == 4 && strcmp(argv[3], "realloc") == 0);
    interior_mode = argc == 4 && strcmp(argv[3], "interior") == 0;
    if (argc == 4 && !realloc_mode && !interior_mode) {
        vos_malloc = (void *(*)(unsigned long, unsigned long))dlsym(RTLD_DEFAULT, "VOS_MallocModule");
        vos_free = (void (*)(unsigned long, void *, const unsigned char *, unsigned int))dlsym(RTLD_DEFAULT, "VOS_Free_Debug");
        CHECK(vos_malloc != NULL && vos_free != NULL);
    }
    announced = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(announced != MAP_FAILED);
    for (int t = 0; t < trials; t++) {
        int err[2];
        CHECK(pipe(err) == 0);
        pid_t child = fork();
        CHECK(child >= 0);
        if (child == 0) {
            dup2(err[1], 2);
            close(err[0]);
            close(err[1]);
            resize_to = (t / 2) % 2 ? size / 8 : 4 * size;
            trial(t % 2 == 0);
        }
        close(err[1]);
        char text[4096];
        size_t got = 0;
        ssize_t n;
        while (got < sizeof text - 1 && (n = read(err[0], text + got, sizeof text - 1 - got)) > 0) got += (size_t)n;
        text[got] = 0;
        close(err[0]);
        int status;
        CHECK(waitpid(child, &status, 0) == child);
        int aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
        int lines = 0;
        for (size_t i = 0; i < got; i++) lines += text[i] == '\n';
        /* The one line names the block: "swmalloc: ... (pointer 0x...)" (in `interior`
         * mode, the block or the pointer inside it). */
        char pointer[64], inside[64];
        snprintf(pointer, sizeof pointer, "(pointer 0x%" PRIxPTR ")", *announced);
        snprintf(inside, sizeof inside, "(pointer 0x%" PRIxPTR ")", *announced + 4096);
        int named = strstr(text, pointer) != NULL || (interior_mode && strstr(text, inside) != NULL);
        if (realloc_mode && WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == 0) continue;
        CHECKF(aborted && lines == 1 && strncmp(text, "swmalloc: ", 10) == 0 && named,
               "trial %d: %s %d, stderr: %s", t, WIFSIGNALED(status) ? "signal" : "exit",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), text);
    }
    printf(realloc_mode ? "%d trials\n" : "%d trials aborted\n", trials);
    return 0;
}
