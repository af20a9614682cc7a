/* vos_accept_race.c — VOS_Free with VOS_FREE_ACCEPT_MALLOC of a plain 4 MiB-aligned block
 * must not disturb another thread's huge block:  vos_accept_race SECONDS
 * Runs with swmalloc preloaded (VOS_Free_Debug found with dlsym) and thp=system, so that
 * a huge block of 2 MiB + 4 KiB starts 64 KiB into its 4 MiB-aligned mapping and often
 * lies right below the aligned block. The main thread frees the aligned block through
 * VOS_Free_Debug(VOS_FREE_ACCEPT_MALLOC, …) and allocates another; a second thread frees
 * and allocates the huge block. Every free is legitimate and single: the program must
 * end with exit 0 and print "ok: N VOS_Free calls, the blocks adjacent M times".
 * Before: VOS_Free claimed the mapping below the aligned block (its pointer − 16 lies
 * there) while it looked for a VOS header, and the other thread's free of its own huge
 * block aborted as an invalid pointer meanwhile (2 of 3 runs of 8 s). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "check.h"

#define MIB ((size_t)1 << 20)

static void (*vos_free)(unsigned long flags, void *ptr, const unsigned char *file, unsigned int line);
static atomic_int stop;
static atomic_long adjacent;
static _Atomic(uintptr_t) aligned_now;

/** Frees and allocates the huge block until told to stop, counting the times it lay in
 *  the 4 MiB right below the aligned block. */
static void *huge_churn(void *arg) {
    void *q = arg;
    while (!atomic_load(&stop)) {
        free(q);
        q = malloc(2 * MIB + 4096);
        CHECK(q != NULL);
        if (((uintptr_t)q & ~(4 * MIB - 1)) + 4 * MIB == atomic_load(&aligned_now)) atomic_fetch_add(&adjacent, 1);
    }
    free(q);
    return NULL;
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    int seconds = atoi(argv[1]);
    vos_free = (void (*)(unsigned long, void *, const unsigned char *, unsigned int))dlsym(RTLD_DEFAULT, "VOS_Free_Debug");
    CHECKF(vos_free != NULL, "run with swmalloc preloaded");
    void *p = aligned_alloc(4 * MIB, MIB);
    void *q = malloc(2 * MIB + 4096);
    CHECK(p != NULL && q != NULL);
    atomic_store(&aligned_now, (uintptr_t)p);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, huge_churn, q) == 0);
    time_t start = time(NULL);
    long calls = 0;
    while (time(NULL) - start < seconds) {
        vos_free(1, p, (const unsigned char *)__FILE__, __LINE__);
        p = aligned_alloc(4 * MIB, MIB);
        CHECK(p != NULL);
        atomic_store(&aligned_now, (uintptr_t)p);
        calls++;
    }
    atomic_store(&stop, 1);
    CHECK(pthread_join(t, NULL) == 0);
    free(p);
    printf("ok: %ld VOS_Free calls, the blocks adjacent %ld times\n", calls, (long)atomic_load(&adjacent));
    return 0;
}
