/* vos_quota.c — per-module byte quotas: allocations up to the quota succeed, the one that
 * would exceed it returns NULL with ENOMEM and is counted; freeing makes room again (also
 * when another thread frees); other modules are unaffected; removing the quota lifts it.
 * The peak of a module whose quota was set first never exceeds the quota, while 8 threads
 * allocate and free in it. Prints "vos quota ok". */
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

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

    CHECK(swm_vos_set_quota(MODULE, 0) == 0);
    void *lifted = VOS_Malloc(50000, MODULE);
    CHECK(lifted != NULL);
    CHECK(swm_vos_module_stats(MODULE, &st) == 0);
    CHECKF(st.quota_refused == 4 && st.quota_bytes == 0, "refused %zu", st.quota_refused);
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
    printf("vos quota ok\n");
    return 0;
}
