/* fuzz.c — a model-checked random fuzzer of the whole allocation API.
 *
 *     fuzz [--seed N] [--threads T] [--ops N] [--live N] [--minutes M] [--fork]
 *          [--allow-big-align-enomem]
 *
 * Runs against whatever allocator the process has: preload libswmalloc.so (or link it),
 * or run it plain as a control against glibc. From the seed, T worker threads (one per
 * "slot") run random sequences of every allocation call:
 *   malloc, calloc (checked zeroed), realloc (grow, shrink, same size, to 0, from NULL),
 *   reallocarray, posix_memalign / aligned_alloc / memalign (alignments 8 B … 4 MiB, and
 *   non-power-of-two ones to memalign, which rounds them up), valloc, pvalloc, free,
 *   free_sized and free_aligned_sized (where the allocator exports them), and
 *   malloc_usable_size (≥ the size asked, stable while the block lives), plus edge cases
 *   (overflowing calloc / reallocarray / realloc / malloc / pvalloc, invalid and
 *   impossible alignments, NULL arguments).
 * Sizes mix tiny (0–128 B), small (≤ 8 KiB), medium (≤ 128 KiB), large (≤ 2 MiB) and
 * now and then huge (≤ 8 MiB) requests, plus sizes next to the powers of two; bigger
 * sizes are drawn less often, and not at all while the live blocks exceed 256 MiB.
 *
 * Each slot's operations are split over a sequence of threads: a thread lives for a
 * random number of operations, hands its blocks to the shared exchange or frees them, and
 * exits; the main thread then starts the slot's next thread (thread churn). A thread's
 * first allocator call is often a free or realloc of another thread's block; at exit a
 * pthread key destructor (two rounds) frees a block and allocates one that outlives the
 * thread, after the allocator's own exit hook may have run. Workers also start
 * short-lived helper threads, some of which only free. Blocks travel between threads
 * through the exchange (a lock-protected array of slots), so many frees and reallocs are
 * cross-thread and many blocks outlive the thread that allocated them. With --fork, a
 * worker now and then forks:
 * the child checks, frees and reallocates some of the blocks it inherited (its own and
 * other threads'), allocates on its own and on a new thread, checks its heap and
 * _exit(0)s, while the parent waits (a child that hangs for 30 s is killed and reported).
 *
 * The model:
 *   - every live block is filled, up to its usable size, with a pattern derived from its
 *     id, and checked before it is freed or reallocated, when it changes hands, and at
 *     random; realloc must keep the content up to the smaller of the two sizes;
 *   - alignment: 16 for the malloc family, the alignment asked otherwise (the next power
 *     of two for memalign), the page for valloc / pvalloc; pvalloc's usable size covers
 *     the size rounded up to a page;
 *   - a shadow interval map shared by all threads (a treap of [start, start + usable)
 *     intervals, under a lock, in memory of its own) rejects a new block that overlaps a
 *     live one — the sign of a block handed out twice — and a free or realloc of an
 *     address that is not a live block of the model;
 *   - when the allocator exports swm_validate (found with dlsym), each thread calls it on
 *     its own heap every 2,048 operations and before it exits; it must return 0 (threads
 *     also call swm_collect now and then, so free spans are purged while blocks live);
 *   - with swmalloc, a successful call never changes errno (its documented behaviour).
 * A signal (a crash, or an abort of the allocator) prints a failure line with the seed
 * before the process dies of it; a run where no operation completes for 60 s fails as a
 * deadlock.
 *
 * --ops is the number of operations per slot (default 60,000: 2–4 s with 2 threads on
 * 2 cores); --live the number of block slots each worker thread keeps (default 512; the
 * exchange adds 1,024 shared slots). --minutes M repeats runs with seeds N, N+1, …
 * until M minutes have passed (soak mode), printing a progress line every 10 s.
 * ENOMEM for an alignment above 2 MiB is a failure unless --allow-big-align-enomem.
 *
 * Prints "fuzz ok: seed=… threads=… ops=… …" on stdout and exits 0 when every check
 * held; prints one line "fuzz FAIL: seed=… threads=… …: what failed" on stderr and exits
 * 1 at the first violation. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

/** Fixed shape of a run. */
enum {
    MAX_THREADS = 64,          /* most slots --threads accepts */
    EXCHANGE_SLOTS = 1024,     /* shared slots blocks travel through */
    VALIDATE_EVERY = 2048,     /* operations between two swm_validate calls */
    MIN_LIFETIME = 2000,       /* operations of a worker thread, at least … */
    MAX_LIFETIME = 40000,      /* … and at most, before the next one replaces it */
    FORK_EVERY = 6000,         /* one operation in this many forks (with --fork) */
    HELPER_EVERY = 5000,       /* one operation in this many starts a helper thread */
    CHILD_OPS = 400,           /* operations a forked child runs on each of its threads */
    CHILD_TIMEOUT_S = 30,      /* a forked child still running after this is hung */
    STALL_TIMEOUT_S = 60,      /* no operation completing for this long is a deadlock */
    PROGRESS_EVERY_S = 10,     /* soak mode's progress lines */
    SHADOW_CAPACITY = 1 << 22, /* most intervals the shadow map holds */
};

/** Live blocks above this many bytes: only tiny and small sizes are drawn. */
#define LIVE_BYTES_CAP (256 * MiB)
/** Largest alignment that must never fail with ENOMEM even without the flag. */
#define BIG_ALIGN (2 * MiB)
/** Alignment of the malloc family's blocks. */
#define MALLOC_ALIGN (_Alignof(max_align_t))
/** What errno holds before each call: a successful swmalloc call must leave it there. */
#define ERRNO_SENTINEL 4242

/* ---- options and run state ---- */

/** Command-line options. */
static uint64_t opt_seed = 1;
static int opt_threads = 2;
static long opt_ops = 60000;
static long opt_live = 512;
static double opt_minutes = 0;
static int opt_fork = 0;
static int opt_allow_big_align_enomem = 0;

/** The seed of the run in progress (soak mode advances it). */
static uint64_t run_seed;
/** swm_validate, free_sized and free_aligned_sized of the allocator, when it has them
 *  (found with dlsym; glibc 2.36 has none of them). */
static int (*validate_fn)(void);
static void (*free_sized_fn)(void *, size_t);
static void (*free_aligned_sized_fn)(void *, size_t, size_t);
/** swm_collect (swmalloc: give the calling thread's free spans back to the OS now). */
static void (*collect_fn)(void);
/** True when the allocator is swmalloc (it exports swm_validate): its documented
 *  behaviours beyond glibc's (errno kept on success, aligned_alloc EINVAL) are checked. */
static int is_swmalloc;
/** The page size. */
static size_t page_size;

/** Counters of a run (summed from the threads' own counters as they exit). */
static _Atomic unsigned long total_ops, total_allocs, total_frees, total_reallocs, total_cross,
    total_forks, total_threads, total_validates, total_big_align_enomem;
/** Bytes (by usable size) and number of live blocks of the model. */
static _Atomic long live_bytes;
/** Block ids (pattern seeds) and thread numbers. */
static _Atomic unsigned long next_id = 1, next_tid = 1;

/* ---- failure reports ---- */

/** What the calling thread is doing, for failure reports. */
static __thread int ctx_slot = -1, ctx_gen;
static __thread long ctx_op;
static __thread const char *ctx_what = "setting up";
/** Set in a forked child. */
static int in_child;
/** Set by the first failure: later ones stay silent. */
static _Atomic int failing;

/** Reports a violation (one line "fuzz FAIL: seed=… threads=… [thread …] (doing …): …" on
 *  stderr, without allocating) and exits 1 at once. A second failing thread stays silent. */
__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *format, ...) {
    if (__atomic_exchange_n(&failing, 1, __ATOMIC_SEQ_CST))
        for (;;) pause();
    char line[1024];
    int n = snprintf(line, sizeof line, "fuzz FAIL: seed=%llu threads=%d%s", (unsigned long long)run_seed,
                     opt_threads, in_child ? " (in a forked child)" : "");
    if (ctx_slot >= 0) n += snprintf(line + n, sizeof line - (size_t)n, " thread=%d.%d op=%ld", ctx_slot, ctx_gen, ctx_op);
    n += snprintf(line + n, sizeof line - (size_t)n, " (%s): ", ctx_what);
    va_list args;
    va_start(args, format);
    if (n < (int)sizeof line) n += vsnprintf(line + n, sizeof line - (size_t)n, format, args);
    va_end(args);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(2, line, (size_t)n) < 0) _exit(1);
    _exit(1);
}

/** Appends the decimal digits of v to buf at *n (for the signal handler, which may not
 *  call snprintf). */
static void append_number(char *buf, size_t *n, unsigned long long v) {
    char digits[24];
    int k = 0;
    do digits[k++] = (char)('0' + v % 10), v /= 10; while (v);
    while (k) buf[(*n)++] = digits[--k];
}

/** Appends the string s to buf at *n. */
static void append_text(char *buf, size_t *n, const char *s) {
    while (*s && *n < 400) buf[(*n)++] = *s++;
}

/** A fatal signal (the allocator's abort, a crash): prints the failure line with the seed
 *  and what the thread was doing, then dies of the signal. */
static void on_fatal_signal(int sig) {
    if (!__atomic_exchange_n(&failing, 1, __ATOMIC_SEQ_CST)) {
        char line[512];
        size_t n = 0;
        append_text(line, &n, "fuzz FAIL: seed=");
        append_number(line, &n, run_seed);
        append_text(line, &n, " threads=");
        append_number(line, &n, (unsigned long long)opt_threads);
        if (in_child) append_text(line, &n, " (in a forked child)");
        if (ctx_slot >= 0) {
            append_text(line, &n, " thread=");
            append_number(line, &n, (unsigned long long)ctx_slot);
            append_text(line, &n, ".");
            append_number(line, &n, (unsigned long long)ctx_gen);
            append_text(line, &n, " op=");
            append_number(line, &n, (unsigned long long)ctx_op);
        }
        append_text(line, &n, " (");
        append_text(line, &n, ctx_what);
        append_text(line, &n, "): killed by signal ");
        append_number(line, &n, (unsigned long long)sig);
        append_text(line, &n, sig == SIGABRT ? " (SIGABRT)" : sig == SIGSEGV ? " (SIGSEGV)" : sig == SIGBUS ? " (SIGBUS)"
                              : sig == SIGILL ? " (SIGILL)" : sig == SIGTRAP ? " (SIGTRAP)" : "");
        line[n++] = '\n';
        if (write(2, line, n) < 0) n = 0;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/** Installs on_fatal_signal for the signals a crash or an abort raises. */
static void install_signal_handlers(void) {
    int signals[] = {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = on_fatal_signal;
        action.sa_flags = SA_RESETHAND | SA_NODEFER;
        sigaction(signals[i], &action, NULL);
    }
}

/** Memory of the model itself (shadow nodes, block tables): mapped directly, so that the
 *  allocator under test never holds the model's data. */
static void *model_memory(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) fail("mmap of %zu bytes for the model failed", bytes);
    return p;
}

/* ---- random numbers ---- */

/** splitmix64's finaliser: a well-mixed 64-bit function of x. */
static inline uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/** splitmix64: the next number of the stream *state. */
static inline uint64_t next_random(uint64_t *state) {
    return mix64(*state += 0x9E3779B97F4A7C15ull);
}

/** The stream of a thread: a function of the run's seed, the slot and the generation
 *  (helpers and children use generations of their own). */
static uint64_t stream_seed(int slot, int generation) {
    return mix64(run_seed * 0x100000001B3ull ^ mix64(((uint64_t)slot << 32) + (uint64_t)generation + 1));
}

/** A number in [0, n) (n > 0). */
static inline uint64_t below(uint64_t *rng, uint64_t n) { return next_random(rng) % n; }

/* ---- content patterns ---- */

/** An 8-byte word that may alias the blocks' bytes. */
typedef uint64_t __attribute__((may_alias)) word_t;

/** The pattern's base value for block id. */
static inline uint64_t pattern_base(uint64_t id) { return mix64(id * 0xD1B54A32D192ED03ull + run_seed); }

/** The pattern word w (bytes 8w … 8w+7, little-endian) of a block with base b. */
static inline uint64_t pattern_word(uint64_t base, size_t w) { return base + (uint64_t)w * 0x9E3779B97F4A7C15ull; }

/** Byte i of the pattern with base b. */
static inline unsigned char pattern_byte(uint64_t base, size_t i) {
    return (unsigned char)(pattern_word(base, i >> 3) >> (8 * (i & 7)));
}

/** Writes the pattern of block id into bytes [from, to) of p (p is 8-byte aligned). */
static void fill(unsigned char *p, size_t from, size_t to, uint64_t id) {
    uint64_t base = pattern_base(id);
    size_t i = from;
    for (; i < to && (i & 7); i++) p[i] = pattern_byte(base, i);
    for (; i + 8 <= to; i += 8) *(word_t *)(p + i) = pattern_word(base, i >> 3);
    for (; i < to; i++) p[i] = pattern_byte(base, i);
}

/** The offset of the first byte of [from, to) of p that differs from the pattern of block
 *  id, or SIZE_MAX when they all match. */
static size_t first_mismatch(const unsigned char *p, size_t from, size_t to, uint64_t id) {
    uint64_t base = pattern_base(id);
    size_t i = from;
    for (; i < to && (i & 7); i++)
        if (p[i] != pattern_byte(base, i)) return i;
    for (; i + 8 <= to; i += 8)
        if (*(const word_t *)(p + i) != pattern_word(base, i >> 3)) break;
    for (; i < to; i++)
        if (p[i] != pattern_byte(base, i)) return i;
    return SIZE_MAX;
}

/* ---- blocks ---- */

/** The allocation calls, as the model records them. */
enum api {
    API_MALLOC, API_CALLOC, API_REALLOC, API_REALLOCARRAY, API_POSIX_MEMALIGN,
    API_ALIGNED_ALLOC, API_MEMALIGN, API_VALLOC, API_PVALLOC,
};

/** Names of the calls, for reports. */
static const char *const api_names[] = {
    "malloc", "calloc", "realloc", "reallocarray", "posix_memalign",
    "aligned_alloc", "memalign", "valloc", "pvalloc",
};

/** A live block of the model (p == NULL: an empty slot). */
typedef struct {
    unsigned char *p;
    size_t size;        /* bytes asked for */
    size_t usable;      /* malloc_usable_size when it was allocated: filled and checked */
    size_t align;       /* alignment asked (MALLOC_ALIGN for the malloc family) */
    uint64_t id;        /* pattern seed, and key of the shadow map entry */
    unsigned owner;     /* number of the thread that allocated it */
    unsigned char api;  /* the call that made it (realloc for a reallocated block) */
} block_t;

/** Flavors of a worker (swarm testing): what its sizes, calls and operations lean to. */
enum { SIZES_MIXED, SIZES_TINY, SIZES_LARGE, SIZES_PAGES, SIZES_COUNT };
enum { CALLS_MIXED, CALLS_ALIGNED, CALLS_MALLOC, CALLS_COUNT };
enum { OPS_MIXED, OPS_REALLOC, OPS_TRADE, OPS_COUNT };

/** A worker's view: its random stream, flavor, its own blocks, and its counters. */
typedef struct {
    uint64_t rng;
    unsigned char sizes, calls, mix;  /* flavor: SIZES_*, CALLS_*, OPS_* */
    block_t *local;     /* opt_live slots (fewer for helpers and children) */
    long nlocal;
    unsigned tid;       /* this thread's number */
    int slot, gen;
    int may_fork;       /* 0 in forked children and helpers */
    unsigned long ops, ops_published; /* operations run (ctx_op), and added to total_ops */
    unsigned long allocs, frees, reallocs, cross, forks, threads, validates, big_align_enomem;
} worker_t;

/** Adds a worker's counters to the run's totals (and zeroes them, except ops). */
static void publish_counters(worker_t *w) {
    total_ops += w->ops - w->ops_published;
    w->ops_published = w->ops;
    total_allocs += w->allocs;
    total_frees += w->frees;
    total_reallocs += w->reallocs;
    total_cross += w->cross;
    total_forks += w->forks;
    total_threads += w->threads;
    total_validates += w->validates;
    total_big_align_enomem += w->big_align_enomem;
    w->allocs = w->frees = w->reallocs = w->cross = w->forks = w->threads = 0;
    w->validates = w->big_align_enomem = 0;
}

/** Describes block b into buf, for reports. */
static const char *describe(char *buf, size_t cap, const block_t *b) {
    snprintf(buf, cap, "block id=%llu %p of %zu bytes (usable %zu) from %s, align %zu, allocated by thread #%u",
             (unsigned long long)b->id, (void *)b->p, b->size, b->usable, api_names[b->api], b->align, b->owner);
    return buf;
}

/** Checks bytes [from, to) of block b (at address p, which is b->p unless it moved)
 *  against its pattern; fails with the first bad offset, how many bytes differ and
 *  whether they are all zero (memory given back to the OS while still live). */
static void check_content(const block_t *b, const unsigned char *p, size_t from, size_t to, const char *when) {
    size_t bad = first_mismatch(p, from, to, b->id);
    if (bad == SIZE_MAX) return;
    uint64_t base = pattern_base(b->id);
    size_t differing = 0, zero = 0;
    for (size_t i = bad; i < to; i++)
        if (p[i] != pattern_byte(base, i)) differing++, zero += p[i] == 0;
    char what[256];
    fail("content corrupted %s: %s%s, at offset %zu of %zu checked bytes (found 0x%02x, expected 0x%02x); "
         "%zu bytes differ%s", when, describe(what, sizeof what, b),
         p != b->p ? " (moved by realloc)" : "", bad, to, p[bad], pattern_byte(base, bad), differing,
         zero == differing ? ", all zero" : "");
}

/* ---- the shadow interval map: a treap keyed by start address, under one lock ---- */

/** One live interval [start, end) of block id. Index 0 is the empty tree. */
typedef struct {
    uintptr_t start, end;
    uint64_t id;
    uint32_t left, right, priority;
} shadow_node_t;

static pthread_mutex_t shadow_lock = PTHREAD_MUTEX_INITIALIZER;
static shadow_node_t *shadow;             /* SHADOW_CAPACITY nodes, from model_memory */
static uint32_t shadow_root, shadow_used = 1, shadow_free_list;
static long shadow_count;
static uint64_t shadow_rng = 0x5EED;

/** Splits tree t into l (starts < key) and r (starts ≥ key). */
static void shadow_split(uint32_t t, uintptr_t key, uint32_t *l, uint32_t *r) {
    if (!t) {
        *l = *r = 0;
    } else if (shadow[t].start < key) {
        shadow_split(shadow[t].right, key, &shadow[t].right, r);
        *l = t;
    } else {
        shadow_split(shadow[t].left, key, l, &shadow[t].left);
        *r = t;
    }
}

/** Joins trees a and b, every start of a below every start of b. */
static uint32_t shadow_merge(uint32_t a, uint32_t b) {
    if (!a) return b;
    if (!b) return a;
    if (shadow[a].priority > shadow[b].priority) {
        shadow[a].right = shadow_merge(shadow[a].right, b);
        return a;
    }
    shadow[b].left = shadow_merge(a, shadow[b].left);
    return b;
}

/** Adds block id's interval [start, start + length) (length ≥ 1); fails when it overlaps
 *  a live interval (the allocator handed out memory that is still in use). */
static void shadow_insert(uintptr_t start, size_t length, uint64_t id, const char *call) {
    pthread_mutex_lock(&shadow_lock);
    uint32_t below_tree, above_tree;
    shadow_split(shadow_root, start, &below_tree, &above_tree);
    uint32_t before = below_tree, after = above_tree;
    while (before && shadow[before].right) before = shadow[before].right;
    while (after && shadow[after].left) after = shadow[after].left;
    uint32_t clash = before && shadow[before].end > start ? before
                   : after && shadow[after].start < start + length ? after : 0;
    if (clash) {
        shadow_node_t other = shadow[clash];
        shadow_root = shadow_merge(below_tree, above_tree);
        pthread_mutex_unlock(&shadow_lock);
        fail("%s returned [%p, %p) (block id=%llu), which overlaps the live block id=%llu at [%p, %p)", call,
             (void *)start, (void *)(start + length), (unsigned long long)id, (unsigned long long)other.id,
             (void *)other.start, (void *)other.end);
    }
    uint32_t n = shadow_free_list;
    if (n) shadow_free_list = shadow[n].left;
    else if (shadow_used < SHADOW_CAPACITY) n = shadow_used++;
    else {
        pthread_mutex_unlock(&shadow_lock);
        fail("the shadow map is full (%d live blocks)", SHADOW_CAPACITY);
    }
    shadow_rng = shadow_rng * 6364136223846793005ull + 1442695040888963407ull;
    shadow[n] = (shadow_node_t){start, start + length, id, 0, 0, (uint32_t)(shadow_rng >> 32)};
    shadow_root = shadow_merge(shadow_merge(below_tree, n), above_tree);
    shadow_count++;
    pthread_mutex_unlock(&shadow_lock);
}

/** Removes block id's interval, which starts at start; fails when no live interval starts
 *  there or it belongs to another block (the model lost track: a block freed twice). */
static void shadow_remove(uintptr_t start, uint64_t id, const char *call) {
    pthread_mutex_lock(&shadow_lock);
    uint32_t below_tree, rest, match, above_tree;
    shadow_split(shadow_root, start, &below_tree, &rest);
    shadow_split(rest, start + 1, &match, &above_tree);
    if (!match || shadow[match].id != id) {
        uint64_t found = match ? shadow[match].id : 0;
        shadow_root = shadow_merge(shadow_merge(below_tree, match), above_tree);
        pthread_mutex_unlock(&shadow_lock);
        if (!match) fail("%s of %p (block id=%llu): no live block starts there", call, (void *)start, (unsigned long long)id);
        fail("%s of %p (block id=%llu): the live block there is id=%llu", call, (void *)start,
             (unsigned long long)id, (unsigned long long)found);
    }
    shadow[match].left = shadow_free_list;
    shadow_free_list = match;
    shadow_root = shadow_merge(below_tree, above_tree);
    shadow_count--;
    pthread_mutex_unlock(&shadow_lock);
}

/* ---- the exchange: shared slots blocks travel through between threads ---- */

static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;
static block_t exchange[EXCHANGE_SLOTS];

/** Puts block b (maybe empty) into exchange slot i and returns what was there. */
static block_t exchange_swap(size_t i, block_t b) {
    pthread_mutex_lock(&exchange_lock);
    block_t previous = exchange[i];
    exchange[i] = b;
    pthread_mutex_unlock(&exchange_lock);
    return previous;
}

/* ---- calls with errno checks ---- */

/** Before a call: remembers what the thread is doing and sets errno to the sentinel. */
static inline void begin_call(const char *what) {
    ctx_what = what;
    errno = ERRNO_SENTINEL;
}

/** After a successful call (swmalloc only): errno must still hold the sentinel. */
static inline void check_errno_kept(const char *call) {
    int e = errno;
    if (is_swmalloc && e != ERRNO_SENTINEL)
        fail("%s succeeded but changed errno from %d to %d (%s)", call, ERRNO_SENTINEL, e, strerror(e));
}

/** Calls swm_validate (when the allocator has it) on the calling thread's heap. */
static void validate_heap(worker_t *w, const char *when) {
    if (!validate_fn) return;
    ctx_what = when;
    int violations = validate_fn();
    if (violations) fail("swm_validate() %s reported %d violations (see the swmalloc: lines above)", when, violations);
    if (w) w->validates++;
}

/* ---- sizes and alignments ---- */

/** Draws worker w's flavor (swarm testing): each of its sizes, calls and operations is
 *  the common mix half of the time, else skewed one way, so that threads with different
 *  skews reach states that one mix rarely does. */
static void choose_flavor(worker_t *w) {
    w->sizes = below(&w->rng, 2) ? SIZES_MIXED : (unsigned char)(1 + below(&w->rng, SIZES_COUNT - 1));
    w->calls = below(&w->rng, 2) ? CALLS_MIXED : (unsigned char)(1 + below(&w->rng, CALLS_COUNT - 1));
    w->mix = below(&w->rng, 2) ? OPS_MIXED : (unsigned char)(1 + below(&w->rng, OPS_COUNT - 1));
}

/** A requested size for worker w: mostly tiny and small, less often medium, large and
 *  huge, sometimes next to a power of two; only tiny and small while the live bytes exceed
 *  the cap. Skewed by w's flavor: tiny, large (64 KiB … 2 MiB) or whole pages. */
static size_t draw_size(worker_t *w) {
    uint64_t *rng = &w->rng;
    int capped = live_bytes > (long)LIVE_BYTES_CAP;
    if (w->sizes == SIZES_TINY && below(rng, 10)) return below(rng, 257);
    if (w->sizes == SIZES_LARGE && !capped && below(rng, 2)) return 64 * KiB + below(rng, 2 * MiB - 64 * KiB + 1);
    if (w->sizes == SIZES_PAGES && below(rng, 2)) return page_size * (1 + below(rng, 64)) - (below(rng, 4) ? 0 : 16);
    uint64_t r = next_random(rng);
    unsigned pick = (unsigned)(r % 10000);
    r >>= 16;
    if (pick < 300) {                                   /* next to a power of two */
        unsigned shift = (unsigned)(r % 24);            /* 1 B … 8 MiB */
        if (shift > 17 && (capped || (r >> 8) % 4)) shift = (unsigned)((r >> 12) % 18);
        size_t n = (size_t)1 << shift;
        static const long deltas[] = {0, 0, 1, -1, 16, -16};
        long delta = deltas[(r >> 20) % 6];
        return (long)n + delta < 0 ? n : (size_t)((long)n + delta);
    }
    if (pick < 5500 || (capped && pick >= 8500)) return r % 129;
    if (pick < 8500) return 129 + r % (8 * KiB - 128);
    if (pick < 9700) return 8 * KiB + 1 + r % (120 * KiB);
    if (pick < 9975) return 128 * KiB + 1 + r % (2 * MiB - 128 * KiB);
    return 2 * MiB + 1 + r % (6 * MiB);
}

/** A power-of-two alignment: mostly 8 B … 4 KiB, sometimes 8 KiB … 1 MiB, now and then
 *  2 or 4 MiB; for an aligned-calls flavor, half of the time 4 KiB … 2 MiB. */
static size_t draw_alignment(worker_t *w) {
    if (w->calls == CALLS_ALIGNED && below(&w->rng, 2)) return (size_t)4 * KiB << below(&w->rng, 10);
    uint64_t r = next_random(&w->rng);
    unsigned pick = (unsigned)(r % 100);
    r >>= 8;
    if (pick < 70) return (size_t)8 << (r % 10);
    if (pick < 96) return (size_t)8 * KiB << (r % 8);
    return (size_t)2 * MiB << (r % 2);
}

/** The smallest power of two ≥ n. */
static size_t power_of_two_above(size_t n) {
    size_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

/** Splits a size into count × element for calloc / reallocarray (the product can be a
 *  little less than n). */
static void split_size(uint64_t *rng, size_t n, size_t *count, size_t *element) {
    static const size_t elements[] = {1, 2, 4, 8, 16, 24, 100};
    size_t e = elements[below(rng, 7)];
    if (below(rng, 6) == 0) e = n ? n : 1;
    *element = e;
    *count = n / e;
}

/* ---- allocation, free, realloc ---- */

/** Records a block just returned by call: checks alignment and usable size, enters it in
 *  the shadow map, checks calloc's zeroes and fills it. */
static void adopt_new(worker_t *w, block_t *b, const char *call, size_t expect_align, size_t min_usable) {
    if ((uintptr_t)b->p % expect_align)
        fail("%s(size %zu, align %zu) returned %p, not aligned to %zu", call, b->size, b->align, (void *)b->p, expect_align);
    begin_call("malloc_usable_size");
    b->usable = malloc_usable_size(b->p);
    check_errno_kept("malloc_usable_size");
    if (b->usable < min_usable)
        fail("%s(size %zu, align %zu) returned %p with malloc_usable_size %zu < %zu", call, b->size, b->align,
             (void *)b->p, b->usable, min_usable);
    ctx_what = call;
    b->id = next_id++;
    b->owner = w->tid;
    shadow_insert((uintptr_t)b->p, b->usable ? b->usable : 1, b->id, call);
    if (b->api == API_CALLOC) {
        size_t i = 0;
        while (i + 8 <= b->size && *(const word_t *)(b->p + i) == 0) i += 8;
        for (; i < b->size; i++)
            if (b->p[i]) fail("calloc(size %zu) returned %p whose byte %zu is 0x%02x, not zero", b->size, (void *)b->p, i, b->p[i]);
    }
    fill(b->p, 0, b->usable, b->id);
    live_bytes += (long)b->usable;
    w->allocs++;
}

/** Allocates a block by a random call (malloc, calloc, realloc(NULL), reallocarray(NULL),
 *  posix_memalign, aligned_alloc, memalign, valloc, pvalloc) of a random size. Returns an
 *  empty block only for a tolerated ENOMEM (alignment above 2 MiB with the flag). */
static block_t allocate(worker_t *w) {
    block_t b = {0};
    uint64_t pick = w->calls == CALLS_ALIGNED && below(&w->rng, 4) ? 58 + below(&w->rng, 42)
                  : w->calls == CALLS_MALLOC && below(&w->rng, 4) ? below(&w->rng, 58) : below(&w->rng, 100);
    size_t n = draw_size(w), count, element, expect_align = MALLOC_ALIGN, min_usable;
    int rc = 0;
    b.align = MALLOC_ALIGN;
    if (pick < 36) {
        b.api = API_MALLOC;
        begin_call("malloc");
        b.p = malloc(n);
    } else if (pick < 48) {
        b.api = API_CALLOC;
        split_size(&w->rng, n, &count, &element);
        n = count * element;
        begin_call("calloc");
        b.p = below(&w->rng, 2) ? calloc(count, element) : calloc(element, count);
    } else if (pick < 53) {
        b.api = API_REALLOC;
        begin_call("realloc(NULL)");
        b.p = realloc(NULL, n);
    } else if (pick < 58) {
        b.api = API_REALLOCARRAY;
        split_size(&w->rng, n, &count, &element);
        n = count * element;
        begin_call("reallocarray(NULL)");
        b.p = reallocarray(NULL, count, element);
    } else if (pick < 70) {
        b.api = API_POSIX_MEMALIGN;
        b.align = expect_align = draw_alignment(w);
        void *out = NULL;
        begin_call("posix_memalign");
        rc = posix_memalign(&out, b.align, n);
        b.p = rc ? NULL : out;
        if (rc) errno = rc;
    } else if (pick < 82) {
        b.api = API_ALIGNED_ALLOC;
        b.align = expect_align = draw_alignment(w);
        begin_call("aligned_alloc");
        b.p = aligned_alloc(b.align, n);
    } else if (pick < 92) {
        b.api = API_MEMALIGN;
        b.align = draw_alignment(w);
        if (b.align > 16 && below(&w->rng, 8) == 0) b.align -= b.align / 4 + (size_t)below(&w->rng, 3); /* not a power of two */
        expect_align = power_of_two_above(b.align);
        begin_call("memalign");
        b.p = memalign(b.align, n);
    } else if (pick < 96) {
        b.api = API_VALLOC;
        b.align = expect_align = page_size;
        begin_call("valloc");
        b.p = valloc(n);
    } else {
        b.api = API_PVALLOC;
        b.align = expect_align = page_size;
        begin_call("pvalloc");
        b.p = pvalloc(n);
    }
    b.size = n;
    const char *call = api_names[b.api];
    if (!b.p) {
        int e = errno;
        if (expect_align > BIG_ALIGN && e == ENOMEM && opt_allow_big_align_enomem) {
            w->big_align_enomem++;
            return b;
        }
        fail("%s(size %zu, align %zu) failed: %s %d (%s)%s", call, n, b.align, rc ? "returned" : "NULL, errno",
             e, strerror(e), expect_align > BIG_ALIGN ? " [alignment above 2 MiB: --allow-big-align-enomem tolerates ENOMEM]" : "");
    }
    check_errno_kept(call);
    min_usable = b.api == API_PVALLOC ? (n + page_size - 1) / page_size * page_size : n;
    adopt_new(w, &b, call, expect_align, min_usable);
    return b;
}

/** Checks block b's content and usable size, removes it from the model and frees it with
 *  free, free_sized or free_aligned_sized (each where the C rules allow it). */
static void release(worker_t *w, block_t *b) {
    char what[256];
    check_content(b, b->p, 0, b->usable, "before free");
    if (below(&w->rng, 4) == 0) {
        begin_call("malloc_usable_size");
        size_t usable = malloc_usable_size(b->p);
        if (usable != b->usable)
            fail("malloc_usable_size changed from %zu to %zu while the block lived: %s", b->usable, usable,
                 describe(what, sizeof what, b));
    }
    uint64_t how = below(&w->rng, 3);
    int sized = how == 1 && free_sized_fn && b->api <= API_REALLOCARRAY;
    int aligned_sized = how == 2 && free_aligned_sized_fn && b->api == API_ALIGNED_ALLOC;
    const char *call = sized ? "free_sized" : aligned_sized ? "free_aligned_sized" : "free";
    shadow_remove((uintptr_t)b->p, b->id, call);
    live_bytes -= (long)b->usable;
    if (b->owner != w->tid) w->cross++;
    begin_call(call);
    if (sized) free_sized_fn(b->p, b->size);
    else if (aligned_sized) free_aligned_sized_fn(b->p, b->align, b->size);
    else free(b->p);
    check_errno_kept(call);
    w->frees++;
    b->p = NULL;
}

/** Resizes block *b to n bytes with realloc (or reallocarray when use_array): checks the
 *  content before, the kept prefix after, alignment and usable size. realloc to 0 frees
 *  the block and leaves *b empty. */
static void resize(worker_t *w, block_t *b, size_t n, int use_array) {
    char what[256];
    check_content(b, b->p, 0, b->usable, "before realloc");
    block_t old = *b;
    size_t count = n, element = 1;
    if (use_array) {
        split_size(&w->rng, n, &count, &element);
        n = count * element;
    }
    const char *call = use_array ? "reallocarray" : "realloc";
    shadow_remove((uintptr_t)old.p, old.id, call);
    live_bytes -= (long)old.usable;
    if (old.owner != w->tid) w->cross++;
    begin_call(call);
    unsigned char *q = use_array ? reallocarray(old.p, count, element) : realloc(old.p, n);
    int e = errno;
    w->reallocs++;
    if (n == 0 && !q) {                     /* realloc(p, 0) freed p (glibc's and swmalloc's rule) */
        w->frees++;
        b->p = NULL;
        return;
    }
    if (!q)
        fail("%s(%p, %zu) failed: errno %d (%s); the block was %s", call, (void *)old.p, n, e, strerror(e),
             describe(what, sizeof what, &old));
    check_errno_kept(call);
    if ((uintptr_t)q % MALLOC_ALIGN) fail("%s(%p, %zu) returned %p, not aligned to %zu", call, (void *)old.p, n, (void *)q, (size_t)MALLOC_ALIGN);
    begin_call("malloc_usable_size");
    size_t usable = malloc_usable_size(q);
    if (usable < n) fail("%s(%p, %zu) returned %p with malloc_usable_size %zu", call, (void *)old.p, n, (void *)q, usable);
    shadow_insert((uintptr_t)q, usable ? usable : 1, old.id, call);
    size_t kept = old.size < n ? old.size : n;
    ctx_what = call;
    check_content(&old, q, 0, kept, q == old.p ? "by realloc in place" : "by realloc (moved)");
    b->p = q;
    b->size = n;
    b->usable = usable;
    b->align = MALLOC_ALIGN;
    b->api = use_array ? API_REALLOCARRAY : API_REALLOC;
    fill(q, kept, usable, b->id);
    live_bytes += (long)usable;
}

/** A new size for a block of n bytes: doubled, halved, the same, ±1, random, or 0. */
static size_t new_size(worker_t *w, size_t n) {
    uint64_t *rng = &w->rng;
    size_t m;
    switch (below(rng, 16)) {
    case 0: case 1: case 2: m = n * 2 + below(rng, 64); break;
    case 3: case 4: m = n / 2; break;
    case 5: m = n; break;
    case 6: m = n + 1; break;
    case 7: m = n ? n - 1 : 0; break;
    case 8: m = n + below(rng, 4096); break;
    case 9: m = 0; break;
    default: m = draw_size(w); break;
    }
    if (m > 8 * MiB) m = 8 * MiB;
    if (m > 256 * KiB && live_bytes > (long)LIVE_BYTES_CAP) m = n / 2;
    return m;
}

/* ---- edge cases ---- */

/** Expects a call that must fail to have returned NULL with errno ENOMEM. */
static void expect_enomem(const void *p, const char *call) {
    int e = errno;
    if (p) fail("%s succeeded (returned %p) but must fail with ENOMEM", call, p);
    if (e != ENOMEM) fail("%s returned NULL with errno %d (%s), not ENOMEM", call, e, strerror(e));
}

/** One edge case of the API, at random: overflowing sizes, invalid alignments, NULL. */
static void edge_case(worker_t *w, block_t *b) {
    void *p = NULL;
    int rc;
    volatile size_t huge_count = SIZE_MAX / 8, size_max = SIZE_MAX; /* volatile: no compiler warnings */
    switch (below(&w->rng, 10)) {
    case 0:
        begin_call("calloc overflow");
        expect_enomem(calloc(huge_count, 16 + below(&w->rng, 5)), "calloc(SIZE_MAX / 8, 16+)");
        break;
    case 1:                                         /* the block must survive a failed reallocarray */
        begin_call("reallocarray overflow");
        expect_enomem(reallocarray(b->p, huge_count, 9), "reallocarray(p, SIZE_MAX / 8, 9)");
        if (b->p) check_content(b, b->p, 0, b->usable, "after a failed reallocarray");
        break;
    case 2:
        begin_call("realloc overflow");
        expect_enomem(realloc(b->p, size_max - below(&w->rng, 4096)), "realloc(p, SIZE_MAX - k)");
        if (b->p) check_content(b, b->p, 0, b->usable, "after a failed realloc");
        break;
    case 3:
        begin_call("malloc overflow");
        expect_enomem(malloc(size_max - below(&w->rng, 100000)), "malloc(SIZE_MAX - k)");
        begin_call("malloc overflow");
        expect_enomem(malloc(((size_t)1 << 62) + below(&w->rng, 100)), "malloc(2^62 + k)");
        break;
    case 4:                                         /* invalid alignments: EINVAL */
        begin_call("posix_memalign invalid alignment");
        if ((rc = posix_memalign(&p, 24, 16)) != EINVAL) fail("posix_memalign(align 24) returned %d, not EINVAL", rc);
        if ((rc = posix_memalign(&p, 4, 16)) != EINVAL) fail("posix_memalign(align 4) returned %d, not EINVAL", rc);
        if ((rc = posix_memalign(&p, 0, 16)) != EINVAL) fail("posix_memalign(align 0) returned %d, not EINVAL", rc);
        if (is_swmalloc) {                          /* glibc < 2.38 rounds it up instead */
            begin_call("aligned_alloc invalid alignment");
            p = aligned_alloc(48, 96);
            int e = errno;
            if (p || e != EINVAL) fail("aligned_alloc(48, 96) returned %p errno %d, not NULL and EINVAL", p, e);
        }
        break;
    case 5:                                         /* an alignment no address space holds */
        begin_call("posix_memalign impossible alignment");
        rc = posix_memalign(&p, (size_t)1 << 62, 16);
        if (rc != ENOMEM && rc != EINVAL) fail("posix_memalign(align 2^62) returned %d (%p), not ENOMEM", rc, rc ? NULL : p);
        break;
    case 6:
        begin_call("pvalloc overflow");
        expect_enomem(pvalloc(size_max - below(&w->rng, 100)), "pvalloc(SIZE_MAX - k)");
        break;
    case 7:
        begin_call("malloc_usable_size(NULL)");
        if (malloc_usable_size(NULL) != 0) fail("malloc_usable_size(NULL) is not 0");
        check_errno_kept("malloc_usable_size(NULL)");
        break;
    case 8:
        begin_call("free(NULL)");
        free(NULL);
        if (free_sized_fn) free_sized_fn(NULL, below(&w->rng, 100));
        if (free_aligned_sized_fn) free_aligned_sized_fn(NULL, 64, 0);
        check_errno_kept("free(NULL)");
        break;
    default:                                        /* the usable size is stable */
        if (b->p) {
            begin_call("malloc_usable_size");
            size_t usable = malloc_usable_size(b->p);
            check_errno_kept("malloc_usable_size");
            char what[256];
            if (usable != b->usable)
                fail("malloc_usable_size changed from %zu to %zu while the block lived: %s", b->usable, usable,
                     describe(what, sizeof what, b));
        }
        break;
    }
}

/* ---- worker operations ---- */

/** A burst: 8–64 small blocks allocated, then freed in a random order. */
static void burst(worker_t *w) {
    block_t blocks[64];
    int n = 8 + (int)below(&w->rng, 57);
    for (int i = 0; i < n; i++) {
        blocks[i] = (block_t){0};
        size_t size = below(&w->rng, 4) ? below(&w->rng, 257) : below(&w->rng, 4097);
        blocks[i].api = API_MALLOC;
        blocks[i].align = MALLOC_ALIGN;
        blocks[i].size = size;
        begin_call("malloc (burst)");
        blocks[i].p = malloc(size);
        if (!blocks[i].p) fail("malloc(%zu) failed: errno %d", size, errno);
        check_errno_kept("malloc");
        adopt_new(w, &blocks[i], "malloc", MALLOC_ALIGN, size);
    }
    for (int i = n - 1; i >= 0; i--) {
        int j = (int)below(&w->rng, (uint64_t)i + 1);
        block_t t = blocks[i];
        blocks[i] = blocks[j];
        blocks[j] = t;
        release(w, &blocks[i]);
    }
}

/** Takes what exchange slot j holds in return for block b (maybe empty); returns the block
 *  received after checking its content (empty when the slot was). */
static block_t trade(block_t b, size_t j) {
    block_t got = exchange_swap(j, b);
    if (got.p) check_content(&got, got.p, 0, got.usable, "while in the exchange");
    return got;
}

static void run_ops(worker_t *w, long count);
static void fork_child(worker_t *w);

/** Takes up to count blocks of other threads out of the exchange and frees them, or
 *  (when may_realloc, one in three) reallocates them and puts them back. New threads run
 *  it first, so that their first allocator call is a free or realloc of a foreign block. */
static void take_foreign(worker_t *w, int count, int may_realloc) {
    for (int k = 0; k < count; k++) {
        ctx_op = k;
        block_t got = trade((block_t){0}, below(&w->rng, EXCHANGE_SLOTS));
        if (!got.p) continue;
        if (!may_realloc || below(&w->rng, 3)) {
            release(w, &got);
            continue;
        }
        resize(w, &got, new_size(w, got.size), below(&w->rng, 4) == 0);
        if (!got.p) continue;
        block_t back = trade(got, below(&w->rng, EXCHANGE_SLOTS));
        if (back.p) release(w, &back);
    }
}

/** A helper thread's body: allocates 200 blocks, trades half of them through the
 *  exchange (freeing, reallocating or keeping what comes back), frees the rest, checks
 *  its heap, exits. */
static void *helper_main(void *arg) {
    worker_t *parent = arg;
    worker_t w = {0};
    w.rng = stream_seed(parent->slot + 1000, (int)parent->tid);
    w.tid = (unsigned)next_tid++;
    w.slot = parent->slot;
    w.gen = -(int)w.tid;
    choose_flavor(&w);
    ctx_slot = w.slot, ctx_gen = w.gen;
    if (below(&w.rng, 3) == 0) {                    /* a thread that only frees, never allocates */
        take_foreign(&w, 32, 0);
        validate_heap(&w, "at a freeing-only helper thread's exit");
        publish_counters(&w);
        return NULL;
    }
    if (below(&w.rng, 2)) take_foreign(&w, 4, 1);  /* first call: a foreign free or realloc */
    block_t kept[16] = {{0}};
    for (int k = 0; k < 200; k++) {
        ctx_op = k;
        block_t b = allocate(&w);
        if (!b.p) continue;
        if (k % 2) {
            block_t got = trade(b, below(&w.rng, EXCHANGE_SLOTS));
            if (!got.p) continue;
            switch (below(&w.rng, 3)) {
            case 0: release(&w, &got); break;
            case 1: resize(&w, &got, new_size(&w, got.size), 0); if (got.p) release(&w, &got); break;
            default: {
                block_t *slot = &kept[below(&w.rng, 16)];
                if (slot->p) release(&w, slot);
                *slot = got;
            }
            }
        } else {
            release(&w, &b);
        }
        w.ops++;
    }
    for (int i = 0; i < 16; i++)                    /* blocks of other threads outlive this one */
        if (kept[i].p) {
            block_t got = trade(kept[i], below(&w.rng, EXCHANGE_SLOTS));
            if (got.p) release(&w, &got);
        }
    validate_heap(&w, "at helper thread exit");
    publish_counters(&w);
    return NULL;
}

/** One random operation of worker w on its local blocks, the exchange, or the process. */
static void step(worker_t *w) {
    uint64_t r = next_random(&w->rng);
    block_t *b = &w->local[(r >> 20) % (uint64_t)w->nlocal];
    unsigned pick = (unsigned)(r % 1000);
    if (w->mix == OPS_REALLOC && pick < 500) pick = 430 + pick % 150;
    if (w->mix == OPS_TRADE && pick < 500) pick = 580 + pick % 220;
    if (pick < 300) {                               /* allocate into a slot */
        if (b->p) release(w, b);
        *b = allocate(w);
    } else if (pick < 430) {                        /* free */
        if (b->p) release(w, b);
    } else if (pick < 580) {                        /* realloc: grow, shrink, to 0; or from NULL */
        if (b->p) resize(w, b, new_size(w, b->size), below(&w->rng, 5) == 0);
        else *b = allocate(w);
    } else if (pick < 800) {                        /* trade with another thread */
        block_t got = trade(*b, (r >> 40) % EXCHANGE_SLOTS);
        *b = (block_t){0};
        if (got.p) {
            switch (below(&w->rng, 10)) {
            case 0: case 1: case 2: case 3: *b = got; break;
            case 4: case 5: case 6: release(w, &got); break;
            default: resize(w, &got, new_size(w, got.size), below(&w->rng, 4) == 0); *b = got; break;
            }
        }
    } else if (pick < 880) {                        /* check a block */
        ctx_what = "checking a block";
        if (b->p) check_content(b, b->p, 0, b->usable, "while live");
    } else if (pick < 940) {
        edge_case(w, b);
    } else if (pick < 970) {
        burst(w);
    } else if (w->may_fork && opt_fork && below(&w->rng, FORK_EVERY / 30) == 0) {
        fork_child(w);
    } else if (w->may_fork && below(&w->rng, HELPER_EVERY / 30) == 0) {
        ctx_what = "starting a helper thread";
        pthread_t helper;
        if (pthread_create(&helper, NULL, helper_main, w)) fail("pthread_create of a helper failed");
        pthread_join(helper, NULL);
        w->threads++;
    } else if (collect_fn && below(&w->rng, 20) == 0) {
        begin_call("swm_collect");                  /* purge this heap's free spans now */
        collect_fn();
        check_errno_kept("swm_collect");
    }
}

/** Runs count operations of worker w, with swm_validate every VALIDATE_EVERY. */
static void run_ops(worker_t *w, long count) {
    for (long k = 0; k < count; k++) {
        ctx_op = w->ops;
        step(w);
        w->ops++;
        if (w->ops % VALIDATE_EVERY == 0) validate_heap(w, "periodic");
        if (w->ops % 256 == 0) publish_counters(w);
    }
}

/** A thread of a forked child: runs a few operations on blocks of its own, frees them. */
static void *child_thread_main(void *arg) {
    worker_t *parent = arg;
    block_t local[64] = {{0}};
    worker_t w = {0};
    w.rng = stream_seed(parent->slot + 2000, (int)parent->tid);
    w.local = local, w.nlocal = 64, w.tid = parent->tid + 1000000, w.slot = parent->slot, w.gen = -1;
    ctx_slot = w.slot, ctx_gen = w.gen;
    run_ops(&w, CHILD_OPS);
    for (int i = 0; i < 64; i++)
        if (local[i].p) release(&w, &local[i]);
    validate_heap(&w, "at a forked child's thread exit");
    return NULL;
}

/** The forked child: checks and frees, reallocates or keeps the blocks it inherited
 *  (from every thread of the parent), runs operations of its own on this thread and on a
 *  new one, checks its heap and exits 0. */
static void child_main(worker_t *w) {
    in_child = 1;
    w->may_fork = 0;
    w->rng = mix64(w->rng ^ 0xC0FFEE);
    ctx_what = "forked child";
    for (int k = 0; k < 64; k++) {              /* blocks other threads left in the exchange */
        size_t j = below(&w->rng, EXCHANGE_SLOTS);
        block_t got = exchange[j];
        exchange[j] = (block_t){0};
        if (!got.p) continue;
        check_content(&got, got.p, 0, got.usable, "inherited through fork (exchange)");
        if (below(&w->rng, 2)) release(w, &got);
        else {
            resize(w, &got, new_size(w, got.size), 0);
            if (got.p) release(w, &got);
        }
    }
    run_ops(w, CHILD_OPS);
    pthread_t thread;
    ctx_what = "starting a thread in a forked child";
    if (pthread_create(&thread, NULL, child_thread_main, w)) fail("pthread_create in a forked child failed");
    pthread_join(thread, NULL);
    for (long i = 0; i < w->nlocal; i++)
        if (w->local[i].p && below(&w->rng, 4) == 0) release(w, &w->local[i]);
    validate_heap(w, "in a forked child");
    _exit(0);
}

/** Forks (holding the model's locks, so the child's copy of the model is whole); the
 *  child runs child_main, the parent waits for it and fails when it did not exit 0. */
static void fork_child(worker_t *w) {
    ctx_what = "fork";
    pthread_mutex_lock(&exchange_lock);
    pthread_mutex_lock(&shadow_lock);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_init(&exchange_lock, NULL);
        pthread_mutex_init(&shadow_lock, NULL);
        child_main(w);
    }
    pthread_mutex_unlock(&shadow_lock);
    pthread_mutex_unlock(&exchange_lock);
    if (pid < 0) fail("fork failed: %s", strerror(errno));
    w->forks++;
    ctx_what = "waiting for a forked child";
    int status = 0;
    struct timespec start, now, pause_time = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) break;
        if (done < 0 && errno != EINTR) fail("waitpid failed: %s", strerror(errno));
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > CHILD_TIMEOUT_S) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail("forked child %d still running after %d s (deadlock after fork?)", (int)pid, CHILD_TIMEOUT_S);
        }
        nanosleep(&pause_time, NULL);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    /* The child printed its own failure line (fail or the signal handler): exit quietly. */
    if ((WIFEXITED(status) && WEXITSTATUS(status) == 1) ||
        (WIFSIGNALED(status) && (WTERMSIG(status) == SIGABRT || WTERMSIG(status) == SIGSEGV ||
                                 WTERMSIG(status) == SIGBUS || WTERMSIG(status) == SIGILL ||
                                 WTERMSIG(status) == SIGTRAP || WTERMSIG(status) == SIGFPE))) {
        if (!__atomic_exchange_n(&failing, 1, __ATOMIC_SEQ_CST)) _exit(1);
        for (;;) pause();
    }
    if (WIFSIGNALED(status)) fail("forked child %d killed by signal %d", (int)pid, WTERMSIG(status));
    fail("forked child %d exited with status %d", (int)pid, WEXITSTATUS(status));
}

/* ---- threads and runs ---- */

/** One slot: the sequence of worker threads that run its operations. */
typedef struct {
    int index;
    int generation;     /* of the thread running now */
    long ops_left;      /* operations of the slot not yet run */
    long lifetime;      /* operations of the thread running now */
    pthread_t thread;
    int running, finished;
} slot_t;

static slot_t slots[MAX_THREADS];

/** The state of a worker's thread-exit destructor (model memory: it outlives the worker's
 *  stack frame). */
typedef struct {
    block_t held;       /* a block the destructor frees */
    uint64_t rng;
    unsigned tid;
    int slot, gen, round;
} exit_state_t;

/** The key whose destructor runs at each worker thread's exit. */
static pthread_key_t exit_key;

/** Runs while a worker thread exits, after its start routine returned (maybe after the
 *  allocator's own thread-exit hook): frees the block the worker left, allocates a block
 *  that outlives the thread (into the exchange), checks the heap; then sets itself again
 *  once, so a second round frees a block allocated in the first. */
static void exit_destructor(void *arg) {
    exit_state_t *e = arg;
    worker_t w = {0};
    w.rng = e->rng, w.tid = e->tid, w.slot = e->slot, w.gen = e->gen;
    ctx_what = "thread-exit destructor";
    ctx_op = -1 - e->round;
    if (e->held.p) release(&w, &e->held);
    block_t b = allocate(&w);
    if (b.p) {
        block_t got = trade(b, below(&w.rng, EXCHANGE_SLOTS));
        if (got.p) release(&w, &got);
    }
    if (++e->round < 2) {
        e->held = allocate(&w);
        e->rng = w.rng;
        if (pthread_setspecific(exit_key, e)) fail("pthread_setspecific in a destructor failed");
    } else {
        munmap(e, sizeof *e);
    }
    validate_heap(&w, "in a thread-exit destructor");
    publish_counters(&w);
}
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;

/** A worker thread: maybe first frees or reallocates blocks of other threads, runs its
 *  lifetime's operations on its own block slots and the exchange, then hands half of its
 *  blocks to the exchange (they outlive it), frees the rest, checks its heap, leaves a
 *  block to its exit destructor and tells the main thread it is done. */
static void *worker_main(void *arg) {
    slot_t *s = arg;
    worker_t w = {0};
    w.rng = stream_seed(s->index, s->generation);
    w.local = model_memory((size_t)opt_live * sizeof(block_t));
    w.nlocal = opt_live;
    w.tid = (unsigned)next_tid++;
    w.slot = s->index, w.gen = s->generation;
    w.may_fork = 1;
    choose_flavor(&w);
    ctx_slot = w.slot, ctx_gen = w.gen;
    exit_state_t *on_exit = model_memory(sizeof *on_exit);
    if (below(&w.rng, 2)) take_foreign(&w, 4, 1);  /* first call: a foreign free or realloc */
    run_ops(&w, s->lifetime);
    ctx_what = "thread exit";
    *on_exit = (exit_state_t){.rng = next_random(&w.rng), .tid = w.tid, .slot = w.slot, .gen = w.gen};
    on_exit->held = allocate(&w);
    if (pthread_setspecific(exit_key, on_exit)) fail("pthread_setspecific failed");
    for (long i = 0; i < w.nlocal; i++) {
        if (!w.local[i].p) continue;
        if (below(&w.rng, 2)) {
            block_t got = trade(w.local[i], below(&w.rng, EXCHANGE_SLOTS));
            if (got.p) release(&w, &got);
            w.local[i].p = NULL;
        } else {
            release(&w, &w.local[i]);
        }
    }
    validate_heap(&w, "at thread exit");
    publish_counters(&w);
    munmap(w.local, (size_t)opt_live * sizeof(block_t));
    pthread_mutex_lock(&done_lock);
    s->finished = 1;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    return NULL;
}

/** Starts slot s's next thread, living MIN_LIFETIME … MAX_LIFETIME operations. */
static void start_worker(slot_t *s, uint64_t *rng) {
    s->lifetime = MIN_LIFETIME + (long)below(rng, MAX_LIFETIME - MIN_LIFETIME + 1);
    if (s->lifetime > s->ops_left || s->ops_left - s->lifetime < MIN_LIFETIME / 2) s->lifetime = s->ops_left;
    s->ops_left -= s->lifetime;
    s->running = 1, s->finished = 0;
    if (pthread_create(&s->thread, NULL, worker_main, s)) fail("pthread_create failed");
    total_threads++;
}

/** Seconds since an arbitrary start, monotonic. */
static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/** Time of the soak's start and of its last progress line. */
static double soak_start, last_progress;

/** Prints a soak progress line when PROGRESS_EVERY_S passed since the last one. */
static void maybe_progress(void) {
    if (opt_minutes <= 0) return;
    double now = now_seconds();
    if (now - last_progress < PROGRESS_EVERY_S) return;
    last_progress = now;
    printf("fuzz progress: %.0f s, seed=%llu, %lu ops, %lu allocations, %lu forks, %lu threads so far\n",
           now - soak_start, (unsigned long long)run_seed, (unsigned long)total_ops,
           (unsigned long)total_allocs, (unsigned long)total_forks, (unsigned long)total_threads);
    fflush(stdout);
}

/** One run with seed run_seed: the slots' threads, with churn, until every slot has run
 *  its operations; then the main thread frees what the exchange holds and checks that
 *  the model is empty. Fails when no operation completes for STALL_TIMEOUT_S. */
static void run_once(void) {
    uint64_t rng = stream_seed(-1, 0);
    for (int i = 0; i < opt_threads; i++) {
        slots[i] = (slot_t){.index = i, .generation = 0, .ops_left = opt_ops};
        start_worker(&slots[i], &rng);
    }
    unsigned long last_ops = total_ops;
    double last_change = now_seconds();
    for (;;) {
        int running = 0;
        for (int i = 0; i < opt_threads; i++) running += slots[i].running;
        if (!running) break;
        pthread_mutex_lock(&done_lock);
        int any = 0;
        for (int i = 0; i < opt_threads; i++) any |= slots[i].running && slots[i].finished;
        if (!any) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 250000000;
            if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&done_cond, &done_lock, &until);
        }
        int finished[MAX_THREADS];
        for (int i = 0; i < opt_threads; i++) finished[i] = slots[i].running && slots[i].finished;
        pthread_mutex_unlock(&done_lock);
        for (int i = 0; i < opt_threads; i++) {
            if (!finished[i]) continue;
            pthread_join(slots[i].thread, NULL);
            slots[i].running = 0;
            if (slots[i].ops_left > 0) {
                slots[i].generation++;
                start_worker(&slots[i], &rng);
            }
        }
        double now = now_seconds();
        if (total_ops != last_ops) last_ops = total_ops, last_change = now;
        else if (now - last_change > STALL_TIMEOUT_S)
            fail("no operation completed for %d s (deadlock?); %lu ops done", STALL_TIMEOUT_S, (unsigned long)total_ops);
        maybe_progress();
    }
    worker_t main_worker = {0};
    main_worker.rng = rng;
    main_worker.tid = (unsigned)next_tid++;
    ctx_what = "draining the exchange";
    for (size_t j = 0; j < EXCHANGE_SLOTS; j++) {
        block_t got = trade((block_t){0}, j);
        if (got.p) release(&main_worker, &got);
    }
    validate_heap(&main_worker, "after the run (main thread)");
    publish_counters(&main_worker);
    ctx_what = "checking the model is empty";
    if (shadow_count != 0 || live_bytes != 0)
        fail("model not empty after the run: %ld intervals, %ld bytes (fuzzer bug)", shadow_count, (long)live_bytes);
}

/** Prints the usage and exits 2. */
static void usage(void) {
    fprintf(stderr, "usage: fuzz [--seed N] [--threads T] [--ops N] [--live N] [--minutes M] [--fork] "
                    "[--allow-big-align-enomem]\n");
    exit(2);
}

/** Parses the options, runs once (or repeatedly for --minutes) and prints the summary. */
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--seed") && more) opt_seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(a, "--threads") && more) opt_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--ops") && more) opt_ops = atol(argv[++i]);
        else if (!strcmp(a, "--live") && more) opt_live = atol(argv[++i]);
        else if (!strcmp(a, "--minutes") && more) opt_minutes = atof(argv[++i]);
        else if (!strcmp(a, "--fork")) opt_fork = 1;
        else if (!strcmp(a, "--allow-big-align-enomem")) opt_allow_big_align_enomem = 1;
        else usage();
    }
    if (opt_threads < 1 || opt_threads > MAX_THREADS || opt_ops < 1 || opt_live < 1) usage();
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    validate_fn = (int (*)(void))dlsym(RTLD_DEFAULT, "swm_validate");
    free_sized_fn = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    free_aligned_sized_fn = (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    collect_fn = (void (*)(void))dlsym(RTLD_DEFAULT, "swm_collect");
    is_swmalloc = validate_fn != NULL;
    install_signal_handlers();
    shadow = model_memory((size_t)SHADOW_CAPACITY * sizeof(shadow_node_t));
    if (pthread_key_create(&exit_key, exit_destructor)) fail("pthread_key_create failed");

    soak_start = last_progress = now_seconds();
    uint64_t first_seed = opt_seed;
    unsigned long runs = 0;
    run_seed = opt_seed;
    do {
        run_once();
        runs++;
        run_seed++;
    } while (opt_minutes > 0 && now_seconds() - soak_start < opt_minutes * 60);
    run_seed--;

    char seeds[64];
    if (runs == 1) snprintf(seeds, sizeof seeds, "%llu", (unsigned long long)first_seed);
    else snprintf(seeds, sizeof seeds, "%llu..%llu", (unsigned long long)first_seed, (unsigned long long)run_seed);
    printf("fuzz ok: seed=%s threads=%d ops=%lu (runs %lu, %.1f s; %lu allocations, %lu frees, %lu reallocs, "
           "%lu cross-thread, %lu threads, %lu forks, %lu validations%s; %lu ENOMEM for alignments above 2 MiB%s)\n",
           seeds, opt_threads, (unsigned long)total_ops, runs, now_seconds() - soak_start,
           (unsigned long)total_allocs, (unsigned long)total_frees, (unsigned long)total_reallocs,
           (unsigned long)total_cross, (unsigned long)total_threads, (unsigned long)total_forks,
           (unsigned long)total_validates, validate_fn ? "" : ", no swm_validate: not swmalloc",
           (unsigned long)total_big_align_enomem, total_big_align_enomem ? " (tolerated)" : "");
    return 0;
}
