/* stress.c — deterministic multithreaded stress test with content verification.
 *     stress [OPS_PER_THREAD]
 * Linked with -lswmalloc (debug or release). Every block is filled with a pattern derived
 * from its address and size and checked before it is freed or resized. Workers, with
 * fixed seeds:
 * - allocate and free blocks of 0 … ~4 MiB (skewed to small) with malloc, calloc,
 *   posix_memalign and aligned_alloc (random power-of-two alignments);
 * - pass blocks to each other through shared slots, so many frees (and some reallocs)
 *   are cross-thread;
 * - resize blocks with realloc (grow and shrink), checking the kept prefix;
 * - call swm_validate() periodically; any violation fails the run.
 * The main thread meanwhile creates and joins short-lived threads whose blocks outlive
 * them in the shared slots (freed later by others). Exits 0 and prints a summary line
 * when every check held; prints the failure and exits 1 otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swmalloc.h"

/** A block and its requested size: what a slot holds. */
struct block {
    unsigned char *p;
    size_t n;
};

/** The shape of the run. */
enum {
    WORKERS = 4,        /* long-lived worker threads */
    LOCAL = 256,        /* live blocks each worker keeps */
    SLOTS = 1024,       /* shared slots blocks travel through */
    CHURN_ROUNDS = 40,  /* rounds of short-lived threads */
    CHURN_THREADS = 3,  /* short-lived threads per round */
    VALIDATE_EVERY = 5000,
};

/** Shared slots: each holds a `struct block *` (itself malloc'ed) or NULL. */
static struct block *_Atomic slots[SLOTS];

/** Set by the first failure; everyone stops. */
static _Atomic int failed;

/** Operations per worker (argv[1]). */
static long ops_per_thread = 60000;

/** Reports a failure (once) and makes every thread stop. */
static void fail(const char *what, const void *p, size_t n) {
    if (!__atomic_exchange_n(&failed, 1, __ATOMIC_SEQ_CST))
        fprintf(stderr, "stress: FAILED: %s (block %p, %zu bytes)\n", what, p, n);
}

/** Deterministic pseudo-random numbers (xorshift64*), one state per thread. */
static uint64_t next_random(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/** The pattern byte i of a block at address a of size n. */
static inline unsigned char pattern(uintptr_t a, size_t n, size_t i) {
    uint64_t x = (a >> 4) * 0x9E3779B97F4A7C15ull + n * 31 + (i >> 3) * 0x100000001B3ull;
    return (unsigned char)(x >> (8 * (i & 7)));
}

/** Fills block b with its pattern. */
static void fill(struct block b) {
    for (size_t i = 0; i < b.n; i++) b.p[i] = pattern((uintptr_t)b.p, b.n, i);
}

/** Checks the first `count` bytes at p against the pattern of a block that was at
 *  address `a` with size n; reports a failure when they differ. */
static int check_prefix(const unsigned char *p, uintptr_t a, size_t n, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (p[i] != pattern(a, n, i)) {
            fail("content overwritten", p, n);
            return 0;
        }
    }
    return 1;
}

/** Checks a whole block, then frees it. */
static void check_and_free(struct block b) {
    check_prefix(b.p, (uintptr_t)b.p, b.n, b.n);
    free(b.p);
}

/** A size from 0 to ~4 MiB, skewed to small. */
static size_t random_size(uint64_t *rng) {
    uint64_t r = next_random(rng), pick = r % 1000;
    r >>= 10;
    if (pick < 850) return r % 257;
    if (pick < 970) return r % 4097;
    if (pick < 996) return r % (256 * 1024);
    return r % (4 * 1024 * 1024 + 1);
}

/** Allocates a block of a random size by a random function, checks its alignment and
 *  usable size, and fills it. Returns a block with p == NULL after a failure. */
static struct block allocate(uint64_t *rng) {
    struct block b = {NULL, random_size(rng)};
    uint64_t how = next_random(rng) % 16;
    size_t alignment = 16;
    if (how < 10) {
        b.p = malloc(b.n);
    } else if (how < 12) {
        b.p = calloc(1, b.n);
        for (size_t i = 0; b.p && i < b.n; i++)
            if (b.p[i]) { fail("calloc memory not zero", b.p, b.n); break; }
    } else if (how < 14) {
        alignment = (size_t)8 << (next_random(rng) % 14);           /* 8 … 64 KiB */
        if (next_random(rng) % 8 == 0) alignment = (size_t)1 << 20;  /* sometimes 1 MiB */
        void *p = NULL;
        int rc = posix_memalign(&p, alignment, b.n);
        if (rc) fail("posix_memalign failed", NULL, b.n);
        b.p = p;
    } else {
        alignment = (size_t)16 << (next_random(rng) % 12);          /* 16 … 32 KiB */
        b.p = aligned_alloc(alignment, b.n);
    }
    if (!b.p) {
        fail("allocation failed", NULL, b.n);
        return b;
    }
    if ((uintptr_t)b.p % alignment) fail("misaligned block", b.p, alignment);
    if (malloc_usable_size(b.p) < b.n) fail("usable size below the request", b.p, b.n);
    fill(b);
    return b;
}

/** Resizes block *b with realloc to a random size, checking the kept prefix. */
static void resize(struct block *b, uint64_t *rng) {
    size_t n = random_size(rng);
    if (n == 0) n = 1;
    uintptr_t old = (uintptr_t)b->p;
    size_t old_n = b->n;
    unsigned char *p = realloc(b->p, n);
    if (!p) {
        fail("realloc failed", b->p, n);
        return;
    }
    check_prefix(p, old, old_n, old_n < n ? old_n : n);
    b->p = p;
    b->n = n;
    fill(*b);
}

/** A realloc chain: one block grown step by step to ~1 MiB, then shrunk back. */
static void realloc_chain(uint64_t *rng) {
    struct block b = {malloc(1), 1};
    if (!b.p) return fail("malloc failed", NULL, 1);
    fill(b);
    size_t n = 1;
    while (n < ((size_t)1 << 20) && !failed) {
        n = n * 2 + next_random(rng) % 100;
        uintptr_t old = (uintptr_t)b.p;
        size_t old_n = b.n;
        unsigned char *p = realloc(b.p, n);
        if (!p) return fail("realloc (grow) failed", b.p, n);
        check_prefix(p, old, old_n, old_n);
        b.p = p, b.n = n;
        fill(b);
    }
    while (n > 1 && !failed) {
        n = n / 3;
        if (n == 0) n = 1;
        uintptr_t old = (uintptr_t)b.p;
        size_t old_n = b.n;
        unsigned char *p = realloc(b.p, n);
        if (!p) return fail("realloc (shrink) failed", b.p, n);
        check_prefix(p, old, old_n, n);
        b.p = p, b.n = n;
        fill(b);
    }
    check_and_free(b);
}

/** Puts a block into shared slot i (malloc'ed record). What was there, made by another
 *  thread, is checked and freed, or first resized with realloc (a cross-thread realloc)
 *  when `resize_first`. */
static void swap_slot(size_t i, struct block b, int resize_first, uint64_t *rng) {
    struct block *record = malloc(sizeof *record);
    if (!record) return fail("malloc failed", NULL, sizeof *record);
    *record = b;
    struct block *previous = __atomic_exchange_n(&slots[i], record, __ATOMIC_ACQ_REL);
    if (previous) {
        if (resize_first) resize(previous, rng);
        check_and_free(*previous);
        free(previous);
    }
}

/** Calls swm_validate() and fails on any violation. */
static void validate(void) {
    int violations = swm_validate();
    if (violations) fail("swm_validate() reported violations", NULL, (size_t)violations);
}

/** A long-lived worker: `ops_per_thread` random operations on its own blocks and on the
 *  shared slots. */
static void *worker(void *arg) {
    uint64_t rng = 0x1234567ull + (uintptr_t)arg * 0x9E3779B97F4A7C15ull;
    struct block local[LOCAL];
    memset(local, 0, sizeof local);
    for (long op = 0; op < ops_per_thread && !failed; op++) {
        uint64_t r = next_random(&rng);
        size_t i = (r >> 8) % LOCAL;
        switch (r % 16) {
        case 0: case 1: case 2:                     /* hand a block to another thread */
            if (local[i].p) {
                swap_slot((r >> 20) % SLOTS, local[i], (r >> 40) % 4 == 0, &rng);
                local[i].p = NULL;
            }
            break;
        case 3:                                     /* resize */
            if (local[i].p) resize(&local[i], &rng);
            break;
        default:                                    /* replace a local block */
            if (local[i].p) check_and_free(local[i]);
            local[i] = allocate(&rng);
            break;
        }
        if (op % 20000 == 0) realloc_chain(&rng);
        if (op % VALIDATE_EVERY == 0) validate();
    }
    for (size_t i = 0; i < LOCAL; i++)
        if (local[i].p) check_and_free(local[i]);
    validate();
    return NULL;
}

/** A short-lived thread: allocates blocks, leaves some in shared slots (they outlive it),
 *  frees the others, validates, exits. */
static void *short_lived(void *arg) {
    uint64_t rng = 0xABCDEFull + (uintptr_t)arg * 0x2545F4914F6CDD1Dull;
    for (int k = 0; k < 200 && !failed; k++) {
        struct block b = allocate(&rng);
        if (!b.p) break;
        if (k % 2) swap_slot(next_random(&rng) % SLOTS, b, k % 3 == 0, &rng);
        else check_and_free(b);
    }
    validate();
    return NULL;
}

/** Runs the workers and the thread churn, then drains the slots. */
int main(int argc, char **argv) {
    if (argc > 1) ops_per_thread = atol(argv[1]);
    pthread_t workers[WORKERS];
    for (uintptr_t t = 0; t < WORKERS; t++)
        if (pthread_create(&workers[t], NULL, worker, (void *)t)) return fail("pthread_create", NULL, 0), 1;
    for (uintptr_t round = 0; round < CHURN_ROUNDS && !failed; round++) {
        pthread_t churn[CHURN_THREADS];
        for (uintptr_t t = 0; t < CHURN_THREADS; t++)
            if (pthread_create(&churn[t], NULL, short_lived, (void *)(round * CHURN_THREADS + t)))
                return fail("pthread_create", NULL, 0), 1;
        for (int t = 0; t < CHURN_THREADS; t++) pthread_join(churn[t], NULL);
    }
    for (int t = 0; t < WORKERS; t++) pthread_join(workers[t], NULL);
    for (size_t i = 0; i < SLOTS; i++) {
        struct block *record = slots[i];
        if (record) {
            check_and_free(*record);
            free(record);
        }
    }
    validate();
    if (failed) return 1;
    swm_stats_t stats;
    swm_stats_get(&stats);
    printf("stress ok: %d workers x %ld ops, %d short-lived threads, %zu mallocs, %zu frees\n",
           WORKERS, ops_per_thread, CHURN_ROUNDS * CHURN_THREADS, stats.mallocs, stats.frees);
    return 0;
}
