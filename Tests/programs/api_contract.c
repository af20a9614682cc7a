/* api_contract.c — the C API contract, one edge case per run:
 *     api_contract libc|swm CASE      (or: api_contract list)
 * `libc` calls malloc, free, ... ; `swm` calls the same functions under their swm_ names.
 * Linked with -lswmalloc. Exits 0 when the case holds (and swm_validate() finds the heap
 * consistent afterwards), 1 with a message on stderr when it does not. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "swmalloc.h"

/** The allocation API under test: the libc names or the swm_ names. */
static struct api {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*reallocarray)(void *, size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    size_t (*malloc_usable_size)(void *);
    void (*free_sized)(void *, size_t);
    void (*free_aligned_sized)(void *, size_t, size_t);
} A;

/* C23 functions that older glibc headers do not declare. */
void free_sized(void *, size_t);
void free_aligned_sized(void *, size_t, size_t);

/** The libc names (swmalloc's, since the program links -lswmalloc). */
static const struct api libc_api = {
    malloc, free, calloc, realloc, reallocarray, posix_memalign, aligned_alloc, memalign,
    valloc, pvalloc, malloc_usable_size, free_sized, free_aligned_sized,
};

/** swmalloc's own names. */
static const struct api swm_api = {
    swm_malloc, swm_free, swm_calloc, swm_realloc, swm_reallocarray, swm_posix_memalign,
    swm_aligned_alloc, swm_memalign, swm_valloc, swm_pvalloc, swm_malloc_usable_size,
    swm_free_sized, swm_free_aligned_sized,
};

/** Sizes from every tier: small classes, large (page spans) and huge (own mapping). */
static const size_t tier_sizes[] = {1, 15, 16, 17, 100, 1000, 4096, 50000, 131072, 131073,
                                    300000, 2097152, 2097153, 5000000};
#define NSIZES (sizeof tier_sizes / sizeof tier_sizes[0])

/** Fills n bytes at p with a pattern derived from seed. */
static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 131 + seed);
}

/** True when the n bytes at p hold fill's pattern for seed. */
static int holds(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 131 + seed)) return 0;
    return 1;
}

/** True when the n bytes at p are all zero. */
static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/** malloc(0) returns distinct non-NULL pointers that can be freed. */
static void case_malloc0_unique(void) {
    void *a = A.malloc(0), *b = A.malloc(0);
    CHECK(a != NULL && b != NULL);
    CHECK(a != b);
    A.free(a);
    A.free(b);
}

/** free(NULL) does nothing. */
static void case_free_null(void) {
    errno = 0;
    A.free(NULL);
    CHECK(errno == 0);
}

/** calloc returns zeroed memory in every tier. */
static void case_calloc_zeroes(void) {
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = A.calloc(1, tier_sizes[i]);
        CHECK(p != NULL);
        CHECKF(all_zero(p, tier_sizes[i]), "size %zu", tier_sizes[i]);
        A.free(p);
    }
    unsigned char *p = A.calloc(1000, 24);
    CHECK(p != NULL && all_zero(p, 24000));
    A.free(p);
}

/** calloc zeroes memory that was written and freed before (reuse of dirty blocks): the
 *  block's whole usable size, as glibc, jemalloc and mimalloc do (an outside review found
 *  the bytes past the request left dirty in small and large blocks). */
static void case_calloc_dirty_reuse(void) {
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = tier_sizes[i];
        for (int round = 0; round < 4; round++) {
            unsigned char *d = A.malloc(n);
            CHECK(d != NULL);
            memset(d, 0xA5, A.malloc_usable_size(d));
            A.free(d);
            unsigned char *p = A.calloc(n, 1);
            CHECK(p != NULL);
            size_t usable = A.malloc_usable_size(p);
            CHECKF(usable >= n && all_zero(p, usable), "size %zu (usable %zu) round %d", n, usable, round);
            A.free(p);
        }
    }
}

/** calloc whose count × size overflows returns NULL with ENOMEM. */
static void case_calloc_overflow(void) {
    errno = 0;
    CHECK(A.calloc(SIZE_MAX / 2 + 1, 2) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(A.calloc(2, SIZE_MAX / 2 + 1) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(A.calloc((size_t)1 << 32, (size_t)1 << 32) == NULL);
    CHECK(errno == ENOMEM);
}

/** realloc(NULL, n) allocates like malloc(n). */
static void case_realloc_null(void) {
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = A.realloc(NULL, tier_sizes[i]);
        CHECK(p != NULL);
        CHECK(A.malloc_usable_size(p) >= tier_sizes[i]);
        fill(p, tier_sizes[i], 7);
        A.free(p);
    }
}

/** realloc(p, 0) frees p and returns NULL (glibc behaviour). */
static void case_realloc_zero(void) {
    void *p = A.malloc(100);
    CHECK(p != NULL);
    uint64_t freed = swm_thread_freed();
    size_t usable = A.malloc_usable_size(p);
    CHECK(A.realloc(p, 0) == NULL);
    CHECKF(swm_thread_freed() - freed == usable, "freed %llu, expected %zu",
           (unsigned long long)(swm_thread_freed() - freed), usable);
}

/** realloc to larger sizes keeps the contents, across every tier. */
static void case_realloc_grow(void) {
    size_t n = tier_sizes[0];
    unsigned char *p = A.malloc(n);
    CHECK(p != NULL);
    fill(p, n, 3);
    for (size_t i = 1; i < NSIZES; i++) {
        p = A.realloc(p, tier_sizes[i]);
        CHECK(p != NULL);
        CHECKF(holds(p, n, 3), "grown from %zu to %zu", n, tier_sizes[i]);
        n = tier_sizes[i];
        fill(p, n, 3);
    }
    A.free(p);
}

/** realloc to smaller sizes keeps the prefix, across every tier. */
static void case_realloc_shrink(void) {
    size_t n = tier_sizes[NSIZES - 1];
    unsigned char *p = A.malloc(n);
    CHECK(p != NULL);
    fill(p, n, 9);
    for (size_t i = NSIZES - 1; i-- > 0;) {
        n = tier_sizes[i];
        p = A.realloc(p, n);
        CHECK(p != NULL);
        CHECKF(holds(p, n, 9), "shrunk to %zu", n);
    }
    A.free(p);
}

/** realloc within the block's usable size returns the same pointer. */
static void case_realloc_in_place(void) {
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = A.malloc(tier_sizes[i]);
        CHECK(p != NULL);
        size_t usable = A.malloc_usable_size(p);
        fill(p, usable, 5);
        CHECKF(A.realloc(p, usable) == p, "size %zu usable %zu", tier_sizes[i], usable);
        CHECKF(A.realloc(p, usable - usable / 4) == p, "size %zu usable %zu", tier_sizes[i], usable);
        CHECK(holds(p, usable - usable / 4, 5));
        A.free(p);
    }
}

/** A realloc that cannot be satisfied returns NULL with ENOMEM and leaves the block intact. */
static void case_realloc_failure(void) {
    static const size_t impossible[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX,
                                        (size_t)PTRDIFF_MAX + 1, (size_t)1 << 50};
    for (size_t i = 0; i < NSIZES; i += 3) {
        unsigned char *p = A.malloc(tier_sizes[i]);
        CHECK(p != NULL);
        size_t usable = A.malloc_usable_size(p);
        fill(p, tier_sizes[i], 11);
        for (size_t k = 0; k < sizeof impossible / sizeof impossible[0]; k++) {
            errno = 0;
            CHECKF(A.realloc(p, impossible[k]) == NULL, "size %zu", impossible[k]);
            CHECKF(errno == ENOMEM, "errno %d for %zu", errno, impossible[k]);
            CHECK(A.malloc_usable_size(p) == usable);
            CHECK(holds(p, tier_sizes[i], 11));
        }
        A.free(p);
    }
}

/** reallocarray with an overflowing product returns NULL with ENOMEM, block intact. */
static void case_reallocarray_overflow(void) {
    errno = 0;
    CHECK(A.reallocarray(NULL, SIZE_MAX / 2, 3) == NULL);
    CHECK(errno == ENOMEM);
    unsigned char *p = A.reallocarray(NULL, 10, 10);
    CHECK(p != NULL && A.malloc_usable_size(p) >= 100);
    fill(p, 100, 1);
    errno = 0;
    CHECK(A.reallocarray(p, (size_t)1 << 33, (size_t)1 << 33) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(holds(p, 100, 1));
    p = A.reallocarray(p, 100, 10);
    CHECK(p != NULL && holds(p, 100, 1));
    A.free(p);
}

/** A product of 0 is a zero-byte request whatever the other factor (2^63 or more too, as in
 *  glibc): calloc and reallocarray(NULL, …) return a block, errno untouched, and
 *  reallocarray(p, SIZE_MAX, 0) is realloc(p, 0): p is freed. They failed with ENOMEM,
 *  and left p allocated, when a factor read as negative. */
static void case_zero_product_huge_factor(void) {
    errno = 0;
    void *a = A.calloc(SIZE_MAX, 0);
    void *b = A.calloc(0, SIZE_MAX);
    void *c = A.reallocarray(NULL, 0, SIZE_MAX);
    CHECK(a != NULL && b != NULL && c != NULL && errno == 0);
    A.free(a);
    A.free(b);
    A.free(c);
    void *p = A.malloc(10);
    CHECK(p != NULL);
    swm_stats_t before, after;
    CHECK(swm_stats_get(&before) == 0);
    CHECK(A.reallocarray(p, SIZE_MAX, 0) == NULL);
    CHECK(swm_stats_get(&after) == 0);
    CHECKF(after.frees == before.frees + 1, "reallocarray(p, SIZE_MAX, 0) freed %zu blocks",
           (size_t)(after.frees - before.frees));
}

/** posix_memalign with a valid power-of-two alignment gives aligned, usable blocks. */
static void run_posix_memalign_ok(size_t alignment) {
    static const size_t sizes[] = {0, 1, 8, 24, 100, 4096, 70000, 300000, 3000000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = (void *)1;
        int rc = A.posix_memalign(&p, alignment, sizes[i]);
        CHECKF(rc == 0, "rc %d alignment %zu size %zu", rc, alignment, sizes[i]);
        CHECK(p != NULL);
        CHECKF((uintptr_t)p % alignment == 0, "%p not aligned to %zu", p, alignment);
        size_t usable = A.malloc_usable_size(p);
        CHECK(usable >= sizes[i]);
        memset(p, 0x5A, usable);
        A.free(p);
    }
    void *blocks[16];
    for (int i = 0; i < 16; i++) {
        CHECK(A.posix_memalign(&blocks[i], alignment, 48) == 0);
        CHECK((uintptr_t)blocks[i] % alignment == 0);
        fill(blocks[i], 48, (unsigned)i);
    }
    for (int i = 0; i < 16; i++) {
        CHECK(holds(blocks[i], 48, (unsigned)i));
        A.free(blocks[i]);
    }
}

/** posix_memalign with an invalid alignment returns EINVAL and leaves *out untouched. */
static void run_posix_memalign_bad(size_t alignment) {
    void *sentinel = (void *)0x1234, *p = sentinel;
    int saved = errno = 4242;
    CHECKF(A.posix_memalign(&p, alignment, 64) == EINVAL, "alignment %zu", alignment);
    CHECK(p == sentinel);
    CHECK(errno == saved);
}

/** Sizes no allocation can satisfy (above PTRDIFF_MAX, or near it). */
static const size_t too_big[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 63, SIZE_MAX - 4095,
                                 (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX, (size_t)1 << 50};
#define NTOOBIG (sizeof too_big / sizeof too_big[0])

/** Alignments the aligned-allocation cases try (small classes, pages, huge placement). */
static const size_t some_alignments[] = {32, 64, 4096, 65536, (size_t)1 << 20, (size_t)2 << 20};
#define NALIGN (sizeof some_alignments / sizeof some_alignments[0])

/** posix_memalign of an impossible size returns ENOMEM and leaves *out untouched. */
static void case_posix_memalign_too_big(void) {
    for (size_t a = 0; a < NALIGN; a++) {
        for (size_t i = 0; i < NTOOBIG; i++) {
            void *sentinel = (void *)0x1234, *p = sentinel;
            int rc = A.posix_memalign(&p, some_alignments[a], too_big[i]);
            CHECKF(rc == ENOMEM, "posix_memalign(%zu, %zu) returned %d, block %p",
                   some_alignments[a], too_big[i], rc, p);
            CHECK(p == sentinel);
        }
    }
}

/** aligned_alloc of an impossible size returns NULL with ENOMEM. */
static void case_aligned_alloc_too_big(void) {
    for (size_t a = 0; a < NALIGN; a++) {
        for (size_t i = 0; i < NTOOBIG; i++) {
            errno = 0;
            void *p = A.aligned_alloc(some_alignments[a], too_big[i]);
            CHECKF(p == NULL, "aligned_alloc(%zu, %zu) returned %p", some_alignments[a], too_big[i], p);
            CHECK(errno == ENOMEM);
        }
    }
}

/** memalign and valloc of an impossible size return NULL with ENOMEM. */
static void case_memalign_too_big(void) {
    for (size_t i = 0; i < NTOOBIG; i++) {
        for (size_t a = 0; a < NALIGN; a++) {
            errno = 0;
            void *p = A.memalign(some_alignments[a], too_big[i]);
            CHECKF(p == NULL, "memalign(%zu, %zu) returned %p", some_alignments[a], too_big[i], p);
            CHECK(errno == ENOMEM);
        }
        errno = 0;
        void *p = A.valloc(too_big[i]);
        CHECKF(p == NULL, "valloc(%zu) returned %p", too_big[i], p);
        CHECK(errno == ENOMEM);
    }
}

/** aligned_alloc with a power-of-two alignment aligns; otherwise NULL with EINVAL. */
static void case_aligned_alloc(void) {
    for (size_t a = 1; a <= ((size_t)2 << 20); a <<= 1) {
        void *p = A.aligned_alloc(a, 3 * a);
        CHECKF(p != NULL && (uintptr_t)p % a == 0, "alignment %zu", a);
        CHECK(A.malloc_usable_size(p) >= 3 * a);
        A.free(p);
    }
    static const size_t bad[] = {0, 3, 24, 48, 100, 4095};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        CHECKF(A.aligned_alloc(bad[i], 64) == NULL, "alignment %zu", bad[i]);
        CHECK(errno == EINVAL);
    }
}

/** memalign rounds a non-power-of-two alignment up to the next power of two. */
static void case_memalign_rounds_up(void) {
    static const size_t requested[] = {3, 24, 100, 1000, 3000, 5000, 65537};
    static const size_t expected[] = {4, 32, 128, 1024, 4096, 8192, 131072};
    for (size_t i = 0; i < sizeof requested / sizeof requested[0]; i++) {
        for (int k = 0; k < 8; k++) {
            void *p = A.memalign(requested[i], 40);
            CHECK(p != NULL);
            CHECKF((uintptr_t)p % expected[i] == 0, "memalign(%zu) gave %p", requested[i], p);
            A.free(p);
        }
    }
    void *p = A.memalign(4096, 10);
    CHECK(p != NULL && (uintptr_t)p % 4096 == 0);
    A.free(p);
}

/** valloc returns page-aligned blocks. */
static void case_valloc(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    static const size_t sizes[] = {0, 1, 100, 5000, 100000, 3000000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = A.valloc(sizes[i]);
        CHECK(p != NULL && (uintptr_t)p % page == 0);
        CHECK(A.malloc_usable_size(p) >= sizes[i]);
        memset(p, 1, sizes[i]);
        A.free(p);
    }
}

/** pvalloc rounds the size up to whole pages (pvalloc(0) gives one page), page-aligned. */
static void case_pvalloc(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    static const size_t sizes[] = {0, 1, 4095, 4096, 4097, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t want = sizes[i] == 0 ? page : (sizes[i] + page - 1) / page * page;
        unsigned char *p = A.pvalloc(sizes[i]);
        CHECK(p != NULL && (uintptr_t)p % page == 0);
        CHECKF(A.malloc_usable_size(p) >= want, "pvalloc(%zu): usable %zu", sizes[i],
               A.malloc_usable_size(p));
        memset(p, 1, want);
        A.free(p);
    }
    errno = 0;
    CHECK(A.pvalloc(SIZE_MAX - 10) == NULL && errno == ENOMEM);
}

/** malloc_usable_size(NULL) is 0; for a block it is at least the requested size. */
static void case_usable_size(void) {
    CHECK(A.malloc_usable_size(NULL) == 0);
    for (size_t n = 0; n < 5000; n++) {
        void *p = A.malloc(n);
        CHECK(p != NULL);
        CHECKF(A.malloc_usable_size(p) >= n, "size %zu", n);
        A.free(p);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        void *p = A.malloc(tier_sizes[i]);
        CHECK(p != NULL && A.malloc_usable_size(p) >= tier_sizes[i]);
        A.free(p);
    }
}

/** free_sized and free_aligned_sized free blocks (the memory is reused afterwards). */
static void case_free_sized(void) {
    for (size_t i = 0; i < NSIZES; i++) {
        void *p = A.malloc(tier_sizes[i]);
        CHECK(p != NULL);
        uint64_t before = swm_thread_freed();
        size_t usable = A.malloc_usable_size(p);
        A.free_sized(p, tier_sizes[i]);
        CHECK(swm_thread_freed() - before == usable);
        void *q = NULL;
        CHECK(A.posix_memalign(&q, 256, tier_sizes[i]) == 0);
        before = swm_thread_freed();
        usable = A.malloc_usable_size(q);
        A.free_aligned_sized(q, 256, tier_sizes[i]);
        CHECK(swm_thread_freed() - before == usable);
        q = A.aligned_alloc(64, 64 * (i + 1));
        CHECK(q != NULL);
        A.free_aligned_sized(q, 64, 64 * (i + 1));
    }
    A.free_sized(NULL, 0);
    A.free_aligned_sized(NULL, 16, 0);
}

/** One aligned request as a new thread's first allocation (`counted_first`). */
static size_t first_alignment, first_size;

/** In a new thread: swm_thread_allocated and swm_thread_freed move by the block's usable
 *  size for its first allocation and its free, and for the same request again. */
static void *counted_first(void *arg) {
    (void)arg;
    for (int round = 0; round < 2; round++) {
        uint64_t allocated = swm_thread_allocated(), freed = swm_thread_freed();
        void *p = first_alignment ? A.aligned_alloc(first_alignment, first_size) : A.malloc(first_size);
        CHECK(p != NULL);
        size_t usable = A.malloc_usable_size(p);
        CHECKF(swm_thread_allocated() - allocated == usable, "aligned to %zu, %zu bytes (round %d): %llu counted "
               "allocated for a block of %zu", first_alignment, first_size, round,
               (unsigned long long)(swm_thread_allocated() - allocated), usable);
        A.free(p);
        CHECKF(swm_thread_freed() - freed == usable, "aligned to %zu, %zu bytes (round %d): %llu counted freed for "
               "a block of %zu", first_alignment, first_size, round, (unsigned long long)(swm_thread_freed() - freed),
               usable);
    }
    return NULL;
}

/** The thread counters count a huge or over-aligned block that is a thread's first
 *  allocation, and over-aligned ones at all (before, neither: an outside review). The
 *  purger is started first (40 MiB mapped), so that its thread's creation, whose
 *  allocations glibc makes in the thread that starts it, is not counted in these. */
static void case_thread_counters_aligned(void) {
    A.free(A.malloc((size_t)40 << 20));
    static const size_t requests[][2] = {{0, 100},          {0, 12u << 20},      {1u << 16, 100}, {1u << 21, 12u << 20},
                                         {1u << 21, 2102418}, {1u << 22, 12027093}, {1u << 23, 100}};
    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        first_alignment = requests[i][0];
        first_size = requests[i][1];
        pthread_t t;
        CHECK(pthread_create(&t, NULL, counted_first, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
}

/** malloc of SIZE_MAX, PTRDIFF_MAX + 1 and PTRDIFF_MAX returns NULL with ENOMEM. */
static void case_malloc_too_big(void) {
    for (size_t i = 0; i < NTOOBIG; i++) {
        errno = 0;
        CHECKF(A.malloc(too_big[i]) == NULL, "malloc(%zu)", too_big[i]);
        CHECKF(errno == ENOMEM, "malloc(%zu): errno %d", too_big[i], errno);
    }
    void *p = A.malloc(64);
    CHECK(p != NULL);
    A.free(p);
}

/** Every named case, in the order `api_contract list` prints them. */
static const struct test_case cases[] = {
    {"malloc0_unique", case_malloc0_unique},
    {"free_null", case_free_null},
    {"calloc_zeroes", case_calloc_zeroes},
    {"calloc_dirty_reuse", case_calloc_dirty_reuse},
    {"calloc_overflow", case_calloc_overflow},
    {"realloc_null", case_realloc_null},
    {"realloc_zero", case_realloc_zero},
    {"realloc_grow", case_realloc_grow},
    {"realloc_shrink", case_realloc_shrink},
    {"realloc_in_place", case_realloc_in_place},
    {"realloc_failure", case_realloc_failure},
    {"reallocarray_overflow", case_reallocarray_overflow},
    {"zero_product_huge_factor", case_zero_product_huge_factor},
    {"posix_memalign_too_big", case_posix_memalign_too_big},
    {"aligned_alloc", case_aligned_alloc},
    {"aligned_alloc_too_big", case_aligned_alloc_too_big},
    {"memalign_too_big", case_memalign_too_big},
    {"memalign_rounds_up", case_memalign_rounds_up},
    {"valloc", case_valloc},
    {"pvalloc", case_pvalloc},
    {"usable_size", case_usable_size},
    {"free_sized", case_free_sized},
    {"malloc_too_big", case_malloc_too_big},
    {"thread_counters_aligned", case_thread_counters_aligned},
};
#define NCASES (sizeof cases / sizeof cases[0])

/** Runs the case named on the command line; `posix_memalign_ok_N` and
 *  `posix_memalign_bad_N` take the alignment N from the name. */
int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < NCASES; i++) printf("%s\n", cases[i].name);
        return 0;
    }
    if (argc != 3 || (strcmp(argv[1], "libc") && strcmp(argv[1], "swm"))) {
        fprintf(stderr, "usage: api_contract libc|swm CASE | api_contract list\n");
        return 2;
    }
    A = strcmp(argv[1], "swm") == 0 ? swm_api : libc_api;
    const char *name = argv[2];
    int found = 0;
    if (strncmp(name, "posix_memalign_ok_", 18) == 0) {
        run_posix_memalign_ok(strtoull(name + 18, NULL, 10));
        found = 1;
    } else if (strncmp(name, "posix_memalign_bad_", 19) == 0) {
        run_posix_memalign_bad(strtoull(name + 19, NULL, 10));
        found = 1;
    }
    for (size_t i = 0; i < NCASES && !found; i++) {
        if (strcmp(cases[i].name, name) == 0) {
            cases[i].run();
            found = 1;
        }
    }
    if (!found) {
        fprintf(stderr, "unknown case %s\n", name);
        return 2;
    }
    int violations = swm_validate();
    CHECKF(violations == 0, "swm_validate() found %d violations", violations);
    printf("ok %s %s\n", argv[1], name);
    return 0;
}
