/* vos_peak.c — a module's peak stays exact while another thread reads the statistics:
 *     vos_peak SIZE SECONDS
 * One thread allocates a VOS block of SIZE bytes in module 42 and frees it, over and over
 * (the module's live bytes are only ever 0 or SIZE); the main thread reads
 * swm_vos_module_stats meanwhile. Every read's live bytes must be at most SIZE and at
 * most its peak, and at the end the peak must be SIZE exactly (one thread using the
 * module, no read made while it was not allocating could count more). Before, a read
 * that crossed a publication counted its bytes twice and raised the peak to 2 or 3 ×
 * SIZE for good (an outside review), and one that every retry found crossed returned
 * twice the live bytes (another). Prints "ok: N reads, peak P".
 *     vos_peak fork CHILDREN
 * While a thread allocates and frees 70,000-byte blocks in module 7 (a publication on
 * every call), the process forks; each child holds 60,000 bytes of module 7 on each of 4
 * threads (never published) and reads the statistics: the peak must reach the live bytes
 * less at most one publication torn by the fork (170,000). Before, a fork inside a
 * publication left the module's generation odd in the child, and no read there raised
 * the peak again (68 of 200 children). Prints "ok: N children".
 *     vos_peak realloc 0
 * A block resized in place by VOS_Realloc, in a module without a quota (a large block
 * shrunk and grown, huge blocks shrunk and grown with mremap): the module's peak is the
 * larger of the two sizes (the shrinks stay in place; a growth may move). Before, the
 * new size was charged before the old one was credited and the peak counted both (an
 * outside review, R61: 20 MiB shrunk to 12 MiB, peak 32 MiB). A block that moved held
 * both, so its peak may be their sum. Prints "ok: N in place".
 *     vos_peak refused 0
 * A VOS_Realloc refused for memory (RLIMIT_AS) of a block counted against its module's
 * quota, into another module, or into its own after its quota was removed: the quota's
 * count keeps the block until its free (review R87). And a VOS_Realloc refused for memory
 * leaves the statistics as they were, with or without a quota: the modules' allocs,
 * frees and peaks and the sites' counts (review R116: the new size, charged before the
 * resize and credited after, raised a 5 MiB block's module's peak to the size refused,
 * and counted two allocations and two frees). Prints "ok: refused reallocs". */
#include "check.h"
#include <errno.h>
#include <sys/resource.h>
#include "swmalloc.h"
#include "vos_mem.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static size_t size;
static atomic_int stop;

static void *churn(void *arg) {
    while (!atomic_load(&stop)) {
        void *p = VOS_MallocModule(size, 42);
        CHECK(p != NULL);
        VOS_Free(p);
    }
    return arg;
}

/** A child's thread: 60,000 bytes of module 7, held until the process exits. */
static atomic_int holding;

static void *hold(void *arg) {
    CHECK(VOS_MallocModule(60000, 7) != NULL);
    atomic_fetch_add(&holding, 1);
    pause();
    return arg;
}

/** Allocates and frees 70,000-byte blocks in module 7 until told to stop. */
static void *publish_loop(void *arg) {
    while (!atomic_load(&stop)) {
        void *p = VOS_MallocModule(70000, 7);
        CHECK(p != NULL);
        VOS_Free(p);
    }
    return arg;
}

/** `vos_peak fork CHILDREN`. */
static int fork_children(int children) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, publish_loop, NULL) == 0);
    usleep(10000);
    for (int i = 0; i < children; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            pthread_t h[4];
            atomic_store(&holding, 0);
            for (int k = 0; k < 4; k++) CHECK(pthread_create(&h[k], NULL, hold, NULL) == 0);
            /* All four blocks held (a fixed 20 ms sleep saw two of them under a loaded run). */
            while (atomic_load(&holding) < 4) usleep(1000);
            swm_vos_module_stats_t st;
            for (int r = 0; r < 100; r++) CHECK(swm_vos_module_stats(7, &st) == 0);
            CHECKF(st.peak_bytes >= 170000, "child %d: peak %zu, live %ld after quiet reads", i, st.peak_bytes, st.live_bytes);
            _exit(0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", i);
    }
    atomic_store(&stop, 1);
    CHECK(pthread_join(t, NULL) == 0);
    printf("ok: %d children\n", children);
    return 0;
}

/** The peaks of blocks resized by VOS_Realloc, one module per resize; then again while
 * another module has a quota (which made every module's in-place resize charge the new
 * size before crediting the old one: 20 MiB shrunk to 12 MiB, peak 32 MiB, review R82). */
static int realloc_peaks(void) {
    static const size_t sizes[][2] = {
        {1000000, 600000}, {600000, 1000000}, {20u << 20, 12u << 20}, {3u << 20, 5u << 20}, {12u << 20, 20u << 20},
    };
    const size_t count = sizeof sizes / sizeof sizes[0];
    int in_place = 0;
    for (size_t k = 0; k < 2 * count; k++) {
        size_t i = k % count;
        if (k == count) CHECK(swm_vos_set_quota(399, 1ul << 30) == 0);
        unsigned long module = 300 + k;
        char *p = VOS_Malloc(sizes[i][0], module);
        CHECK(p != NULL);
        memset(p, 1, 4096);
        char *q = VOS_Realloc(p, sizes[i][1], module);
        CHECK(q != NULL);
        swm_vos_module_stats_t st;
        CHECK(swm_vos_module_stats(module, &st) == 0);
        size_t larger = sizes[i][0] > sizes[i][1] ? sizes[i][0] : sizes[i][1];
        if (q == p) {
            in_place++;
            CHECKF(st.peak_bytes == larger, "%zu -> %zu in place: peak %zu, want %zu", sizes[i][0], sizes[i][1],
                   st.peak_bytes, larger);
        } else {
            CHECKF(st.peak_bytes >= larger && st.peak_bytes <= sizes[i][0] + sizes[i][1],
                   "%zu -> %zu moved: peak %zu", sizes[i][0], sizes[i][1], st.peak_bytes);
        }
        CHECKF(st.live_bytes == (long)sizes[i][1], "%zu -> %zu: live %ld", sizes[i][0], sizes[i][1], st.live_bytes);
        VOS_Free(q);
    }
    CHECKF(in_place >= 4, "only %d of the resizes stayed in place (the two shrinks do, twice)", in_place);
    printf("ok: %d in place\n", in_place);
    return 0;
}

/** Sums of every site's allocations and frees. */
static void site_counts(size_t *allocs, size_t *frees) {
    static swm_vos_site_stats_t sites[64];
    size_t n = swm_vos_sites(sites, 64);
    CHECK(n <= 64);
    *allocs = *frees = 0;
    for (size_t i = 0; i < n; i++) {
        *allocs += sites[i].allocs;
        *frees += sites[i].frees;
    }
}

/** VOS_Realloc(p, 900 MiB, target) under an address-space limit 64 MiB above what the
 * process maps: it must fail with ENOMEM and change no statistics of `module` (p's) or
 * `target`, nor any site's. */
static void realloc_refused(void *p, unsigned long module, unsigned long target) {
    swm_vos_module_stats_t before, target_before, after;
    size_t site_allocs, site_frees, allocs_after, frees_after;
    CHECK(swm_vos_module_stats(module, &before) == 0 && swm_vos_module_stats(target, &target_before) == 0);
    site_counts(&site_allocs, &site_frees);
    struct rlimit limit;
    CHECK(getrlimit(RLIMIT_AS, &limit) == 0);
    struct rlimit tight = {statm_bytes(0) + (64u << 20), limit.rlim_max};
    CHECK(setrlimit(RLIMIT_AS, &tight) == 0);
    errno = 0;
    void *q = VOS_Realloc(p, 900u << 20, target);
    int error = errno;
    CHECK(setrlimit(RLIMIT_AS, &limit) == 0);
    CHECKF(q == NULL && error == ENOMEM, "VOS_Realloc to 900 MiB under a 64 MiB margin: %p, errno %d", q, error);
    CHECK(swm_vos_module_stats(module, &after) == 0);
    CHECKF(after.allocs == before.allocs && after.frees == before.frees && after.peak_bytes == before.peak_bytes
           && after.live_bytes == before.live_bytes,
           "module %lu after the refused realloc: allocs %zu, frees %zu, peak %zu, live %ld; before %zu, %zu, %zu, %ld",
           module, after.allocs, after.frees, after.peak_bytes, after.live_bytes, before.allocs, before.frees,
           before.peak_bytes, before.live_bytes);
    CHECK(swm_vos_module_stats(target, &after) == 0);
    CHECKF(after.allocs == target_before.allocs && after.frees == target_before.frees
           && after.peak_bytes == target_before.peak_bytes,
           "module %lu, the refused realloc's: allocs %zu, frees %zu, peak %zu; before %zu, %zu, %zu", target,
           after.allocs, after.frees, after.peak_bytes, target_before.allocs, target_before.frees, target_before.peak_bytes);
    site_counts(&allocs_after, &frees_after);
    CHECKF(allocs_after == site_allocs && frees_after == site_frees,
           "sites after the refused realloc: %zu allocs, %zu frees; before %zu, %zu", allocs_after, frees_after,
           site_allocs, site_frees);
}

/** A refused VOS_Realloc of a block counted against its module's quota, into a module
 * without one (`other`), or into its own after the quota was removed: the quota counter
 * still holds the block, and its free takes it out once (review R87: the refused resize
 * credited it and never charged it back; the free then wrapped the counter and the module
 * refused everything for good). */
static int refused_realloc(int other) {
    const unsigned long module = 700 + (unsigned long)other;
    CHECK(swm_vos_set_quota(module, 1ul << 30) == 0);
    char *p = VOS_Malloc(8u << 20, module);
    CHECK(p != NULL);
    memset(p, 1, 4096);
    if (!other) CHECK(swm_vos_set_quota(module, 0) == 0);
    realloc_refused(p, module, other ? 799 : module);
    swm_vos_module_stats_t st;
    CHECK(swm_vos_module_stats(module, &st) == 0);
    CHECKF(st.quota_live_bytes == 8u << 20, "after the refused realloc: quota live %zu, want %u", st.quota_live_bytes, 8u << 20);
    VOS_Free(p);
    CHECK(swm_vos_module_stats(module, &st) == 0);
    CHECKF(st.quota_live_bytes == 0, "after the free: quota live %zu", st.quota_live_bytes);
    CHECK(swm_vos_set_quota(module, 1ul << 30) == 0);
    void *r = VOS_Malloc(100, module);
    CHECKF(r != NULL, "VOS_Malloc(100) under a 1 GiB quota with nothing live: errno %d", errno);
    VOS_Free(r);
    return 0;
}

int main(int argc, char **argv) {
    CHECK(argc == 3);
    if (strcmp(argv[1], "fork") == 0) return fork_children(atoi(argv[2]));
    if (strcmp(argv[1], "realloc") == 0) return realloc_peaks();
    if (strcmp(argv[1], "refused") == 0) {
        if (refused_realloc(1) != 0 || refused_realloc(0) != 0) return 1;
        /* A module that never had a quota, a huge block, into itself and into a module
           with a quota. */
        char *p = VOS_Malloc(5u << 20, 710);
        CHECK(p != NULL);
        memset(p, 1, 4096);
        CHECK(swm_vos_set_quota(711, 4ul << 30) == 0);
        realloc_refused(p, 710, 710);
        realloc_refused(p, 710, 711);
        VOS_Free(p);
        printf("ok: refused reallocs\n");
        return 0;
    }
    size = (size_t)strtoull(argv[1], NULL, 0);
    int seconds = atoi(argv[2]);
    CHECK(size > 0 && seconds > 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, churn, NULL) == 0);
    long reads = 0;
    time_t start = time(NULL);
    swm_vos_module_stats_t st;
    while (time(NULL) - start < seconds) {
        CHECK(swm_vos_module_stats(42, &st) == 0);
        CHECKF(st.live_bytes <= (long)size && st.live_bytes <= (long)st.peak_bytes,
               "read %ld: live %ld, peak %zu (true live 0 or %zu)", reads, st.live_bytes, st.peak_bytes, size);
        reads++;
    }
    atomic_store(&stop, 1);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(swm_vos_module_stats(42, &st) == 0);
    CHECKF(st.peak_bytes == size && st.live_bytes == 0, "after %ld reads: peak %zu (true %zu), live %ld", reads,
           st.peak_bytes, size, st.live_bytes);
    printf("ok: %ld reads, peak %zu\n", reads, st.peak_bytes);
    return 0;
}
