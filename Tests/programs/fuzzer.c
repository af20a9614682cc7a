/* fuzzer.c — a model-checked random fuzzer of the allocation API.
 *
 *     fuzzer [--seed N] [--threads T] [--ops N] [--rounds R] [--fork] [--minutes M]
 *
 * From the seed, T threads at a time run random sequences of every API call — malloc,
 * calloc (zeroed?), realloc (grow, shrink, to 0, from NULL), reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc, pvalloc (alignments 16 B … 8 MiB), free, free_sized,
 * malloc_usable_size — on sizes from 0 to 8 MiB. Blocks move between threads through a
 * shared exchange, so many frees and reallocs are cross-thread; threads exit after their
 * operations and new ones replace them for R rounds (heaps detach, segments are abandoned
 * and adopted); with --fork a thread now and then forks and the child allocates, frees and
 * exits. The model:
 *   - every live block is filled with a pattern derived from its id and checked before it
 *     is freed or reallocated (content survives realloc up to the smaller size);
 *   - malloc_usable_size ≥ the size asked, and alignment honoured;
 *   - a shadow interval map of all live blocks (sorted, under a lock) rejects a block that
 *     overlaps a live one, the sign of a block handed out twice;
 *   - swm_validate (when the allocator is swmalloc) passes every 1,000 operations.
 * Prints "fuzz ok: seed=… threads=… ops=…" and exits 0, or one line "fuzz FAIL: …" with
 * the seed and exits 1. --minutes M repeats with the next seeds until M minutes passed
 * (soak mode), printing progress every 10 s. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/** A live block of the model. */
typedef struct {
    unsigned char *p;
    size_t size;      /* bytes asked for */
    uint64_t id;      /* pattern seed */
} block_t;

static uint64_t seed_base;
static int thread_count = 2, rounds = 3, do_fork = 0;
static long ops_per_thread = 20000;
static int (*validate)(void);
/** C23 free_sized where the allocator has it (glibc 2.36 does not): found with dlsym. */
static void (*free_sized_fn)(void *, size_t);

/** Fails the run with the seed and a message. */
static void fail(const char *what, const void *p) {
    fprintf(stderr, "fuzz FAIL: seed=%llu: %s (pointer %p)\n", (unsigned long long)seed_base, what, p);
    fflush(stderr);
    _exit(1);
}

/** splitmix64: one stream per thread and round. */
static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- the shadow interval map: sorted starts of live blocks ---- */

static pthread_mutex_t shadow_lock = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t *shadow_start, *shadow_end;
static size_t shadow_count, shadow_capacity;

/** Index of the first interval whose start is ≥ a. */
static size_t shadow_find(uintptr_t a) {
    size_t lo = 0, hi = shadow_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (shadow_start[mid] < a) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/** Records [p, p + usable) live; fails when it overlaps a live block. */
static void shadow_add(void *p, size_t usable) {
    uintptr_t a = (uintptr_t)p, b = a + (usable ? usable : 1);
    pthread_mutex_lock(&shadow_lock);
    size_t i = shadow_find(a);
    if ((i < shadow_count && shadow_start[i] < b) || (i > 0 && shadow_end[i - 1] > a)) {
        pthread_mutex_unlock(&shadow_lock);
        fail("a new block overlaps a live block", p);
    }
    if (shadow_count == shadow_capacity) fail("shadow map full", p);
    memmove(shadow_start + i + 1, shadow_start + i, (shadow_count - i) * sizeof *shadow_start);
    memmove(shadow_end + i + 1, shadow_end + i, (shadow_count - i) * sizeof *shadow_end);
    shadow_start[i] = a;
    shadow_end[i] = b;
    shadow_count++;
    pthread_mutex_unlock(&shadow_lock);
}

/** Forgets the live block at p; fails when there is none. */
static void shadow_remove(void *p) {
    uintptr_t a = (uintptr_t)p;
    pthread_mutex_lock(&shadow_lock);
    size_t i = shadow_find(a);
    if (i == shadow_count || shadow_start[i] != a) {
        pthread_mutex_unlock(&shadow_lock);
        fail("freeing a block the model does not hold", p);
    }
    memmove(shadow_start + i, shadow_start + i + 1, (shadow_count - i - 1) * sizeof *shadow_start);
    memmove(shadow_end + i, shadow_end + i + 1, (shadow_count - i - 1) * sizeof *shadow_end);
    shadow_count--;
    pthread_mutex_unlock(&shadow_lock);
}

/* ---- content ---- */

/** The pattern byte at offset i of block id. */
static unsigned char pattern(uint64_t id, size_t i) { return (unsigned char)(id * 31 + i * 7 + (i >> 8)); }

/** Fills the first n bytes (sparsely above 4 KiB, to keep big blocks cheap). */
static void fill(block_t *b) {
    size_t step = b->size > 4096 ? 61 : 1;
    for (size_t i = 0; i < b->size; i += step) b->p[i] = pattern(b->id, i);
    if (b->size) b->p[b->size - 1] = pattern(b->id, b->size - 1);
}

/** Checks the first n bytes against the pattern of `fill`. */
static void verify(const block_t *b, size_t n) {
    size_t step = b->size > 4096 ? 61 : 1;
    for (size_t i = 0; i < n; i += step)
        if (b->p[i] != pattern(b->id, i)) fail("a live block's content changed", b->p);
    if (n && n == b->size && b->p[n - 1] != pattern(b->id, n - 1)) fail("a live block's last byte changed", b->p);
}

/* ---- the exchange: blocks handed between threads ---- */

#define EXCHANGE 256
static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;
static block_t exchange[EXCHANGE];

/** Swaps *b with a random exchange slot (either may be empty). */
static void swap_exchange(block_t *b, uint64_t r) {
    pthread_mutex_lock(&exchange_lock);
    block_t t = exchange[r % EXCHANGE];
    exchange[r % EXCHANGE] = *b;
    *b = t;
    pthread_mutex_unlock(&exchange_lock);
}

/* ---- one operation ---- */

/** A random size: mostly small, some medium and large, rarely huge. */
static size_t random_size(uint64_t *s) {
    uint64_t r = next(s), k = r % 1000;
    if (k < 600) return (size_t)(next(s) % 129);
    if (k < 900) return (size_t)(next(s) % 8192);
    if (k < 985) return (size_t)(next(s) % (128 * 1024));
    if (k < 998) return (size_t)(next(s) % (2 * 1024 * 1024));
    return (size_t)(next(s) % (8 * 1024 * 1024));
}

/** Records a fresh block of `size` asked bytes: usable size, alignment, shadow, pattern. */
static void adopt_new(block_t *b, void *p, size_t size, size_t alignment, uint64_t id) {
    if (!p) fail(size ? "allocation failed" : "allocation of 0 bytes returned NULL", NULL);
    if ((uintptr_t)p % alignment) fail("block not aligned as asked", p);
    size_t usable = malloc_usable_size(p);
    if (usable < size) fail("malloc_usable_size below the size asked", p);
    b->p = p;
    b->size = size;
    b->id = id;
    shadow_add(p, usable);
    fill(b);
}

/** Frees a block of the model (checked first). */
static void release(block_t *b, uint64_t r) {
    if (!b->p) return;
    verify(b, b->size);
    shadow_remove(b->p);
    if ((r & 1) || !free_sized_fn) free(b->p); else free_sized_fn(b->p, b->size);
    b->p = NULL;
}

/** One random operation on slot `b` of this thread. */
static void operate(block_t *b, uint64_t *s, uint64_t id) {
    uint64_t r = next(s);
    switch (r % 12) {
    case 0: case 1: case 2: {
        release(b, r >> 8);
        size_t n = random_size(s);
        adopt_new(b, malloc(n), n, n >= 16 ? 16 : 8, id);
        break;
    }
    case 3: {
        release(b, r >> 8);
        size_t n = random_size(s) / 4, count = 1 + next(s) % 4;
        unsigned char *p = calloc(count, n);
        for (size_t i = 0; i < count * n; i += (count * n > 4096 ? 509 : 1))
            if (p && p[i]) fail("calloc block not zeroed", p);
        adopt_new(b, p, count * n, 16, id);
        break;
    }
    case 4: case 5: {
        size_t n = (r >> 8) % 16 == 0 ? 0 : random_size(s);
        if (b->p) verify(b, b->size);
        if (b->p) shadow_remove(b->p);
        if (n == 0 && b->p) {
            /* realloc(p, 0) frees p and returns NULL (glibc). */
            unsigned char *q = realloc(b->p, 0);
            if (q) { shadow_add(q, malloc_usable_size(q)); b->p = q; b->size = 0; b->id = id; break; }
            b->p = NULL;
            break;
        }
        block_t old = *b;
        unsigned char *q = (r >> 12) & 1 ? realloc(b->p, n) : reallocarray(b->p, 1, n);
        if (!q) fail("realloc failed", b->p);
        b->p = q;
        b->size = n;
        size_t keep = old.size < n ? old.size : n;
        if (old.p) { block_t view = { q, old.size, old.id }; verify(&view, keep); }
        size_t usable = malloc_usable_size(q);
        if (usable < n) fail("malloc_usable_size below the size asked after realloc", q);
        shadow_add(q, usable);
        b->id = id;
        fill(b);
        break;
    }
    case 6: case 7: {
        release(b, r >> 8);
        size_t alignment = (size_t)16 << (next(s) % 20);   /* 16 B … 8 MiB */
        size_t n = random_size(s) / (alignment > 65536 ? 8 : 1);
        void *p = NULL;
        switch ((r >> 8) % 5) {
        case 0: if (posix_memalign(&p, alignment, n) != 0) p = NULL; break;
        case 1: p = aligned_alloc(alignment, n); break;
        case 2: p = memalign(alignment, n); break;
        case 3: p = valloc(n); alignment = 4096; break;
        default: p = pvalloc(n); alignment = 4096; n = (n + 4095) & ~(size_t)4095; break;
        }
        adopt_new(b, p, n, alignment, id);
        break;
    }
    case 8: case 9:
        swap_exchange(b, r >> 8);
        break;
    case 10:
        if (b->p && malloc_usable_size(b->p) < b->size) fail("malloc_usable_size shrank", b->p);
        break;
    default:
        release(b, r >> 8);
        break;
    }
}

/* ---- threads ---- */

#define SLOTS 64

typedef struct { int index, round; } worker_arg;

/** The child of a fork: a few allocations and frees of its own, then exit. */
static void child_work(uint64_t *s) {
    void *p[32];
    for (int i = 0; i < 32; i++) {
        size_t n = random_size(s);
        p[i] = malloc(n);
        if (!p[i]) _exit(3);
        memset(p[i], 0x5a, n);
    }
    for (int i = 0; i < 32; i++) free(p[i]);
    _exit(validate && validate() != 0 ? 2 : 0);
}

/** One worker: its operations on its slots, then everything it holds goes to the
 *  exchange or is freed, and it exits (its heap detaches). */
static void *worker(void *arg) {
    worker_arg *w = arg;
    uint64_t s = seed_base * 1000003 + (uint64_t)w->round * 131 + (uint64_t)w->index;
    block_t slots[SLOTS];
    memset(slots, 0, sizeof slots);
    for (long op = 0; op < ops_per_thread; op++) {
        uint64_t id = ((uint64_t)w->round << 40) ^ ((uint64_t)w->index << 32) ^ (uint64_t)op;
        operate(&slots[next(&s) % SLOTS], &s, id);
        if (op % 1000 == 999 && validate && validate() != 0) fail("swm_validate found a broken invariant", NULL);
        if (do_fork && op % 5000 == 2500) {
            pid_t pid = fork();
            if (pid < 0) fail("fork failed", NULL);
            if (pid == 0) child_work(&s);
            int status = 0;
            waitpid(pid, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("a fork child failed", NULL);
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        if (next(&s) & 1) swap_exchange(&slots[i], next(&s));
        release(&slots[i], next(&s));
    }
    return NULL;
}

/** One run from the seed: `rounds` generations of `thread_count` workers. */
static void run(void) {
    for (int round = 0; round < rounds; round++) {
        pthread_t threads[64];
        worker_arg args[64];
        for (int i = 0; i < thread_count; i++) {
            args[i] = (worker_arg){ i, round };
            if (pthread_create(&threads[i], NULL, worker, &args[i]) != 0) fail("pthread_create failed", NULL);
        }
        for (int i = 0; i < thread_count; i++) pthread_join(threads[i], NULL);
    }
    for (int i = 0; i < EXCHANGE; i++) release(&exchange[i], (uint64_t)i);
    if (shadow_count != 0) fail("blocks left in the model after every release", NULL);
    if (validate && validate() != 0) fail("swm_validate found a broken invariant at the end", NULL);
}

int main(int argc, char **argv) {
    double minutes = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed_base = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) thread_count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ops") && i + 1 < argc) ops_per_thread = atol(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--minutes") && i + 1 < argc) minutes = atof(argv[++i]);
        else if (!strcmp(argv[i], "--fork")) do_fork = 1;
        else { fprintf(stderr, "usage: fuzzer [--seed N] [--threads T] [--ops N] [--rounds R] [--fork] [--minutes M]\n"); return 2; }
    }
    if (thread_count < 1 || thread_count > 64 || rounds < 1) { fprintf(stderr, "fuzzer: 1-64 threads, 1+ rounds\n"); return 2; }
    validate = (int (*)(void))dlsym(RTLD_DEFAULT, "swm_validate");
    free_sized_fn = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    shadow_capacity = (size_t)thread_count * SLOTS + EXCHANGE + 16;
    shadow_start = calloc(shadow_capacity, sizeof *shadow_start);
    shadow_end = calloc(shadow_capacity, sizeof *shadow_end);
    struct timespec t0, now, last;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    last = t0;
    long runs = 0;
    do {
        run();
        runs++;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (minutes > 0 && now.tv_sec - last.tv_sec >= 10) {
            fprintf(stderr, "fuzz: %ld runs, seed %llu, %ld s\n", runs, (unsigned long long)seed_base, (long)(now.tv_sec - t0.tv_sec));
            last = now;
        }
        seed_base++;
    } while (minutes > 0 && (now.tv_sec - t0.tv_sec) < minutes * 60);
    printf("fuzz ok: seed=%llu threads=%d ops=%ld runs=%ld\n", (unsigned long long)(seed_base - 1), thread_count,
           ops_per_thread * thread_count * rounds, runs);
    return 0;
}
