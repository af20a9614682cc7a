/* vos_quota.c — per-module byte quotas: allocations up to the quota succeed, the one that
 * would exceed it returns NULL with ENOMEM and is counted; freeing makes room again (also
 * when another thread frees); other modules are unaffected; removing the quota lifts it.
 * The peak of a module whose quota was set first never exceeds the quota, while 8 threads
 * allocate and free in it. A request over the quota never makes another thread's request
 * that fits fail (before: up to 2.6 % of them did, while the refused bytes were counted for
 * a moment). VOS allocations in a pthread key destructor that runs after the thread gave
 * its heap up are served, counted (module and site) and held to the quota (before: NULL
 * with ENOMEM). A module whose only counts are quota refusals stays listed after its
 * quota is removed. A quota set after a higher peak restarts the peak from the quota
 * counter. A request the quota refuses counts as a refusal (out_of_memory) only: no
 * allocation or free in the core's statistics or the thread's counters (review R116: each
 * counted a malloc and a free of the block taken for it). Prints "vos quota ok". */
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define MODULE 3
static void *blocks[200];

static void *free_half(void *arg) {
    (void)arg;
    for (int i = 0; i < 50; i++) VOS_Free(blocks[i]);
    return NULL;
}

#define PEAK_MODULE 60
#define PEAK_QUOTA 100000

/** Random allocations and frees in PEAK_MODULE, 64 slots at a time. */
static void *churn_under_quota(void *arg) {
    void *slots[64] = {0};
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < 40000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 10) & 63;
        if (slots[k]) {
            VOS_Free(slots[k]);
            slots[k] = NULL;
        } else {
            slots[k] = VOS_Malloc(1 + (seed >> 16) % 2000, PEAK_MODULE);
        }
    }
    for (int k = 0; k < 64; k++) VOS_Free(slots[k]);
    return NULL;
}

#define RACE_MODULE 70
static volatile int race_done;

/** Asks again and again for 2 MiB in RACE_MODULE, over its 1 MiB quota: always refused. */
static void *ask_too_much(void *arg) {
    (void)arg;
    while (!race_done) CHECK(VOS_Malloc(2 << 20, RACE_MODULE) == NULL);
    return NULL;
}

#define EXIT_MODULE 80
static pthread_key_t exit_key;
static void *exit_blocks[4];
static int exit_rounds;

/** A key destructor that re-arms itself for three rounds, so that its last round runs
 *  after swmalloc's own (the thread's heap is gone then), and allocates in EXIT_MODULE. */
static void allocate_at_exit(void *arg) {
    (void)arg;
    if (++exit_rounds < 3) {
        CHECK(pthread_setspecific(exit_key, (void *)1) == 0);
        return;
    }
    exit_blocks[0] = VOS_Malloc(100, EXIT_MODULE);
    exit_blocks[1] = VOS_Calloc(2, 50, EXIT_MODULE);
    exit_blocks[2] = VOS_MallocModule(100, EXIT_MODULE);
    exit_blocks[3] = VOS_Malloc(2000, EXIT_MODULE);   /* over the 1000-byte quota */
}

static void *thread_with_exit_key(void *arg) {
    (void)arg;
    VOS_Free(VOS_Malloc(10, EXIT_MODULE));
    CHECK(pthread_setspecific(exit_key, (void *)1) == 0);
    return NULL;
}

int main(void) {
    void *before = VOS_Malloc(5000, MODULE);   /* allocated before the quota: not counted */
    CHECK(before != NULL);
    CHECK(swm_vos_set_quota(MODULE, 10000) == 0);
    int n = 0;
    for (; n < 200; n++) {
        errno = 0;
        blocks[n] = VOS_Malloc(100, MODULE);
        if (blocks[n] == NULL) break;
    }
    CHECKF(n == 100, "%d blocks of 100 bytes under a 10000-byte quota", n);
    CHECK(errno == ENOMEM);
    CHECK(VOS_MallocModule(1, MODULE) == NULL && errno == ENOMEM);
    void *other = VOS_Malloc(100000, MODULE + 1);
    CHECK(other != NULL);

    swm_vos_module_stats_t st;
    CHECK(swm_vos_module_stats(MODULE, &st) == 0);
    CHECKF(st.quota_bytes == 10000 && st.quota_live_bytes == 10000 && st.quota_refused == 2,
           "quota %zu live %zu refused %zu", st.quota_bytes, st.quota_live_bytes, st.quota_refused);
    CHECK(st.live_bytes == 15000 && st.live_blocks == 101);
    CHECK(st.peak_bytes >= 10000);

    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_half, NULL) == 0);
    pthread_join(t, NULL);
    for (int i = 0; i < 50; i++) CHECK((blocks[i] = VOS_Malloc(100, MODULE)) != NULL);
    CHECK(VOS_Malloc(100, MODULE) == NULL);
    /* A bigger realloc needs old + new bytes under the quota for a moment: refused, and
     * the old block is untouched. */
    CHECK(VOS_Realloc(blocks[0], 200, MODULE) == NULL && errno == ENOMEM);
    VOS_Free(blocks[1]);
    VOS_Free(blocks[2]);
    CHECK((blocks[0] = VOS_Realloc(blocks[0], 200, MODULE)) != NULL);
    /* In place too (100 -> 104 bytes fits the block): 9,900 + 104 bytes are over the
     * quota, so it is refused and the block keeps its bytes and its charge. */
    memset(blocks[3], 0x77, 100);
    CHECK(VOS_Realloc(blocks[3], 104, MODULE) == NULL && errno == ENOMEM);
    CHECK(((unsigned char *)blocks[3])[99] == 0x77);
    CHECK(swm_vos_module_stats(MODULE, &st) == 0 && st.quota_live_bytes == 9900);

    CHECK(swm_vos_set_quota(MODULE, 0) == 0);
    void *lifted = VOS_Malloc(50000, MODULE);
    CHECK(lifted != NULL);
    CHECK(swm_vos_module_stats(MODULE, &st) == 0);
    CHECKF(st.quota_refused == 5 && st.quota_bytes == 0, "refused %zu", st.quota_refused);
    VOS_Free(lifted);
    VOS_Free(before);
    VOS_Free(other);
    VOS_Free(blocks[0]);
    for (int i = 3; i < 100; i++) VOS_Free(blocks[i]);
    CHECK(swm_vos_module_stats(MODULE, &st) == 0);
    CHECKF(st.live_bytes == 0 && st.live_blocks == 0 && st.quota_live_bytes == 0, "live %ld quota live %zu",
           st.live_bytes, st.quota_live_bytes);

    /* The peak of a module with a quota comes from its exact quota counter: publications
     * and merged reads, which can count one thread's frees before another's allocations,
     * put it at up to 125 KB under a 100 KB quota. */
    CHECK(swm_vos_set_quota(PEAK_MODULE, PEAK_QUOTA) == 0);
    pthread_t churners[8];
    for (uintptr_t i = 0; i < 8; i++) CHECK(pthread_create(&churners[i], NULL, churn_under_quota, (void *)i) == 0);
    for (int i = 0; i < 8; i++) {
        CHECK(swm_vos_module_stats(PEAK_MODULE, &st) == 0);
        pthread_join(churners[i], NULL);
    }
    CHECK(swm_vos_module_stats(PEAK_MODULE, &st) == 0);
    CHECKF(st.peak_bytes > 0 && st.peak_bytes <= PEAK_QUOTA && st.live_bytes == 0,
           "peak %zu under a quota of %d, live %ld", st.peak_bytes, PEAK_QUOTA, st.live_bytes);
    CHECK(swm_vos_set_quota(RACE_MODULE, 1 << 20) == 0);
    pthread_t asker;
    CHECK(pthread_create(&asker, NULL, ask_too_much, NULL) == 0);
    int refused = 0;
    for (int i = 0; i < 300000; i++) {
        void *p = VOS_Malloc(64, RACE_MODULE);
        if (p == NULL) refused++;
        VOS_Free(p);
    }
    race_done = 1;
    pthread_join(asker, NULL);
    CHECKF(refused == 0, "%d of 300000 requests of 64 bytes refused under a 1 MiB quota (live: 64 bytes)", refused);

    CHECK(swm_vos_set_quota(EXIT_MODULE, 1000) == 0);
    CHECK(pthread_key_create(&exit_key, allocate_at_exit) == 0);
    pthread_t exiting;
    CHECK(pthread_create(&exiting, NULL, thread_with_exit_key, NULL) == 0);
    CHECK(pthread_join(exiting, NULL) == 0);
    CHECKF(exit_blocks[0] && exit_blocks[1] && exit_blocks[2], "VOS allocations in a late key destructor: %p %p %p",
           exit_blocks[0], exit_blocks[1], exit_blocks[2]);
    CHECK(exit_blocks[3] == NULL);
    CHECK(swm_vos_module_stats(EXIT_MODULE, &st) == 0);
    CHECKF(st.live_bytes == 300 && st.live_blocks == 3 && st.quota_live_bytes == 300 && st.quota_refused == 1,
           "module of the destructor's blocks: live %ld in %zu blocks, quota live %zu, refused %zu", st.live_bytes,
           st.live_blocks, st.quota_live_bytes, st.quota_refused);
    for (int i = 0; i < 3; i++) VOS_Free(exit_blocks[i]);
    CHECK(swm_vos_module_stats(EXIT_MODULE, &st) == 0);
    CHECKF(st.live_bytes == 0 && st.live_blocks == 0 && st.quota_live_bytes == 0, "live %ld after freeing", st.live_bytes);
    /* A module whose only counts are refusals stays listed once its quota is removed (it
     * vanished from swm_vos_modules and the reports: an outside review). */
    enum { REFUSING_MODULE = 77 };
    CHECK(swm_vos_set_quota(REFUSING_MODULE, 10) == 0);
    for (int i = 0; i < 5; i++) CHECK(VOS_MallocModule(100, REFUSING_MODULE) == NULL);
    CHECK(swm_vos_set_quota(REFUSING_MODULE, 0) == 0);
    static swm_vos_module_stats_t listed[64];
    size_t count = swm_vos_modules(listed, 64);
    int found = 0;
    for (size_t i = 0; i < count && i < 64; i++) found |= listed[i].module == REFUSING_MODULE && listed[i].quota_refused == 5;
    CHECKF(found, "module %d with 5 refusals and no quota left is not listed among %zu modules", REFUSING_MODULE, count);
    /* A quota set on a module that had a higher peak before: its peak counts from the
     * quota on (before, the 1 MiB from before stayed, ten times the quota). */
    void *early = VOS_Malloc(1 << 20, PEAK_MODULE + 1);
    CHECK(early != NULL);
    VOS_Free(early);
    CHECK(swm_vos_set_quota(PEAK_MODULE + 1, PEAK_QUOTA) == 0);
    void *late = VOS_Malloc(1000, PEAK_MODULE + 1);
    CHECK(late != NULL);
    CHECK(swm_vos_module_stats(PEAK_MODULE + 1, &st) == 0);
    CHECKF(st.peak_bytes == 1000, "peak %zu under a %d-byte quota set after a 1 MiB peak", st.peak_bytes,
           PEAK_QUOTA);
    VOS_Free(late);
    /* Removed and set again: the peak stays (only a first quota restarts it). */
    CHECK(swm_vos_set_quota(PEAK_MODULE + 1, 0) == 0);
    CHECK(swm_vos_set_quota(PEAK_MODULE + 1, 2 * PEAK_QUOTA) == 0);
    CHECK(swm_vos_module_stats(PEAK_MODULE + 1, &st) == 0);
    CHECKF(st.peak_bytes == 1000, "peak %zu after the quota was removed and set again (was 1000)", st.peak_bytes);
    enum { COUNTED_MODULE = 78 };
    CHECK(swm_vos_set_quota(COUNTED_MODULE, 100) == 0);
    void *warm = VOS_Malloc(50, COUNTED_MODULE);
    CHECK(warm != NULL);
    const size_t refused_sizes[] = {200, 100000, 5u << 20};
    for (int k = 0; k < 4; k++) {
        size_t size = refused_sizes[k < 3 ? k : 2];
        swm_stats_t a, b;
        CHECK(swm_stats_get(&a) == 0);
        uint64_t allocated = swm_thread_allocated(), freed = swm_thread_freed();
        for (int i = 0; i < 100; i++) {
            errno = 0;
            void *p = k < 3 ? VOS_Malloc(size, COUNTED_MODULE) : VOS_Calloc(1, size, COUNTED_MODULE);
            CHECK(p == NULL && errno == ENOMEM);
        }
        CHECK(swm_stats_get(&b) == 0);
        CHECKF(b.mallocs == a.mallocs && b.frees == a.frees && b.out_of_memory == a.out_of_memory + 100
               && b.allocated == a.allocated && swm_thread_allocated() == allocated && swm_thread_freed() == freed,
               "100 requests of %zu bytes refused by the quota%s: mallocs +%zu, frees +%zu, out of memory +%zu, "
               "allocated %+ld, thread allocated +%llu, freed +%llu", size, k < 3 ? "" : " (VOS_Calloc)",
               b.mallocs - a.mallocs, b.frees - a.frees, b.out_of_memory - a.out_of_memory,
               (long)(b.allocated - a.allocated), (unsigned long long)(swm_thread_allocated() - allocated),
               (unsigned long long)(swm_thread_freed() - freed));
    }
    VOS_Free(warm);
    printf("vos quota ok\n");
    return 0;
}
