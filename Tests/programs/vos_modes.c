/* vos_modes.c — the build macro and the fixed ABI. This file is compiled with
 * VOS_MEM_MODULE_ONLY: VOS_Malloc records modules only (no site appears). The three
 * fixed entry points, looked up with dlsym as a benchmark does, charge module + site
 * (VOS_MallocWithDebug) or the module (VOS_MallocModule) and VOS_Free_Debug frees both.
 * A huge VOS_Calloc reads as zero. A site whose __FILE__ text is unmapped (the library
 * that allocated was dlclose'd) is still named by swm_vos_sites and the reports. Every
 * size from 0 to 1,100 bytes (VOS_MallocModule's fast path ends at 1,008, where the
 * request with its header leaves malloc's size-indexed slots) and a few above get a block
 * of their own: all live at once, each filled, none overwritten by another, all charged.
 * VOS_Realloc within the block keeps it in place, a huge block too. Prints "vos modes ok". */
#define VOS_MEM_MODULE_ONLY
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <dlfcn.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef void *(*with_debug_fn)(unsigned long, unsigned long, const unsigned char *, unsigned int);
typedef void *(*module_fn)(unsigned long, unsigned long);
typedef void (*free_fn)(unsigned long, void *, const unsigned char *, unsigned int);

int main(void) {
    void *a = VOS_Malloc(100, 12);
    void *b = VOS_Calloc(2, 50, 12);
    CHECK(a && b && ((unsigned char *)b)[99] == 0);
    b = VOS_Realloc(b, 300, 12);
    CHECK(b != NULL);
    CHECK(swm_vos_sites(NULL, 0) == 0);

    with_debug_fn with_debug = (with_debug_fn)dlsym(RTLD_DEFAULT, "VOS_MallocWithDebug");
    module_fn module_only = (module_fn)dlsym(RTLD_DEFAULT, "VOS_MallocModule");
    free_fn vos_free = (free_fn)dlsym(RTLD_DEFAULT, "VOS_Free_Debug");
    CHECK(with_debug && module_only && vos_free);
    void *c = with_debug(1000, 12, (const unsigned char *)"bench.c", 77);
    void *d = module_only(2000, 12);
    CHECK(c && d);

    swm_vos_module_stats_t st;
    CHECK(swm_vos_module_stats(12, &st) == 0);
    CHECKF(st.live_bytes == 3400 && st.live_blocks == 4 && st.allocs == 5 && st.frees == 1,
           "%ld bytes %zu blocks %zu allocs %zu frees", st.live_bytes, st.live_blocks, st.allocs, st.frees);
    swm_vos_site_stats_t site;
    CHECK(swm_vos_sites(&site, 1) == 1);
    CHECK(strcmp(site.file, "bench.c") == 0 && site.line == 77 && site.live_bytes == 1000 && site.module == 12);

    vos_free(0, c, (const unsigned char *)__FILE__, __LINE__);
    vos_free(0, d, (const unsigned char *)__FILE__, __LINE__);
    VOS_Free(a);
    VOS_Free(b);
    CHECK(swm_vos_module_stats(12, &st) == 0 && st.live_bytes == 0 && st.live_blocks == 0 && st.frees == 5);

    /* VOS_Calloc of a huge block reads as zero when its mapping comes from the huge cache,
     * dirty (it returned 3 MiB of 0xcd when the VOS path took cached mappings for fresh). */
    size_t n = (size_t)3 << 20;
    unsigned char *dirty = VOS_Malloc(n, 13);
    CHECK(dirty != NULL);
    memset(dirty, 0xcd, n);
    VOS_Free(dirty);
    unsigned char *zeroed = VOS_Calloc(n, 1, 13);
    CHECK(zeroed != NULL);
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++) nonzero += zeroed[i] != 0;
    CHECKF(nonzero == 0, "VOS_Calloc(%zu, 1): %zu bytes not zero", n, nonzero);
    CHECK(swm_vos_module_stats(13, &st) == 0 && st.live_bytes == (long)n && st.live_blocks == 1);
    VOS_Free(zeroed);

    /* The file name of a site lives in the caller's object; dlclose unmaps it while its
     * blocks stay live (the leak report read it there and died with SIGSEGV). */
    char *text = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(text != MAP_FAILED);
    strcpy(text, "plugin/unloaded.c");
    void *kept = with_debug(64, 14, (const unsigned char *)text, 9);
    CHECK(kept != NULL);
    CHECK(munmap(text, 4096) == 0);
    swm_vos_site_stats_t sites[4];
    long count = (long)swm_vos_sites(sites, 4);
    int named = 0;
    for (long i = 0; i < count && i < 4; i++)
        named += sites[i].line == 9 && strcmp(sites[i].file, "plugin/unloaded.c") == 0;
    CHECKF(named == 1, "%ld sites, the unloaded file's named %d times", count, named);
    int fds[2];
    CHECK(pipe(fds) == 0);
    swm_vos_report(fds[1], 1);
    close(fds[1]);
    char report[8192];
    ssize_t got = read(fds[0], report, sizeof report - 1);
    CHECK(got > 0);
    report[got] = 0;
    CHECKF(strstr(report, "\"file\":\"plugin/unloaded.c\",\"line\":9") != NULL, "report: %s", report);
    vos_free(0, kept, (const unsigned char *)__FILE__, __LINE__);

    enum { sizes = 1101, extra = 4 };
    static unsigned char *blocks[sizes + extra];
    static const size_t bigger[extra] = {4000, 70000, 300000, (size_t)5 << 20};
    long expected = 0;
    for (size_t i = 0; i < sizes + extra; i++) {
        size_t size = i < sizes ? i : bigger[i - sizes];
        blocks[i] = module_only(size, 15);
        CHECKF(blocks[i] != NULL && ((uintptr_t)blocks[i] & 15) == 0, "VOS_MallocModule(%zu) = %p", size, (void *)blocks[i]);
        memset(blocks[i], (int)(i * 7 + 1), size);
        expected += (long)size;
    }
    for (size_t i = 0; i < sizes + extra; i++) {
        size_t size = i < sizes ? i : bigger[i - sizes];
        for (size_t k = 0; k < size; k++)
            if (blocks[i][k] != (unsigned char)(i * 7 + 1)) CHECKF(0, "block of %zu bytes overwritten at %zu", size, k);
    }
    CHECK(swm_vos_module_stats(15, &st) == 0);
    CHECKF(st.live_bytes == expected && st.live_blocks == sizes + extra, "%ld bytes (%ld expected), %zu blocks",
           st.live_bytes, expected, st.live_blocks);
    for (size_t i = 0; i < sizes + extra; i++) vos_free(0, blocks[i], (const unsigned char *)__FILE__, __LINE__);
    CHECK(swm_vos_module_stats(15, &st) == 0 && st.live_bytes == 0 && st.live_blocks == 0);

    /* VOS_Realloc within the block stays in place (it always copied): a small block and a
     * large one, shrunk and grown inside their core block, keep their address and bytes;
     * the call still counts as an allocation and a free, the new size is charged to the
     * new module and site and the old one credited. Leaving the block (more than it
     * holds, or less than half of it) moves it. */
    unsigned char *r = VOS_ReallocWithDebug(NULL, 100, 16, (const unsigned char *)"r.c", 1);
    CHECK(r != NULL);
    memset(r, 0x5a, 100);
    unsigned char *r2 = VOS_ReallocWithDebug(r, 104, 17, (const unsigned char *)"r.c", 2);
    CHECKF(r2 == r, "VOS_Realloc(100 -> 104) moved the block: %p -> %p", (void *)r, (void *)r2);
    for (int k = 0; k < 100; k++) CHECK(r2[k] == 0x5a);
    swm_vos_module_stats_t st16, st17;
    CHECK(swm_vos_module_stats(16, &st16) == 0 && swm_vos_module_stats(17, &st17) == 0);
    CHECKF(st16.live_bytes == 0 && st16.allocs == 1 && st16.frees == 1 && st17.live_bytes == 104 &&
           st17.live_blocks == 1 && st17.allocs == 1, "module 16: %ld bytes %zu allocs %zu frees; 17: %ld bytes %zu blocks",
           st16.live_bytes, st16.allocs, st16.frees, st17.live_bytes, st17.live_blocks);
    swm_vos_site_stats_t rs[16];
    long nsites = (long)swm_vos_sites(rs, 16);
    int site1 = -1, site2 = -1;
    for (long i = 0; i < nsites && i < 16; i++) {
        if (strcmp(rs[i].file, "r.c") == 0 && rs[i].line == 1) site1 = (int)i;
        if (strcmp(rs[i].file, "r.c") == 0 && rs[i].line == 2) site2 = (int)i;
    }
    CHECK(site1 >= 0 && site2 >= 0 && rs[site1].live_bytes == 0 && rs[site2].live_bytes == 104);
    unsigned char *moved = VOS_ReallocModule(r2, 4000, 17);
    CHECK(moved != NULL && moved != r2 && moved[99] == 0x5a);
    VOS_Free(moved);
    unsigned char *big = VOS_ReallocModule(NULL, 300000, 18);
    CHECK(big != NULL);
    memset(big, 0x3c, 300000);
    unsigned char *big2 = VOS_ReallocModule(big, 290000, 18);
    CHECKF(big2 == big, "VOS_Realloc(300000 -> 290000) moved the block");
    CHECK(big2[0] == 0x3c && big2[289999] == 0x3c);
    CHECK(swm_vos_module_stats(18, &st) == 0 && st.live_bytes == 290000 && st.live_blocks == 1);
    unsigned char *small = VOS_ReallocModule(big2, 1000, 18);
    CHECK(small != big2 && small[999] == 0x3c);
    CHECK(swm_vos_module_stats(18, &st) == 0 && st.live_bytes == 1000 && st.live_blocks == 1 && st.frees == 2);
    VOS_Free(small);
    /* A huge block (above 2 MiB) stays in place as realloc keeps it: shrunk within the
     * half rule, its mapping's end given back (it was copied every time, and briefly held
     * both sizes: review R45); grown, its bytes kept and its charge the new size. */
    size_t hs[] = {(size_t)10 << 20, ((size_t)10 << 20) - 16, (size_t)9 << 20, (size_t)6 << 20};
    unsigned char *h = VOS_ReallocModule(NULL, hs[0], 19);
    CHECK(h != NULL);
    memset(h, 0x6b, hs[0]);
    for (size_t i = 1; i < sizeof hs / sizeof hs[0]; i++) {
        unsigned char *h2 = VOS_ReallocModule(h, hs[i], 19);
        CHECKF(h2 == h, "VOS_Realloc(huge -> %zu) moved the block", hs[i]);
        CHECK(h2[0] == 0x6b && h2[hs[i] - 1] == 0x6b);
        CHECKF(swm_vos_module_stats(19, &st) == 0 && st.live_bytes == (long)hs[i] && st.live_blocks == 1,
               "huge VOS_Realloc to %zu: %ld live bytes, %zu blocks", hs[i], st.live_bytes, st.live_blocks);
    }
    unsigned char *grown = VOS_ReallocModule(h, (size_t)12 << 20, 19);
    CHECK(grown != NULL && grown[0] == 0x6b && grown[((size_t)6 << 20) - 1] == 0x6b);
    CHECK(swm_vos_module_stats(19, &st) == 0 && st.live_bytes == (long)12 << 20 && st.live_blocks == 1);
    VOS_Free(grown);
    CHECK(swm_vos_module_stats(19, &st) == 0 && st.live_bytes == 0 && st.live_blocks == 0);
    printf("vos modes ok\n");
    return 0;
}
