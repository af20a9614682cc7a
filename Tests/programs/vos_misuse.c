/* vos_misuse.c MODE — mixing VOS and plain malloc, each case defined:
 *   free-vos         VOS blocks (small, large, huge; site and module-only) released with
 *                    plain free(): credited to their module and site; prints "ok".
 *   accept-malloc    VOS_Free_Debug(VOS_FREE_ACCEPT_MALLOC, p) frees malloc blocks too.
 *   vos-free-malloc, vos-free-huge-malloc, vos-double-free, free-then-vos-free,
 *   vos-free-garbage, vos-free-above-user-space (a live VOS block's address 2^47 higher):
 *                    print "pointer 0x…" then abort with one "swmalloc:" line naming it
 *                    and the caller's file:line.
 *   free-vos-twice   a VOS block given to plain free() twice: a double free.
 *   realloc-vos      plain realloc() of a VOS block: aborts naming the pointer and saying
 *                    it is a VOS block.
 *   realloc-vos-0    the same with size 0 (which would free it), for a small block and
 *   realloc-vos-huge-0  for a huge one (whose mapping realloc claims first).
 *   usable-size-vos  malloc_usable_size() of a VOS block: the same. */
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <malloc.h>
#include <string.h>

static void announce(void *p) {
    printf("pointer %p\n", p);
    fflush(stdout);
}

static void expect_module(unsigned long module, long bytes, size_t blocks) {
    swm_vos_module_stats_t st;
    CHECK(swm_vos_module_stats(module, &st) == 0);
    CHECKF(st.live_bytes == bytes && st.live_blocks == blocks, "module %lu: %ld bytes %zu blocks", module,
           st.live_bytes, st.live_blocks);
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    const char *mode = argv[1];
    if (strcmp(mode, "free-vos") == 0) {
        const size_t sizes[4] = {24, 300000, 3u << 20, 0};
        for (int i = 0; i < 4; i++) {
            void *a = VOS_Malloc(sizes[i], 9);
            void *b = VOS_MallocModule(sizes[i], 9);
            CHECK(a && b);
            expect_module(9, 2 * (long)sizes[i], 2);
            free(a);
            free(b);
            expect_module(9, 0, 0);
        }
        swm_vos_site_stats_t sites[8];
        size_t n = swm_vos_sites(sites, 8);
        CHECK(n == 1 && sites[0].allocs == 4 && sites[0].frees == 4 && sites[0].live_bytes == 0);
        printf("ok\n");
    } else if (strcmp(mode, "accept-malloc") == 0) {
        void *m = malloc(64);
        VOS_Free_Debug(VOS_FREE_ACCEPT_MALLOC, m, (const unsigned char *)__FILE__, __LINE__);
        void *v = VOS_Malloc(64, 5);
        VOS_Free_Debug(VOS_FREE_ACCEPT_MALLOC, v, (const unsigned char *)__FILE__, __LINE__);
        expect_module(5, 0, 0);
        swm_vos_module_stats_t st;
        CHECK(swm_vos_module_stats(5, &st) == 0 && st.allocs == 1 && st.frees == 1);
        printf("ok\n");
    } else if (strcmp(mode, "vos-free-malloc") == 0) {
        void *m = malloc(64);
        announce(m);
        VOS_Free(m);
    } else if (strcmp(mode, "vos-free-huge-malloc") == 0) {
        void *m = malloc(3u << 20);
        announce(m);
        VOS_Free(m);
    } else if (strcmp(mode, "vos-double-free") == 0) {
        void *p = VOS_Malloc(64, 5);
        announce(p);
        VOS_Free(p);
        VOS_Free(p);
    } else if (strcmp(mode, "free-then-vos-free") == 0) {
        void *p = VOS_Malloc(3u << 20, 5);
        announce(p);
        free(p);
        VOS_Free(p);
    } else if (strcmp(mode, "vos-free-garbage") == 0) {
        static char not_heap[64];
        announce(not_heap + 16);
        VOS_Free(not_heap + 16);
    } else if (strcmp(mode, "vos-free-above-user-space") == 0) {
        char *p = VOS_Malloc(64, 5);
        CHECK(p != NULL);
        announce(p + (1ull << 47));
        VOS_Free(p + (1ull << 47));
    } else if (strcmp(mode, "huge-reused-interior") == 0) {
        /* A huge VOS block freed, its mapping cached and handed to malloc: free() of the
         * new block's start + 16 is an interior pointer, whatever the old header said. */
        void *v = VOS_Malloc(5u << 20, 7);
        CHECK(v != NULL);
        VOS_Free(v);
        char *p = malloc(5u << 20);
        CHECK(p != NULL);
        memset(p + 16, 0x11, 100);
        announce(p + 16);
        free(p + 16);
    } else if (strcmp(mode, "free-vos-twice") == 0) {
        void *p = VOS_Malloc(64, 5);
        void *keep = VOS_Malloc(64, 5);   /* the page stays in use: its blocks stay marked */
        CHECK(p != NULL && keep != NULL);
        announce(p);
        free(p);
        free(p);
    } else if (strcmp(mode, "realloc-vos") == 0) {
        void *p = VOS_Malloc(64, 5);
        announce(p);
        p = realloc(p, 128);
    } else if (strcmp(mode, "realloc-vos-0") == 0) {
        void *p = VOS_Malloc(64, 5);
        announce(p);
        p = realloc(p, 0);
    } else if (strcmp(mode, "realloc-vos-huge-0") == 0) {
        void *p = VOS_Malloc(3 << 20, 5);
        announce(p);
        p = realloc(p, 0);
    } else if (strcmp(mode, "usable-size-vos") == 0) {
        void *p = VOS_Malloc(64, 5);
        announce(p);
        printf("%zu\n", malloc_usable_size(p));
    } else {
        CHECKF(0, "unknown mode %s", mode);
    }
    return 0;
}
