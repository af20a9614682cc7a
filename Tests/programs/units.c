/* units.c — unit checks of the core through its C API, one case per run:
 *     units CASE       (or: units list)
 * Size classes, usable sizes of every tier (address-to-metadata lookup), and free lists.
 * Linked with -lswmalloc. Exits 0 when the case holds and swm_validate() finds the heap
 * consistent, 1 with a message on stderr otherwise. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>

#include "check.h"
#include "swmalloc.h"

/** Largest small size: 128 KiB. */
#define SMALL_MAX ((size_t)128 * 1024)

/** The class table: 16 … 128 step 16, then eight classes per doubling up to 128 KiB,
 *  strictly increasing, multiples of 16, neighbours from 128 bytes on ≤ 12.5 % apart. */
static void case_class_table(void) {
    unsigned count = swm_class_count();
    CHECKF(count == 8 + 8 * 10, "count %u", count);
    for (unsigned c = 0; c < 8; c++) CHECKF(swm_class_size(c) == 16 * (c + 1), "class %u", c);
    for (unsigned k = 7; k < 17; k++) {
        for (unsigned j = 0; j < 8; j++) {
            unsigned c = 8 + 8 * (k - 7) + j;
            size_t want = ((size_t)1 << k) + (size_t)(j + 1) * ((size_t)1 << (k - 3));
            CHECKF(swm_class_size(c) == want, "class %u: %zu, want %zu", c, swm_class_size(c), want);
        }
    }
    CHECK(swm_class_size(count - 1) == SMALL_MAX);
    CHECK(swm_class_size(count) == 0 && swm_class_size(count + 100) == 0);
    for (unsigned c = 1; c < count; c++) {
        size_t prev = swm_class_size(c - 1), size = swm_class_size(c);
        CHECK(size > prev && size % 16 == 0);
        if (prev >= 128) CHECKF((size - prev) * 8 <= prev, "%zu -> %zu is over 12.5 %%", prev, size);
    }
}

/** Every size 1 … 128 KiB maps to the smallest class that holds it; larger sizes to none. */
static void case_class_of(void) {
    unsigned count = swm_class_count();
    for (size_t n = 1; n <= SMALL_MAX; n++) {
        unsigned c = swm_class_of(n);
        CHECKF(c < count, "size %zu: class %u", n, c);
        CHECKF(swm_class_size(c) >= n, "size %zu: class %u of %zu", n, c, swm_class_size(c));
        CHECKF(c == 0 || swm_class_size(c - 1) < n, "size %zu: class %u is not the smallest", n, c);
    }
    static const size_t big[] = {SMALL_MAX + 1, SMALL_MAX + 16, 1 << 20, SIZE_MAX / 2, SIZE_MAX};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        CHECKF(swm_class_of(big[i]) == count, "size %zu: class %u", big[i], swm_class_of(big[i]));
}

/** malloc_usable_size(malloc(n)) is exactly the size of n's class, for every small n. */
static void case_usable_is_class_size(void) {
    for (size_t n = 1; n <= SMALL_MAX; n += (n < 4096 ? 1 : 61)) {
        void *p = malloc(n);
        CHECK(p != NULL);
        size_t want = swm_class_size(swm_class_of(n));
        CHECKF(malloc_usable_size(p) == want, "size %zu: usable %zu, class size %zu", n,
               malloc_usable_size(p), want);
        free(p);
    }
    for (unsigned c = 0; c < swm_class_count(); c++) {
        void *p = malloc(swm_class_size(c));
        CHECK(malloc_usable_size(p) == swm_class_size(c));
        free(p);
    }
}

/** Usable sizes of small, large (the request in whole 4 KiB pages, in a span of 64 KiB
 *  slices) and huge blocks (own mappings: whole pages), found from the pointer alone,
 *  many blocks live at once. */
static void case_lookup_tiers(void) {
    static const size_t sizes[] = {16, 100, 4000, 131072, 131073, 200000, 1000000, 2097152,
                                   2097153, 3000000, 9000000};
    enum { N = sizeof sizes / sizeof sizes[0], COPIES = 4 };
    void *blocks[N][COPIES];
    for (int k = 0; k < COPIES; k++)
        for (int i = 0; i < N; i++) blocks[i][k] = malloc(sizes[i]);
    for (int k = 0; k < COPIES; k++) {
        for (int i = 0; i < N; i++) {
            size_t n = sizes[i], usable = malloc_usable_size(blocks[i][k]);
            CHECK(blocks[i][k] != NULL);
            if (n <= SMALL_MAX)
                CHECKF(usable == swm_class_size(swm_class_of(n)), "small %zu: usable %zu", n, usable);
            else if (n <= (size_t)2 << 20)
                CHECKF(usable >= n && usable < n + 4096 && usable % 4096 == 0,
                       "large %zu: usable %zu", n, usable);
            else
                CHECKF(usable >= n && usable < n + ((size_t)2 << 20) && usable % 4096 == 0,
                       "huge %zu: usable %zu", n, usable);
            memset(blocks[i][k], (int)i, usable);
        }
    }
    for (int k = 0; k < COPIES; k++)
        for (int i = 0; i < N; i++) free(blocks[i][k]);
}

/** realloc grows a large block in place: within its span (whole 64 KiB slices), and past
 *  it into free slices right after it; usable size the new request in 4 KiB pages,
 *  contents kept. A block right behind it makes it move, contents kept. A huge block
 *  grows (its pages move to a larger mapping), contents kept. */
static void case_large_realloc_in_place(void) {
    unsigned char *p = malloc(140000);              /* 3 slices: the span ends at 196,608 */
    CHECK(p != NULL);
    CHECKF(malloc_usable_size(p) == 143360, "usable %zu", malloc_usable_size(p));
    for (size_t i = 0; i < 140000; i++) p[i] = (unsigned char)(i * 7);
    uintptr_t before = (uintptr_t)p;
    unsigned char *q = realloc(p, 190000);
    CHECKF((uintptr_t)q == before, "grown within the span: moved from %#lx to %p", (unsigned long)before, (void *)q);
    CHECKF(malloc_usable_size(q) == 192512, "usable %zu", malloc_usable_size(q));
    memset(q + 140000, 0xEE, 190000 - 140000);
    /* A fresh heap's segment has free slices after the block: it takes them. */
    unsigned char *r = realloc(q, 1000000);
    CHECKF((uintptr_t)r == before && malloc_usable_size(r) == 1003520, "past the span: %p usable %zu",
           (void *)r, malloc_usable_size(r));
    for (size_t i = 0; i < 140000; i++) CHECKF(r[i] == (unsigned char)(i * 7), "byte %zu", i);
    for (size_t i = 140000; i < 190000; i++) CHECKF(r[i] == 0xEE, "byte %zu", i);
    memset(r + 190000, 0x11, 1000000 - 190000);
    /* A block right after the span: growing past it moves the block. */
    unsigned char *behind = malloc(140000);
    CHECK(behind != NULL);
    if ((uintptr_t)behind == before + 16 * 65536) {
        unsigned char *m = realloc(r, 1100000);
        CHECK(m != NULL && (uintptr_t)m != before);
        for (size_t i = 0; i < 140000; i++) CHECKF(m[i] == (unsigned char)(i * 7), "byte %zu", i);
        for (size_t i = 190000; i < 1000000; i++) CHECKF(m[i] == 0x11, "byte %zu", i);
        r = m;
    }
    free(behind);
    free(r);
    /* A huge block grows by moving its pages: contents kept, usable at least the request. */
    size_t n = 3 * 1024 * 1024;
    unsigned char *h = malloc(n);
    CHECK(h != NULL);
    for (size_t i = 0; i < n; i += 512) h[i] = (unsigned char)(i >> 9);
    for (size_t grown = n * 2; grown <= 48 * 1024 * 1024; n = grown, grown *= 2) {
        h = realloc(h, grown);
        CHECK(h != NULL && malloc_usable_size(h) >= grown);
        for (size_t i = 0; i < 3 * 1024 * 1024; i += 512) CHECKF(h[i] == (unsigned char)(i >> 9), "byte %zu of %zu", i, grown);
        memset(h + n, 0x22, grown - n);
    }
    CHECK(h[n - 1] == 0x22);
    free(h);
}

/** A freed huge block's mapping is cached, and a larger huge allocation takes it, its
 *  pages moved (not copied, not faulted again) to a larger mapping: the new block starts
 *  with the old one's bytes. The block's part of the mapping has its own huge-page
 *  hint, which splits the kernel's mapping in two; moving the whole mapping at once
 *  failed (EFAULT) and every such allocation mapped fresh memory. */
static void case_huge_cache_grows(void) {
    size_t n = 8 * 1024 * 1024;
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    memset(p, 0xAB, n);
    __asm__ volatile("" : : "r"(p) : "memory");     /* the stores are not dead: keep them */
    free(p);
    unsigned char *q = malloc(n + n / 4);
    CHECK(q != NULL);
    /* The first 16 bytes are cleared when the mapping is cached (a VOS header there must
     * not outlive its block); the rest moved as they were. */
    size_t kept = 16;
    while (kept < n && q[kept] == 0xAB) kept++;
    CHECKF(kept == n, "the cached mapping was not reused: byte %zu is %#x", kept, kept < n ? q[kept] : 0);
    free(q);
}

/** A freed block is handed out again by later allocations of its class, within one
 *  page's worth of allocations (however the page orders its free lists). */
static void case_freed_block_reused(void) {
    enum { MAX = 8192 };
    static void *taken[MAX];
    for (unsigned c = 0; c < swm_class_count(); c++) {
        size_t n = swm_class_size(c);
        size_t limit = 16 * 65536 / n + 8;
        void *p = malloc(n);
        CHECK(p != NULL);
        free(p);
        size_t k = 0;
        int found = 0;
        while (k < limit && k < MAX && !found) {
            taken[k] = malloc(n);
            CHECK(taken[k] != NULL);
            found = taken[k++] == p;
        }
        CHECKF(found, "class %u (%zu bytes): freed block %p not reused in %zu allocations", c, n, p, k);
        while (k > 0) free(taken[--k]);
    }
}

/** Deterministic pseudo-random numbers (xorshift64*). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/** The next pseudo-random number. */
static uint64_t next_random(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/** Asserts swm_validate() finds no violation, naming the phase when it does. */
static void validate(const char *phase) {
    int violations = swm_validate();
    CHECKF(violations == 0, "%s: swm_validate() found %d violations", phase, violations);
}

/** Alloc/free patterns (LIFO, FIFO, interleaved, random, mixed tiers) leave the free
 *  lists and pages consistent (swm_validate() == 0 after each), contents intact. */
static void case_free_list_patterns(void) {
    enum { N = 20000 };
    static void *blocks[N];
    static size_t sizes[N];
    for (int i = 0; i < N; i++) blocks[i] = malloc(48);
    for (int i = N - 1; i >= 0; i--) free(blocks[i]);
    validate("LIFO");
    for (int i = 0; i < N; i++) blocks[i] = malloc(200);
    for (int i = 0; i < N; i++) free(blocks[i]);
    validate("FIFO");
    for (int i = 0; i < N; i++) blocks[i] = malloc(1000);
    for (int i = 0; i < N; i += 2) free(blocks[i]);
    validate("every other freed");
    for (int i = 0; i < N; i += 2) blocks[i] = malloc(1000);
    for (int i = 0; i < N; i++) free(blocks[i]);
    validate("interleaved");
    memset(blocks, 0, sizeof blocks);
    for (int round = 0; round < 200000; round++) {
        int i = (int)(next_random() % N);
        if (blocks[i]) {
            unsigned char *b = blocks[i];
            CHECKF(sizes[i] == 0 || b[0] == (unsigned char)i, "block %d of %zu bytes overwritten", i, sizes[i]);
            CHECKF(sizes[i] < 2 || b[sizes[i] - 1] == (unsigned char)(i >> 3), "block %d of %zu bytes overwritten", i, sizes[i]);
            free(b);
            blocks[i] = NULL;
        } else {
            uint64_t r = next_random();
            size_t n = r % 16 == 0 ? (size_t)(r >> 8) % 600000 : (size_t)(r >> 8) % 2048;
            blocks[i] = malloc(n);
            CHECK(blocks[i] != NULL);
            sizes[i] = n;
            if (n > 0) ((unsigned char *)blocks[i])[0] = (unsigned char)i;
            if (n > 1) ((unsigned char *)blocks[i])[n - 1] = (unsigned char)(i >> 3);
        }
        if (round % 50000 == 0) validate("random");
    }
    validate("random");
    for (int i = 0; i < N; i++) free(blocks[i]);
    validate("all freed");
}

/** Consecutive mallocs of blocks under 64 bytes land in different cache lines (no
 *  passive false sharing between small objects one thread allocates for others), and
 *  stay near each other (within 1 KiB: locality kept). The first blocks of a class may
 *  come from a page the start-up used, so a few pairs may share a line. */
static void case_small_blocks_spread(void) {
    enum { N = 4096 };
    static void *blocks[N];
    static const size_t sizes[] = {16, 32, 48};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s], sharing = 0, far = 0;
        for (int i = 0; i < N; i++) CHECK((blocks[i] = malloc(n)) != NULL);
        for (int i = 0; i + 1 < N; i++) {
            uintptr_t a = (uintptr_t)blocks[i], b = (uintptr_t)blocks[i + 1];
            uintptr_t lo = a < b ? a : b, hi = a < b ? b : a;
            if ((lo + n - 1) / 64 == hi / 64) sharing++;
            if (hi - lo > 1024) far++;
        }
        CHECKF(sharing <= N / 64, "%zu-byte blocks: %zu of %d consecutive pairs share a cache line", n, sharing, N - 1);
        CHECKF(far <= N / 64, "%zu-byte blocks: %zu of %d consecutive pairs lie over 1 KiB apart", n, far, N - 1);
        for (int i = 0; i < N; i++) free(blocks[i]);
    }
}

/** A loop that takes one block of every class in turn (holding one at a time, as a
 *  block grown by realloc does) sets up no page once each class has its page: every
 *  emptied only page is kept, those above 8 KiB within the memory bound of their ring
 *  (before: pages above 8 KiB were kept 8 at most, and set up again every round). */
static void case_class_cycle_keeps_pages(void) {
    unsigned count = swm_class_count();
    uint64_t formatted = 0;
    for (int round = 0; round < 6; round++) {
        if (round == 2) formatted = swm_pages_formatted();
        void *held = NULL;
        for (unsigned c = 0; c < count; c++) {
            size_t n = swm_class_size(c);
            unsigned char *p = malloc(n);
            CHECK(p != NULL);
            p[0] = p[n - 1] = (unsigned char)c;
            free(held);
            held = p;
        }
        free(held);
    }
    uint64_t again = swm_pages_formatted() - formatted;
    CHECKF(again == 0, "%llu pages set up in rounds 3-6 of the same loop", (unsigned long long)again);
}

/* ---- remote frees batched by class ---- */

enum { BATCH_CLASSES = 8, BATCH_BLOCKS = 48 };
static void *batch_blocks[BATCH_BLOCKS][BATCH_CLASSES];
static atomic_long batch_sends;

/** The debug library's hook: one call per batch of remote frees published to a page. */
static void count_send(void *page) {
    (void)page;
    atomic_fetch_add(&batch_sends, 1);
}

/** Frees every block of `batch_blocks`, the classes interleaved (each free's page differs
 *  from the last one's). */
static void *free_interleaved(void *arg) {
    (void)arg;
    for (int i = 0; i < BATCH_BLOCKS; i++)
        for (int c = 0; c < BATCH_CLASSES; c++) free(batch_blocks[i][c]);
    return NULL;
}

/** A thread that frees another thread's blocks of 8 classes in turn (a consumer of mixed
 *  messages) sends them in one batch per page, not one per block: 8 sends, at its exit,
 *  for 384 blocks (27 KiB). The debug library counts the sends through its test hook;
 *  both libraries check that every block came back (the class counters, the validator).
 *  It fails with one batch for the last page only: 384 sends. */
static void case_remote_frees_batched(void) {
    void (*set_hook)(void (*)(void *)) = (void (*)(void (*)(void *)))dlsym(RTLD_DEFAULT, "swm_debug_set_remote_hook");
    swm_class_stats_t before[BATCH_CLASSES], after;
    for (int c = 0; c < BATCH_CLASSES; c++) CHECK(swm_class_stats_get((unsigned)c, &before[c]) == 0);
    for (int i = 0; i < BATCH_BLOCKS; i++)
        for (int c = 0; c < BATCH_CLASSES; c++) {
            size_t n = swm_class_size((unsigned)c);
            unsigned char *p = malloc(n);
            CHECK(p != NULL && swm_class_of(n) == (unsigned)c);
            memset(p, i, n);
            batch_blocks[i][c] = p;
        }
    if (set_hook) set_hook(count_send);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_interleaved, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    if (set_hook) {
        set_hook(NULL);
        long sends = atomic_load(&batch_sends);
        CHECKF(sends <= 2 * BATCH_CLASSES, "%ld sends for %d remote frees of %d classes", sends,
               BATCH_BLOCKS * BATCH_CLASSES, BATCH_CLASSES);
    }
    for (int c = 0; c < BATCH_CLASSES; c++) {
        CHECK(swm_class_stats_get((unsigned)c, &after) == 0);
        CHECKF(after.live == before[c].live, "class %d: %llu live blocks before, %llu after", c,
               (unsigned long long)before[c].live, (unsigned long long)after.live);
    }
}

/** Resident memory of the process in bytes. */
static size_t resident_bytes(void) { return statm_bytes(1); }

/** Huge blocks are resident as far as they are touched (default options, and the
 *  system's THP setting not `always`): 64 malloc'd blocks of 2 MiB + 1 byte written
 *  whole take about their size (their mapping once ended at a whole 2 MiB page backed by
 *  a huge page: twice their size), and 4 calloc'd blocks of 64 MiB written once per MiB
 *  about 256 OS pages (with huge-page advice: all of it). */
static void case_huge_resident_as_touched(void) {
    /* With THP `always` the kernel itself backs big mappings with huge pages (glibc's
     * too): nothing to check there. */
    FILE *thp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char setting[128] = "";
    if (thp) {
        if (!fgets(setting, sizeof setting, thp)) setting[0] = 0;
        fclose(thp);
    }
    if (strstr(setting, "[always]")) return;
    enum { ODD = 64, SPARSE = 4 };
    const size_t odd = ((size_t)2 << 20) + 1, sparse = (size_t)64 << 20;
    void *blocks[ODD];
    size_t start = resident_bytes();
    for (int i = 0; i < ODD; i++) {
        blocks[i] = malloc(odd);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 1, odd);
    }
    size_t grown = resident_bytes() - start;
    CHECKF(grown < ODD * odd / 4 * 5, "%d blocks of %zu bytes written: resident grew %zu bytes", ODD, odd, grown);
    for (int i = 0; i < ODD; i++) free(blocks[i]);
    start = resident_bytes();
    for (int i = 0; i < SPARSE; i++) {
        blocks[i] = calloc(1, sparse);
        CHECK(blocks[i] != NULL);
        for (size_t at = 0; at < sparse; at += (size_t)1 << 20) ((char *)blocks[i])[at] = 1;
    }
    size_t end = resident_bytes();
    grown = end > start ? end - start : 0;
    CHECKF(grown < (size_t)16 << 20, "%d calloc'd blocks of 64 MiB written once per MiB: resident grew %zu bytes",
           SPARSE, grown);
    for (int i = 0; i < SPARSE; i++) free(blocks[i]);
}

/** A block served from the huge cache holds at most twice its request resident (an
 *  outside review): calloc purges the cached mapping instead of writing zeros over it (a
 *  sparse table stays sparse), and a block cut from a bigger cached mapping gives back
 *  what lies past its request when that is more than the request (it kept 3.8× its
 *  request, resident, for its life). */
/** Allocates `n` bytes, writes them all and frees them: the block's mapping goes to the
 *  huge cache, resident. Returns the freed block's address. */
static char *written_then_freed(size_t n) {
    char *p = malloc(n);
    CHECK(p != NULL);
    memset(p, 1, n);
    free(p);
    return p;
}

static void case_huge_cache_reuse_resident(void) {
    const size_t mib = (size_t)1 << 20;
    /* A block cut from a cached mapping less than a segment longer than it asks. */
    const size_t freed = 8280000, asked = 2200000;
    char *p = written_then_freed(freed);
    size_t before = resident_bytes();
    char *q = malloc(asked);
    CHECKF(q == p, "malloc(%zu) did not reuse the cached mapping (%p, freed %p)", asked, (void *)q, (void *)p);
    memset(q, 2, asked);
    size_t after = resident_bytes();
    CHECKF(malloc_usable_size(q) < asked + 64 * 1024, "usable size %zu for %zu bytes cut from %zu",
           malloc_usable_size(q), asked, freed);
    CHECKF(after + 5 * mib < before, "%zu bytes cut from a cached %zu: resident %zu -> %zu bytes", asked, freed,
           before, after);
    free(q);

    /* A calloc'd table from the cache, touched once per MiB. */
    const size_t table = 48 * mib;
    p = written_then_freed(table);
    before = resident_bytes();
    q = calloc(1, table);
    CHECKF(q == p, "calloc(%zu) did not reuse the cached mapping (%p, freed %p)", table, (void *)q, (void *)p);
    for (size_t at = 0; at < table; at += mib) {
        CHECKF(q[at] == 0, "calloc'd byte %zu is %d", at, q[at]);
        q[at] = 2;
    }
    after = resident_bytes();
    CHECKF(after + 32 * mib < before, "a calloc'd 48 MiB table touched once per MiB: resident %zu -> %zu bytes",
           before, after);
    free(q);

    /* A calloc block cut from a mapping that leaves a segment or more cached: what lies
     * between its request and the cut goes back, and reads zero. */
    p = written_then_freed(table);
    before = resident_bytes();
    q = calloc(1, asked);
    CHECKF(q == p, "calloc(%zu) did not reuse the cached mapping (%p, freed %p)", asked, (void *)q, (void *)p);
    size_t usable = malloc_usable_size(q);
    for (size_t at = 0; at < usable; at += 4096) CHECKF(q[at] == 0, "calloc'd byte %zu of %zu is %d", at, usable, q[at]);
    memset(q, 2, asked);
    after = resident_bytes();
    CHECKF(after + mib < before, "calloc(%zu) cut from a cached 48 MiB: resident %zu -> %zu bytes", asked, before,
           after);
    free(q);
}

/** calloc from the huge cache reads zero when the kernel refuses to purge the mapping
 *  (memory the program locked with mlock and freed without munlock): cleared by hand
 *  then (an outside review: calloc returned the freed buffer's bytes, all but 16). Where
 *  mlock is not allowed (RLIMIT_MEMLOCK, no CAP_IPC_LOCK), nothing to check. */
static void case_huge_calloc_locked(void) {
    const size_t n = (size_t)4 << 20;
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    if (mlock(p, n) != 0) {
        free(p);
        return;
    }
    memset(p, 0xAB, n);
    free(p);
    unsigned char *q = calloc(1, n);
    CHECK(q != NULL);
    size_t usable = malloc_usable_size(q);
    for (size_t at = 0; at < usable; at++) CHECKF(q[at] == 0, "calloc'd byte %zu of %zu is %#x (%p, freed %p)", at, usable, q[at], (void *)q, (void *)p);
    free(q);
}

/** Whether the kernel mapping holding `p` has the VmFlags flag `flag` ("hg": huge pages
 *  advised, "nh": advised against), from /proc/self/smaps. */
static int has_vm_flag(const void *p, const char *flag) {
    FILE *f = fopen("/proc/self/smaps", "r");
    CHECK(f != NULL);
    static char line[1024];
    int inside = 0, found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        unsigned long start, end;
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= start && (uintptr_t)p < end;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            char wanted[8];
            snprintf(wanted, sizeof wanted, " %s", flag);
            char *at = strstr(line, wanted);
            found = at != NULL && (at[3] == ' ' || at[3] == '\n');
        }
    }
    fclose(f);
    CHECKF(found >= 0, "no mapping holds %p", p);
    return found;
}

/** The `thp` policy holds for every huge block, one from the huge cache included
 *  (SWMALLOC_OPTIONS tells the policy): under the default `segments` no huge block gets
 *  advice either way; under `large` a malloc'd block of 8 MiB is advised for huge pages
 *  and a calloc'd one against them, also when each reuses the other's cached mapping (an
 *  outside review found a malloc block in a calloc block's old mapping opted out); under
 *  `never` every block is advised against them (calloc's were not advised at all). */
static void case_huge_advice_per_block(void) {
    FILE *thp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!thp) return;   /* a kernel without THP: no advice to check */
    fclose(thp);
    const char *options = getenv("SWMALLOC_OPTIONS");
    int never = options != NULL && strstr(options, "thp=never") != NULL;
    int large = options != NULL && strstr(options, "thp=large") != NULL;
    const size_t size = (size_t)8 << 20;
    for (int round = 0; round < 3; round++) {
        void *c = calloc(1, size);
        CHECK(c != NULL);
        if (never || large) {
            CHECKF(has_vm_flag(c, "nh") && !has_vm_flag(c, "hg"), "round %d: calloc'd block %p not opted out", round, c);
        } else {
            CHECKF(!has_vm_flag(c, "nh") && !has_vm_flag(c, "hg"), "round %d: calloc'd block %p advised", round, c);
        }
        free(c);
        void *m = malloc(size);
        CHECK(m != NULL);
        if (never) {
            CHECKF(has_vm_flag(m, "nh"), "round %d: malloc'd block %p not opted out", round, m);
        } else if (large) {
            CHECKF(has_vm_flag(m, "hg"), "round %d: malloc'd block %p not advised", round, m);
        } else {
            CHECKF(!has_vm_flag(m, "nh") && !has_vm_flag(m, "hg"), "round %d: malloc'd block %p advised", round, m);
        }
        free(m);
    }
}

/** Allocates and frees one block (the options cases need the allocator started). */
static void case_noop(void) {
    free(malloc(32));
}

/** Every case, in the order `units list` prints them. */
static const struct test_case cases[] = {
    {"class_table", case_class_table},
    {"class_of", case_class_of},
    {"usable_is_class_size", case_usable_is_class_size},
    {"lookup_tiers", case_lookup_tiers},
    {"large_realloc_in_place", case_large_realloc_in_place},
    {"huge_cache_grows", case_huge_cache_grows},
    {"freed_block_reused", case_freed_block_reused},
    {"free_list_patterns", case_free_list_patterns},
    {"small_blocks_spread", case_small_blocks_spread},
    {"class_cycle_keeps_pages", case_class_cycle_keeps_pages},
    {"remote_frees_batched", case_remote_frees_batched},
    {"huge_resident_as_touched", case_huge_resident_as_touched},
    {"huge_advice_per_block", case_huge_advice_per_block},
    {"huge_cache_reuse_resident", case_huge_cache_reuse_resident},
    {"huge_calloc_locked", case_huge_calloc_locked},
    {"noop", case_noop},
};

/** Runs the case named on the command line, then validates the heap. */
int main(int argc, char **argv) {
    const struct test_case *c = select_case(cases, sizeof cases / sizeof cases[0], argc, argv);
    c->run();
    validate(c->name);
    printf("ok %s\n", c->name);
    return 0;
}
