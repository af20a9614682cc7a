/* vos_leaks.c — the leak report finds planted leaks at their exact file:line.
 * Three sites leak (different sizes and counts, one from another thread), one site
 * frees everything; the program checks swm_vos_sites itself, prints the lines it planted
 * as "planted FILE:LINE BYTES BLOCKS" (largest first), then writes the text report to
 * stdout with swm_vos_report; the Swift test compares the two. With SWMALLOC_OPTIONS
 * stats_print/stats_json the full report at exit carries the same sites. Module 43 has
 * a quota of SIZE_MAX bytes, wider than its column: the module table's rows must still
 * split into their 9 columns (its peak and quota ran together: an outside review), the
 * other columns stay under their headings, and the JSON report and `swmalloc stats`
 * read it (the tool dropped the report of a quota above LONG_MAX: review R23). Module 43
 * keeps 200 bytes allocated before its quota and 100 after: 300 live bytes, 100 of them
 * counted against the quota (the reports' "quota live"). */
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <limits.h>
#include <pthread.h>
#include <string.h>

static int line_small, line_thread;

static void *leak_from_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++) {
        void *p = VOS_Malloc(5000, 41); line_thread = __LINE__;
        CHECK(p != NULL);
    }
    return NULL;
}

int main(void) {
    int line_big = 0, line_freed = 0;
    for (int i = 0; i < 4; i++) {
        void *p = VOS_Malloc(10000, 40); line_big = __LINE__;
        CHECK(p != NULL);
    }
    for (int i = 0; i < 10; i++) {
        void *p = VOS_Calloc(10, 30, 42); line_small = __LINE__;
        CHECK(p != NULL);
    }
    for (int i = 0; i < 100; i++) {
        void *p = VOS_Malloc(777, 40); line_freed = __LINE__;
        VOS_Free(p);
    }
    CHECK(VOS_MallocModule(200, 43) != NULL);   /* module-only: no site */
    CHECK(swm_vos_set_quota(43, SIZE_MAX) == 0);
    VOS_Free(VOS_MallocModule(100, 43));
    CHECK(VOS_MallocModule(100, 43) != NULL);
    swm_vos_module_stats_t quota;
    CHECK(swm_vos_module_stats(43, &quota) == 0);
    CHECKF(quota.live_bytes == 300 && quota.live_blocks == 2 && quota.quota_live_bytes == 100,
           "module 43: %ld live bytes, %zu blocks, %zu under the quota", (long)quota.live_bytes,
           quota.live_blocks, quota.quota_live_bytes);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, leak_from_thread, NULL) == 0);
    pthread_join(t, NULL);

    swm_vos_site_stats_t sites[16];
    size_t n = swm_vos_sites(sites, 16);
    CHECKF(n == 4, "%zu sites", n);
    const int lines[4] = {line_big, line_thread, line_small, line_freed};
    const long bytes[4] = {40000, 15000, 3000, 0};
    const unsigned long modules[4] = {40, 41, 42, 40};
    for (int i = 0; i < 4; i++) {
        CHECKF(strcmp(sites[i].file, __FILE__) == 0, "site %d file %s", i, sites[i].file);
        CHECKF(sites[i].line == (unsigned long)lines[i] && sites[i].live_bytes == bytes[i]
               && sites[i].module == modules[i],
               "site %d: %s:%lu module %lu %ld bytes, expected line %d module %lu %ld bytes", i, sites[i].file,
               sites[i].line, sites[i].module, sites[i].live_bytes, lines[i], modules[i], bytes[i]);
    }
    CHECK(sites[3].live_blocks == 0 && sites[3].allocs == 100 && sites[3].frees == 100);
    CHECK(sites[0].live_blocks == 4 && sites[1].live_blocks == 3 && sites[2].live_blocks == 10);
    for (int i = 0; i < 3; i++)
        printf("planted %s:%d %ld %zu\n", __FILE__, lines[i], bytes[i], sites[i].live_blocks);
    fflush(stdout);
    swm_vos_report(1, 0);
    return 0;
}
