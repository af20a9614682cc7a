/* vos_peak.c — a module's peak stays exact while another thread reads the statistics:
 *     vos_peak SIZE SECONDS
 * One thread allocates a VOS block of SIZE bytes in module 42 and frees it, over and over
 * (the module's live bytes are only ever 0 or SIZE); the main thread reads
 * swm_vos_module_stats meanwhile. At the end the peak must be SIZE exactly (one thread
 * using the module, no read made while it was not allocating could count more). Before,
 * a read that crossed a publication counted its bytes twice and raised the peak to 2 or
 * 3 × SIZE for good (an outside review). Prints "ok: N reads, peak P". */
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

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

int main(int argc, char **argv) {
    CHECK(argc == 3);
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
