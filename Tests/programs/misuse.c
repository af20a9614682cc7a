/* misuse.c — one kind of misuse per run: `misuse CASE` (or `misuse list`). Runs with
 * swmalloc preloaded.
 *
 * Every case prints "pointer 0x..." (the pointer it misuses) on stdout, then misuses it:
 * the allocator must abort with one line on stderr naming that pointer. Reaching the end
 * exits 3 ("misuse not detected"), after a look at whether the misuse corrupted the heap
 * (a block handed out twice). A case whose setup did not produce the heap state it needs
 * exits 4 ("setup failed").
 *
 * The one case marked `uncatchable` documents a misuse no allocator can see: it exits 0.
 *
 * The matrix: foreign pointers (stack, static, mmap, another allocator's block, a 4 MiB-
 * aligned mapping, swmalloc's own metadata and unused spans); interior pointers of every
 * kind of block; block starts never handed out; double frees of every kind of block, on
 * the owner thread, on another thread, and across both; double frees after the page was
 * retired and purged, and after its span was formatted again; double frees after the
 * states the purger, thread exit and fork leave (a thread-free list purged, a heap given
 * up, a fork child's absent thread) and of huge blocks shrunk in place or mapped over by
 * the program; realloc and malloc_usable_size of freed, interior and foreign pointers.
 *
 * Set MISUSE_TRACE=1 to print the addresses the heap-state cases work with (stderr). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

/** swmalloc's geometry: 64 KiB slices in 4 MiB segments; class 64 has one-slice pages of
 * 1024 blocks, of which a fresh page threads 16 KiB (256 blocks) at a time. */
#define SLICE ((uintptr_t)64 * KiB)
#define SEGMENT ((uintptr_t)4 * MiB)
#define CLASS64_BLOCKS 1024
#define EXTEND_BYTES (16 * KiB)

/** Memory swmalloc never handed out. */
static char static_buffer[4096] __attribute__((aligned(64)));

/** Announces the pointer about to be misused (flushed before the abort). */
static void *announce(void *p) {
    printf("pointer %p\n", p);
    fflush(stdout);
    return p;
}

/** The case could not set up the heap state it needs: exit 4 (never a pass). */
static void setup_failed(const char *why) {
    fprintf(stderr, "misuse: setup failed: %s\n", why);
    exit(4);
}

/** With MISUSE_TRACE set: prints a diagnostic line on stderr. */
#define TRACE(...)                                                                        \
    do {                                                                                  \
        const char *trace = getenv("MISUSE_TRACE");                                       \
        if (trace && *trace) {                                                            \
            fprintf(stderr, "trace: " __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

/** The 64 KiB slice holding `p`. */
static uintptr_t slice_of(const void *p) { return (uintptr_t)p & ~(SLICE - 1); }

/** A function of the preloaded swmalloc, found with dlsym. */
static void *swm_function(const char *name) {
    void *f = dlsym(RTLD_DEFAULT, name);
    if (!f) setup_failed("swmalloc is not preloaded (no swm_collect)");
    return f;
}

/** After a misuse went unnoticed: mallocs `n` blocks of `size` bytes and reports on
 * stderr a block handed out twice (the freed list was corrupted). */
static void report_reissue(size_t size, size_t n) {
    static void *got[4096];
    if (n > sizeof got / sizeof got[0]) n = sizeof got / sizeof got[0];
    for (size_t i = 0; i < n; i++) {
        got[i] = malloc(size);
        for (size_t j = 0; j < i; j++) {
            if (got[j] == got[i]) {
                fprintf(stderr, "misuse: heap corrupted: malloc(%zu) returned %p twice\n", size, got[i]);
                return;
            }
        }
    }
}

// MARK: - Kinds of block

/** A kind of block: how it is allocated and where inside it an interior pointer points. */
struct kind {
    size_t size;
    size_t alignment;   /* 0: malloc, else posix_memalign */
    size_t interior;    /* offset of an interior pointer (not a block start) */
};

static const struct kind small = {64, 0, 16};                       /* class 64 */
static const struct kind large = {512 * KiB, 0, 4 * KiB};            /* a large page */
static const struct kind huge = {8 * MiB, 0, 64 * KiB};              /* a mapping of its own */
static const struct kind aligned_4k = {4 * KiB, 4 * KiB, 2 * KiB};   /* a small class block */
static const struct kind aligned_128k = {128 * KiB, 128 * KiB, 4 * KiB}; /* a large page at an aligned slice */
static const struct kind aligned_2m = {64 * KiB, 2 * MiB, 4 * KiB};  /* a large page at slice 32 */
static const struct kind aligned_huge = {4 * MiB, 2 * MiB, 64 * KiB}; /* huge, block at base + 2 MiB */
static const struct kind over_aligned = {64 * KiB, 4 * MiB, 4 * KiB}; /* huge, over-aligned (header below) */

/** A block of kind `k`, written to. */
static char *allocate(const struct kind *k) {
    void *p = NULL;
    if (k->alignment == 0) p = malloc(k->size);
    else if (posix_memalign(&p, k->alignment, k->size) != 0) p = NULL;
    if (!p) setup_failed("allocation failed");
    if (k->alignment && (uintptr_t)p % k->alignment) setup_failed("misaligned block");
    memset(p, 1, k->size);
    return p;
}

/** A thread that frees a block `times` times when told to (created before the owner's
 * free, so that no allocation of pthread_create, on either thread, comes between the
 * two frees and takes the freed block or span). */
struct remote {
    pthread_t thread;
    sem_t go;
    void *block;
    int times;
};

/** The thread's body: waits for its block, frees it `times` times. */
static void *remote_main(void *arg) {
    struct remote *r = arg;
    while (sem_wait(&r->go) != 0) {}
    for (int i = 0; i < r->times; i++) free(r->block);
    return NULL;
}

/** Starts a thread that will free a block `times` times. */
static void remote_start(struct remote *r, int times) {
    r->times = times;
    r->block = NULL;
    if (sem_init(&r->go, 0, 0) != 0) setup_failed("sem_init");
    if (pthread_create(&r->thread, NULL, remote_main, r) != 0) setup_failed("pthread_create");
}

/** Tells the thread to free `block`, and waits until it has ended. */
static void remote_free(struct remote *r, void *block) {
    r->block = block;
    sem_post(&r->go);
    pthread_join(r->thread, NULL);
}

// MARK: - Cases over kinds of block

/** Frees a block twice on its owner thread (another block of the kind stays live). */
static void double_free(const struct kind *k) {
    char *keep = allocate(k);
    char *p = allocate(k);
    free(announce(p));
    free(p);
    free(keep);
}

/** Frees a block on another thread, then again on its owner. */
static void double_free_cross_thread(const struct kind *k) {
    struct remote r;
    remote_start(&r, 1);
    char *keep = allocate(k);
    char *p = announce(allocate(k));
    remote_free(&r, p);
    free(p);
    free(keep);
}

/** Frees a block on its owner, then again on another thread (which aborts). */
static void double_free_then_remote(const struct kind *k) {
    struct remote r;
    remote_start(&r, 1);
    char *keep = allocate(k);
    char *p = announce(allocate(k));
    free(p);
    remote_free(&r, p);
    free(keep);
}

/** Frees a block twice on another thread. */
static void double_free_remote_twice(const struct kind *k) {
    struct remote r;
    remote_start(&r, 2);
    char *keep = allocate(k);
    char *p = announce(allocate(k));
    remote_free(&r, p);
    free(keep);
}

/** Frees a pointer inside a block. */
static void interior_free(const struct kind *k) {
    char *p = allocate(k);
    free(announce(p + k->interior));
}

/** A block of class 24 KiB (pages of 3 slices) that lies past its page's first slice:
 * free's fast path reads only the descriptor of a pointer's slice, and this block's is
 * not its page's, so its frees take the slow path, which must check them all the same.
 * The first block of the first fresh page is at a slice boundary; its fourth (72 KiB in)
 * is in the page's second slice. */
static char *past_first_slice_block(void) {
    static char *blocks[16];
    for (size_t i = 0; i < 16; i++) blocks[i] = malloc(24 * KiB);
    for (size_t i = 0; i + 3 < 16; i++) {
        if (slice_of(blocks[i]) == (uintptr_t)blocks[i] && blocks[i + 3] == blocks[i] + 72 * KiB) {
            return blocks[i + 3];
        }
    }
    setup_failed("no fresh page of 24 KiB blocks");
    return NULL;
}

/** Announces `p` and frees it twice. */
static void free_twice(char *p) {
    free(announce(p));
    free(p);
}

static void double_free_past_first_slice(void) { free_twice(past_first_slice_block()); }

static void interior_free_past_first_slice(void) {
    free(announce(past_first_slice_block() + 16));
}

/** Calls realloc, ignoring the result (the call is expected to abort). */
static void reallocate(void *p, size_t n) {
    void *volatile r = realloc(p, n);
    (void)r;
}

/** Calls malloc_usable_size, ignoring the result (the call is expected to abort). */
static void usable_size(void *p) {
    volatile size_t n = malloc_usable_size(p);
    (void)n;
}

/** realloc of a freed block (another block of the kind stays live). */
static void realloc_freed(const struct kind *k) {
    char *keep = allocate(k);
    char *p = allocate(k);
    free(p);
    reallocate(announce(p), k->size * 2);
    free(keep);
}

/** realloc of a pointer inside a block. */
static void realloc_interior(const struct kind *k) {
    char *p = allocate(k);
    reallocate(announce(p + k->interior), k->size * 2);
}

/** malloc_usable_size of a freed block (another block of the kind stays live). */
static void usable_size_freed(const struct kind *k) {
    char *keep = allocate(k);
    char *p = allocate(k);
    free(p);
    usable_size(announce(p));
    free(keep);
}

/** malloc_usable_size of a pointer inside a block. */
static void usable_size_interior(const struct kind *k) {
    char *p = allocate(k);
    usable_size(announce(p + k->interior));
}

// MARK: - Foreign pointers

/** A page mapped directly, never seen by swmalloc. */
static void *mapped_page(void) {
    void *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) setup_failed("mmap");
    return p;
}

/** A 4 MiB-aligned address in a mapping of our own (where an over-aligned block would
 * start: free looks it up in the over-aligned list). */
static void *mapped_4mib_aligned(void) {
    char *p = mmap(NULL, 2 * SEGMENT, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) setup_failed("mmap");
    return (void *)(((uintptr_t)p + SEGMENT - 1) & ~(SEGMENT - 1));
}

/** A block from glibc's own malloc (another allocator in the process). */
static void *libc_block(size_t n) {
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    void *(*libc_malloc)(size_t) = libc ? (void *(*)(size_t))dlsym(libc, "malloc") : NULL;
    if (!libc_malloc || libc_malloc == malloc) setup_failed("glibc's malloc not found");
    void *p = libc_malloc(n);
    if (!p) setup_failed("glibc's malloc failed");
    return p;
}

__attribute__((noinline)) static void free_stack(void) {
    volatile char stack_buffer[64];
    stack_buffer[0] = 0;
    free(announce((void *)stack_buffer));
}

__attribute__((noinline)) static void realloc_stack(void) {
    volatile char stack_buffer[64];
    stack_buffer[0] = 0;
    reallocate(announce((void *)stack_buffer), 100);
}

__attribute__((noinline)) static void usable_size_stack(void) {
    volatile char stack_buffer[64];
    stack_buffer[0] = 0;
    usable_size(announce((void *)stack_buffer));
}

static void free_static(void) { free(announce(static_buffer + 64)); }
static void free_mmap(void) { free(announce(mapped_page())); }
static void free_foreign_allocator(void) { free(announce(libc_block(100))); }

/** A 4 MiB-aligned foreign pointer while a live over-aligned block (where the library
 * has them) keeps the over-aligned list non-empty, so that free searches it. */
static void free_foreign_4mib_aligned(void) {
    void *keep = NULL;
    if (posix_memalign(&keep, over_aligned.alignment, over_aligned.size) != 0) keep = NULL;
    free(announce(mapped_4mib_aligned()));
    free(keep);
}

/** A pointer into slice 0 of a swmalloc segment: its header and page descriptors. */
static void free_segment_header(void) {
    char *p = allocate(&small);
    uintptr_t segment = (uintptr_t)p & ~(SEGMENT - 1);
    free(announce((void *)(segment + 1024)));
}

/** The segment's base: slice 0, whose page descriptor's place holds the segment header
 * itself (it must read as a descriptor with no owner). */
static void free_segment_base(void) {
    char *p = allocate(&small);
    free(announce((void *)((uintptr_t)p & ~(SEGMENT - 1))));
}

/** A pointer into a slice of a swmalloc segment that no page has used yet (the last but
 * one: a fresh process uses a few slices of its first segment). */
static void free_unused_span(void) {
    char *p = allocate(&small);
    uintptr_t segment = (uintptr_t)p & ~(SEGMENT - 1);
    if (slice_of(p) >= segment + 62 * SLICE) setup_failed("the first segment is nearly full");
    free(announce((void *)(segment + 62 * SLICE)));
}

/** A live block's address with bits above the 47-bit user address space set: 2^47
 * higher, and in the kernel's half. free's fast path indexes the segment map with the
 * address masked to 47 bits, so both find the live block's own segment, page and offset;
 * nothing may be read or written at the pointer itself. */
static void free_above_user_space(void) {
    char *p = allocate(&small);
    free(announce(p + (1ull << 47)));
}
static void free_kernel_half(void) {
    char *p = allocate(&small);
    free(announce((void *)((uintptr_t)p | 0xffff800000000000ull)));
}

static void realloc_foreign(void) { reallocate(announce(static_buffer), 100); }
static void realloc_mmap(void) { reallocate(announce(mapped_page()), 100); }
static void usable_size_foreign(void) { usable_size(announce(mapped_page())); }

// MARK: - Block starts never handed out

/** free(p + 64) after p = malloc(64): p + 64 is the next block of a page's free list,
 * never handed out. Accepting it pushes a block that is on the list already: the list
 * then loops and malloc returns the same blocks again and again. */
static void invalid_free_never_issued(void) {
    char *p = allocate(&small);
    free(announce(p + 64));
    report_reissue(64, 8);
}

/** The same block given to realloc: it must not be read, copied and freed as a live one. */
static void realloc_never_issued(void) {
    char *p = allocate(&small);
    reallocate(announce(p + 64), 200);
    report_reissue(64, 8);
}

/** A block start of a fresh class-64 page beyond the 16 KiB threaded so far: no block
 * there yet. */
static void invalid_free_beyond_capacity(void) {
    char *p = allocate(&small);
    uintptr_t page = slice_of(p);
    if ((uintptr_t)p - page >= EXTEND_BYTES - 64) setup_failed("the class-64 page is not fresh");
    free(announce((void *)(page + EXTEND_BYTES + 64)));
}

// MARK: - Pages retired, purged, formatted again

/** Retires a page of class 64 that is not the class's only page and purges its span
 * (its memory reads as zeros again); returns a pointer to its 11th block, freed, which
 * lies in the first 16 KiB that a fresh page threads onto its free list.
 *
 * 3072 blocks of 64 bytes fill the page in use (A, maybe shared with earlier blocks),
 * all 1024 blocks of the next page (B), and part of a third (C). Freeing B's blocks puts
 * B back on the class list in front of C; its last free finds it empty and not alone, so
 * it retires; swm_collect purges its span. */
static char *retired_class64_block(void) {
    void (*collect)(void) = (void (*)(void))swm_function("swm_collect");
    static char *blocks[3 * CLASS64_BLOCKS];
    const size_t n = sizeof blocks / sizeof blocks[0];
    for (size_t i = 0; i < n; i++) blocks[i] = malloc(64);
    uintptr_t a = slice_of(blocks[0]), b = 0, c = 0;
    size_t in_b = 0;
    for (size_t i = 0; i < n; i++) {
        uintptr_t s = slice_of(blocks[i]);
        if (s != a && b == 0) b = s;
        if (s == b) in_b++;
        else if (s != a && c == 0) c = s;
    }
    TRACE("class 64: page A %#lx, page B %#lx (%zu blocks of ours), page C %#lx", (unsigned long)a,
          (unsigned long)b, in_b, (unsigned long)c);
    if (b == 0 || c == 0 || in_b != CLASS64_BLOCKS) setup_failed("class-64 pages not laid out as expected");
    char *stale = (char *)b + 10 * 64;
    for (size_t i = 0; i < n; i++) {
        if (slice_of(blocks[i]) == b) free(blocks[i]);
    }
    collect();
    return stale;
}

/** A block freed, its page retired and its span purged: freed again. */
static void double_free_after_purge(void) {
    char *stale = retired_class64_block();
    free(announce(stale));
}

/** A block freed, its page retired and purged, then the span formatted again for the
 * same class: the stale pointer is now a block on the new page's free list, never handed
 * out. Freeing it again is a double free; accepting it makes the free list loop. */
static void double_free_after_page_reuse(void) {
    char *stale = retired_class64_block();
    uintptr_t b = slice_of(stale);
    char *q = NULL;
    size_t count = 0;
    while (count < 64 * CLASS64_BLOCKS && (q == NULL || slice_of(q) != b)) {
        q = malloc(64);
        count++;
    }
    TRACE("after %zu mallocs: %p (stale %p)", count, (void *)q, (void *)stale);
    if (q != (char *)b) setup_failed("the retired span was not formatted again for class 64");
    free(announce(stale));
    report_reissue(64, 32);
}

/** realloc(p, 0) frees: of a freed block, it is a double free. */
static void realloc_zero_freed(void) {
    char *keep = allocate(&small);
    char *p = allocate(&small);
    free(p);
    reallocate(announce(p), 0);
    free(keep);
}

// MARK: - Free blocks written by the program

/** Two adjacent live class-64 blocks. */
static void adjacent_pair(char **first, char **second) {
    char *held[256];
    int n = 0;
    for (; n < 256; n++) {
        held[n] = allocate(&small);
        if (n > 0 && held[n] == held[n - 1] + 64) break;
    }
    if (n == 256) setup_failed("no two adjacent class-64 blocks");
    *first = held[n - 1];
    *second = held[n];
}

/** A write past the end of a block into the free block after it (the head of the page's
 * free list): its link now points at a live block. The second malloc would hand that
 * live block out again (and its owner's free would then read as a double free); it
 * aborts naming the live block instead. */
static void overflow_into_free_block(void) {
    char *a, *b;
    adjacent_pair(&a, &b);
    char *live = allocate(&small);
    free(b);
    memcpy(a + 64, &live, sizeof live);   /* 8 bytes past a's end: b's link */
    announce(live);
    char *x = malloc(64);
    char *y = malloc(64);
    printf("handed out %p and %p\n", (void *)x, (void *)y);
}

/** A write to a freed block's second word (its freed mark): malloc aborts when it would
 * hand the block out, naming it. */
static void write_after_free(void) {
    char *keep = allocate(&small);
    char *p = allocate(&small);
    free(p);
    memset(p + 8, 'W', 8);
    announce(p);
    char *q = malloc(64);
    printf("handed out %p\n", (void *)q);
    free(keep);
}

// MARK: - States left by the purger, thread exit, fork and shrinking

/** Calls swm_collect on a thread of its own: another thread's collect reaches the
 * owner's pages through the purger's path (under the owner's span lock), not the
 * owner's own collect. */
static void *collect_main(void *arg) {
    ((void (*)(void))arg)();
    return NULL;
}
static void collect_on_another_thread(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, collect_main, swm_function("swm_collect")) != 0) setup_failed("pthread_create");
    pthread_join(t, NULL);
}

/** A 24 KiB block freed by a thread that then exits (its batch of remote frees goes to
 * the page), the thread-free list purged by another thread's swm_collect (the block's
 * OS pages past its first go back; a live neighbour keeps the page), then freed again
 * by its owner. */
static void double_free_remote_purged(void) {
    static const struct kind block24k = {24 * KiB, 0, 0};
    struct remote r;
    remote_start(&r, 1);
    char *keep = allocate(&block24k);
    char *p = announce(allocate(&block24k));
    remote_free(&r, p);
    collect_on_another_thread();
    free(p);
    free(keep);
}

/** Allocates `keep` and `block` (class 64) on a thread that then exits. */
static void *allocate_two_main(void *arg) {
    char **two = arg;
    two[0] = allocate(&small);
    two[1] = allocate(&small);
    return NULL;
}
static void blocks_of_exited_thread(char **two) {
    pthread_t t;
    if (pthread_create(&t, NULL, allocate_two_main, two) != 0) setup_failed("pthread_create");
    pthread_join(t, NULL);
}

/** A block of a thread that exited (its heap given up, its segments left for another
 * thread to adopt), freed twice by the main thread after a collect. */
static void double_free_exited_owner(void) {
    char *two[2];
    blocks_of_exited_thread(two);
    ((void (*)(void))swm_function("swm_collect"))();
    free(announce(two[1]));
    free(two[1]);
    free(two[0]);
}

/** A thread that allocates two class-64 blocks, says so, and stays blocked until the
 * process ends. */
struct parked {
    sem_t ready, never;
    char *two[2];
};
static void *parked_main(void *arg) {
    struct parked *k = arg;
    k->two[0] = allocate(&small);
    k->two[1] = allocate(&small);
    sem_post(&k->ready);
    while (sem_wait(&k->never) != 0) {}
    return NULL;
}

/** In a fork child: a block of a thread that the child does not have (its heap is given
 * up in the child), freed twice. The parent passes the child's abort on (the child's one
 * line is on the shared stderr). */
static void double_free_fork_child(void) {
    static struct parked k;
    pthread_t t;
    if (sem_init(&k.ready, 0, 0) != 0 || sem_init(&k.never, 0, 0) != 0) setup_failed("sem_init");
    if (pthread_create(&t, NULL, parked_main, &k) != 0) setup_failed("pthread_create");
    while (sem_wait(&k.ready) != 0) {}
    char *p = announce(k.two[1]);
    pid_t child = fork();
    if (child < 0) setup_failed("fork");
    if (child == 0) {
        free(p);
        free(p);
        _exit(3);
    }
    int status = 0;
    if (waitpid(child, &status, 0) != child) setup_failed("waitpid");
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) {
        signal(SIGABRT, SIG_DFL);
        raise(SIGABRT);
    }
    fprintf(stderr, "misuse not detected (in the fork child)\n");
    exit(3);
}

/** An 8 MiB block shrunk in place by realloc to 5 MiB (the mapping's end goes back),
 * then freed twice. */
static char *huge_shrunk(void) {
    char *p = allocate(&huge);
    char *q = realloc(p, 5 * MiB);
    if (q != p) setup_failed("realloc did not shrink the huge block in place");
    return q;
}
static void double_free_huge_shrunk(void) { free_twice(huge_shrunk()); }

/** A pointer into the part of a huge block that shrinking gave back. */
static void free_huge_shrunk_tail(void) {
    free(announce(huge_shrunk() + 6 * MiB));
}

/** A huge block freed, its mapping unmapped by malloc_trim, and the program's own
 * mapping placed at the same address: freeing the stale pointer must not take the
 * program's mapping for the block. */
static void free_huge_after_remap(void) {
    char *p = allocate(&huge);
    free(p);
    malloc_trim(0);
    void *m = mmap(p, huge.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (m != p) setup_failed("the freed block's address could not be mapped again");
    memset(m, 7, huge.size);
    free(announce(p));
}

// MARK: - What no allocator can catch

/** free(p) after p was freed and handed out again (q == p): this is q's free, and
 * nothing tells the two apart. Exits 0 when q's block was p. */
static void free_after_reissue(void) {
    char *keep = allocate(&small);
    char *p = allocate(&small);
    free(p);
    char *q = malloc(64);
    if (q != p) setup_failed("malloc did not hand the freed block out again");
    free(announce(p));
    free(keep);
}

// MARK: - The table

/** One case: `run(kind)` or `plain()`; `uncatchable` when the case ends normally. */
struct misuse_case {
    const char *name;
    void (*run)(const struct kind *);
    const struct kind *kind;
    void (*plain)(void);
    int uncatchable;
};

#define KIND(name, run, kind) {name, run, &kind, NULL, 0}
#define PLAIN(name, fn) {name, NULL, NULL, fn, 0}

static const struct misuse_case cases[] = {
    // Double frees on the owner thread.
    KIND("double_free_small", double_free, small),
    KIND("double_free_large", double_free, large),
    KIND("double_free_huge", double_free, huge),
    // Freed on another thread, then on the owner.
    KIND("double_free_cross_thread_small", double_free_cross_thread, small),
    KIND("double_free_cross_thread_large", double_free_cross_thread, large),
    KIND("double_free_cross_thread_huge", double_free_cross_thread, huge),
    // Foreign pointers.
    PLAIN("free_stack", free_stack),
    PLAIN("free_static", free_static),
    PLAIN("free_mmap", free_mmap),
    // Interior pointers.
    KIND("interior_free_small", interior_free, small),
    KIND("interior_free_large", interior_free, large),
    KIND("interior_free_huge", interior_free, huge),
    // realloc and malloc_usable_size.
    KIND("realloc_interior", realloc_interior, small),
    PLAIN("realloc_foreign", realloc_foreign),
    KIND("realloc_freed", realloc_freed, small),
    KIND("usable_size_interior", usable_size_interior, large),
    PLAIN("usable_size_foreign", usable_size_foreign),
    // More foreign pointers.
    PLAIN("free_foreign_allocator", free_foreign_allocator),
    PLAIN("free_foreign_4mib_aligned", free_foreign_4mib_aligned),
    PLAIN("free_segment_header", free_segment_header),
    PLAIN("free_segment_base", free_segment_base),
    PLAIN("free_unused_span", free_unused_span),
    PLAIN("free_above_user_space", free_above_user_space),
    PLAIN("free_kernel_half", free_kernel_half),
    // More interior pointers: aligned blocks.
    KIND("interior_free_aligned_4k", interior_free, aligned_4k),
    KIND("interior_free_aligned_128k", interior_free, aligned_128k),
    KIND("interior_free_aligned_2m", interior_free, aligned_2m),
    KIND("interior_free_aligned_huge", interior_free, aligned_huge),
    KIND("interior_free_over_aligned", interior_free, over_aligned),
    // Block starts never handed out.
    PLAIN("invalid_free_never_issued", invalid_free_never_issued),
    PLAIN("invalid_free_beyond_capacity", invalid_free_beyond_capacity),
    // Blocks past a class page's first slice (free's slow path).
    PLAIN("double_free_past_first_slice", double_free_past_first_slice),
    PLAIN("interior_free_past_first_slice", interior_free_past_first_slice),
    // Double frees of aligned blocks, on the owner thread.
    KIND("double_free_aligned_4k", double_free, aligned_4k),
    KIND("double_free_aligned_128k", double_free, aligned_128k),
    KIND("double_free_aligned_2m", double_free, aligned_2m),
    KIND("double_free_aligned_huge", double_free, aligned_huge),
    KIND("double_free_over_aligned", double_free, over_aligned),
    // Freed on another thread, then on the owner: aligned blocks.
    KIND("double_free_cross_thread_aligned_4k", double_free_cross_thread, aligned_4k),
    KIND("double_free_cross_thread_aligned_128k", double_free_cross_thread, aligned_128k),
    KIND("double_free_cross_thread_aligned_2m", double_free_cross_thread, aligned_2m),
    KIND("double_free_cross_thread_aligned_huge", double_free_cross_thread, aligned_huge),
    KIND("double_free_cross_thread_over_aligned", double_free_cross_thread, over_aligned),
    // Freed on the owner, then on another thread.
    KIND("double_free_then_remote_small", double_free_then_remote, small),
    KIND("double_free_then_remote_large", double_free_then_remote, large),
    KIND("double_free_then_remote_huge", double_free_then_remote, huge),
    KIND("double_free_then_remote_aligned_2m", double_free_then_remote, aligned_2m),
    // Freed twice on another thread.
    KIND("double_free_remote_twice_small", double_free_remote_twice, small),
    KIND("double_free_remote_twice_large", double_free_remote_twice, large),
    KIND("double_free_remote_twice_huge", double_free_remote_twice, huge),
    // Pages retired, purged, formatted again.
    PLAIN("double_free_after_purge", double_free_after_purge),
    PLAIN("double_free_after_page_reuse", double_free_after_page_reuse),
    // More realloc.
    PLAIN("realloc_stack", realloc_stack),
    PLAIN("realloc_mmap", realloc_mmap),
    KIND("realloc_freed_aligned_4k", realloc_freed, aligned_4k),
    KIND("realloc_freed_large", realloc_freed, large),
    KIND("realloc_freed_huge", realloc_freed, huge),
    KIND("realloc_interior_large", realloc_interior, large),
    KIND("realloc_interior_huge", realloc_interior, huge),
    PLAIN("realloc_never_issued", realloc_never_issued),
    PLAIN("realloc_zero_freed", realloc_zero_freed),
    // More malloc_usable_size.
    PLAIN("usable_size_stack", usable_size_stack),
    KIND("usable_size_interior_small", usable_size_interior, small),
    KIND("usable_size_interior_huge", usable_size_interior, huge),
    KIND("usable_size_interior_over_aligned", usable_size_interior, over_aligned),
    KIND("usable_size_freed_small", usable_size_freed, small),
    KIND("usable_size_freed_large", usable_size_freed, large),
    KIND("usable_size_freed_huge", usable_size_freed, huge),
    KIND("usable_size_freed_over_aligned", usable_size_freed, over_aligned),
    // Free blocks written by the program.
    PLAIN("overflow_into_free_block", overflow_into_free_block),
    PLAIN("write_after_free", write_after_free),
    // States left by the purger, thread exit, fork and shrinking.
    PLAIN("double_free_remote_purged", double_free_remote_purged),
    PLAIN("double_free_exited_owner", double_free_exited_owner),
    PLAIN("double_free_fork_child", double_free_fork_child),
    PLAIN("double_free_huge_shrunk", double_free_huge_shrunk),
    PLAIN("free_huge_shrunk_tail", free_huge_shrunk_tail),
    PLAIN("free_huge_after_remap", free_huge_after_remap),
    // Not detectable.
    {"free_after_reissue", NULL, NULL, free_after_reissue, 1},
};

/** Runs the case named on the command line; exits 3 when the misuse went unnoticed. */
int main(int argc, char **argv) {
    const size_t count = sizeof cases / sizeof cases[0];
    if (argc == 2 && !strcmp(argv[1], "list")) {
        for (size_t i = 0; i < count; i++) printf("%s\n", cases[i].name);
        return 0;
    }
    const struct misuse_case *c = NULL;
    for (size_t i = 0; argc == 2 && i < count; i++) {
        if (!strcmp(argv[1], cases[i].name)) c = &cases[i];
    }
    if (!c) {
        fprintf(stderr, "usage: misuse CASE | misuse list\n");
        return 2;
    }
    // stdout's buffer is allocated now, not by `announce` in the middle of a case.
    printf("case %s\n", c->name);
    fflush(stdout);
    if (c->run) c->run(c->kind);
    else c->plain();
    if (c->uncatchable) {
        printf("not detectable, as expected\n");
        return 0;
    }
    fprintf(stderr, "misuse not detected\n");
    return 3;
}
