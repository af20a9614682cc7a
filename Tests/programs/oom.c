/* oom.c — out of memory under `ulimit -v`: requests above the limit fail with ENOMEM
 * (a failed realloc leaves its block intact), and with the limit full a realloc that
 * shrinks keeps its block and swm_vos_set_quota fails with ENOMEM (`shrink_keeps_block`),
 * and after the limit was filled with
 * 100 KB blocks and they were freed, a block of nearly all the room fits without
 * malloc_trim (`refill_without_trim`); then for each block size (huge, large,
 * small), allocate until malloc returns NULL, check errno == ENOMEM, free everything, and
 * check that allocating works again, a 64 MiB block included once the small blocks are
 * all freed. Blocks are chained through their first word, so the
 * program itself needs no memory to remember them. Then two regressions of an outside
 * review: the capacity stays the same round after round of filling the limit and freeing
 * (it fell by about 1.3 % a round: a retained segment that could not be mapped again was
 * dropped, its header kept for good), and once the limit is full of empty segments and
 * the program maps the rest itself, a new thread's first malloc and the first VOS_Malloc
 * still succeed (their own mappings did not give the caches' address space back), and
 * malloc_trim(0) after the limit was filled with small blocks and they were freed gives
 * their address space back: the program's own 128 MiB mmap succeeds (it failed after
 * malloc_trim returned 1: the empty segments' address space stayed reserved); and as many
 * 3 MiB blocks fit after 9 MiB ones were freed into the huge cache as with none cached
 * (review R75: a third fewer). Run as
 *     sh -c 'ulimit -v 262144; exec oom'
 * with swmalloc preloaded. Prints one line per size and exits 0 when every check held. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

/** Allocates blocks of n bytes until NULL; returns how many, or -1 when the failure was
 *  not ENOMEM or the refused size succeeded right after freeing everything. */
static long exhaust(size_t n) {
    void *chain = NULL;
    long count = 0;
    for (;;) {
        errno = 0;
        void **p = malloc(n);
        if (!p) break;
        *p = chain;
        chain = p;
        count++;
    }
    int saved = errno;
    while (chain) {
        void *next = *(void **)chain;
        free(chain);
        chain = next;
    }
    if (saved != ENOMEM) {
        fprintf(stderr, "size %zu: malloc returned NULL with errno %d, not ENOMEM\n", n, saved);
        return -1;
    }
    void *again = malloc(n);
    if (!again) {
        fprintf(stderr, "size %zu: malloc still fails after freeing everything\n", n);
        return -1;
    }
    memset(again, 1, n);
    free(again);
    return count;
}

/** Requests bigger than the whole limit fail cleanly: malloc, calloc, posix_memalign
 *  and realloc return NULL / ENOMEM, and the block realloc could not grow is intact.
 *  Returns 0 when they do. */
static int too_big_for_limit(void) {
    size_t n = 1 << 20, huge = (size_t)300 << 20;
    unsigned char *p = malloc(n);
    if (!p) return fprintf(stderr, "malloc(1 MiB) failed\n"), 1;
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 7);
    errno = 0;
    if (realloc(p, huge) != NULL || errno != ENOMEM) return fprintf(stderr, "realloc past the limit\n"), 1;
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 7)) return fprintf(stderr, "failed realloc changed the block\n"), 1;
    free(p);
    errno = 0;
    if (malloc(huge) != NULL || errno != ENOMEM) return fprintf(stderr, "malloc past the limit\n"), 1;
    errno = 0;
    if (calloc(huge / 16, 16) != NULL || errno != ENOMEM) return fprintf(stderr, "calloc past the limit\n"), 1;
    void *q = NULL;
    if (posix_memalign(&q, 4096, huge) != ENOMEM || q != NULL) return fprintf(stderr, "posix_memalign past the limit\n"), 1;
    return 0;
}

/** Blocks of 4000 bytes allocated until NULL, then all freed; returns how many. */
static long fill_and_free(void) {
    void *chain = NULL;
    long count = 0;
    for (void **p; (p = malloc(4000)) != NULL; count++) {
        *p = chain;
        chain = p;
    }
    while (chain) {
        void *next = *(void **)chain;
        free(chain);
        chain = next;
    }
    return count;
}

/** After 9 MiB blocks were freed into the huge cache, as many 3 MiB blocks fit under the
 *  limit as with nothing cached (after malloc_trim), within 10 %: cut from the cached
 *  mappings, each held 4 or 5 MiB of address space, and a third fewer fit (review R75).
 *  Returns 0 when it holds. */
static int cached_huge_fit(void) {
    enum { BIG = 16 };
    malloc_trim(0);
    long fresh = exhaust((size_t)3 << 20);
    malloc_trim(0);
    void *big[BIG];
    int n = 0;
    for (; n < BIG; n++) {
        big[n] = malloc((size_t)9 << 20);
        if (!big[n]) break;
        memset(big[n], 3, 4096);
    }
    for (int i = 0; i < n; i++) free(big[i]);
    long cut = exhaust((size_t)3 << 20);
    printf("3 MiB blocks after %d of 9 MiB were cached: %ld (%ld with none cached)\n", n, cut, fresh);
    if (fresh <= 0 || n < 4 || cut * 10 < fresh * 9) {
        fprintf(stderr, "after %d blocks of 9 MiB were freed, %ld blocks of 3 MiB fit under the limit, against %ld\n",
                n, cut, fresh);
        return 1;
    }
    return 0;
}

/** Rounds of: fill the limit with small blocks and free them; allocate the largest huge
 *  block that fits (which trims the empty segments); small blocks until NULL while it
 *  lives; free everything. The last round must hold as many small blocks as the first
 *  (within 2 %) and as large a huge block (within 8 MiB). Returns 0 when it does. */
static int capacity_holds(void) {
    long first = 0, last = 0;
    size_t first_huge = 0, last_huge = 0;
    for (int round = 0; round < 8; round++) {
        long n = fill_and_free();
        size_t big = 0;
        void *h = NULL;
        for (size_t s = (size_t)256 << 20; s > (8u << 20) && !h; s -= 4u << 20)
            if ((h = malloc(s)) != NULL) big = s;
        fill_and_free();
        free(h);
        if (round == 0) first = n, first_huge = big;
        last = n, last_huge = big;
    }
    if (last < first - first / 50 || last_huge + (8u << 20) < first_huge)
        return fprintf(stderr, "capacity fell: %ld -> %ld small blocks, huge %zu -> %zu MiB\n", first, last,
                       first_huge >> 20, last_huge >> 20), 1;
    printf("capacity after 8 rounds: %ld of %ld small blocks, huge %zu of %zu MiB\n", last, first, last_huge >> 20,
           first_huge >> 20);
    return 0;
}

static pthread_barrier_t started, go, done;

/** A thread that takes a heap early and waits: with the main thread's, they use up the
 *  first chunk of heap records, so the late thread needs a new one. */
static void *early_thread(void *arg) {
    free(malloc(16));
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&done);
    return arg;
}

/** A thread whose first malloc comes when the limit is full; returns "ok" or NULL. */
static void *late_thread(void *arg) {
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&go);
    void *p = malloc(16);
    free(p);
    pthread_barrier_wait(&done);
    return p ? arg : NULL;
}

enum { EARLY = 8 };
static pthread_t threads[EARLY + 1];

/** Starts the early threads and the late one (at the start: their stacks are mapped by
 *  the C library, which cannot reclaim swmalloc's caches). Returns 0 when they started. */
static int start_threads(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    pthread_barrier_init(&started, NULL, EARLY + 2);
    pthread_barrier_init(&go, NULL, 2);
    pthread_barrier_init(&done, NULL, EARLY + 2);
    for (int i = 0; i <= EARLY; i++)
        if (pthread_create(&threads[i], &attr, i < EARLY ? early_thread : late_thread, "ok") != 0)
            return fprintf(stderr, "pthread_create failed\n"), 1;
    pthread_barrier_wait(&started);
    return 0;
}

/** The limit filled with empty segments (small blocks allocated to the limit and freed),
 *  the rest of the address space mapped by the program itself: a new thread's first
 *  malloc (a new chunk of heap records) and the process's first VOS_Malloc (the VOS
 *  tables) must give the caches' address space back and succeed. Returns 0 when they do. */
static int own_mappings_retry(void) {
    fill_and_free();
    enum { MAPS = 64 };
    void *mine[MAPS];
    size_t sizes[MAPS];
    int maps = 0;
    for (size_t size = (size_t)1 << 30; size >= 4096 && maps < MAPS;) {
        void *m = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) size /= 2;
        else mine[maps] = m, sizes[maps++] = size;
    }
    void *(*vos_malloc)(unsigned long, unsigned long) =
        (void *(*)(unsigned long, unsigned long))dlsym(RTLD_DEFAULT, "VOS_MallocModule");
    void (*vos_free)(unsigned long, void *, const unsigned char *, unsigned) =
        (void (*)(unsigned long, void *, const unsigned char *, unsigned))dlsym(RTLD_DEFAULT, "VOS_Free_Debug");
    void *v = vos_malloc ? vos_malloc(16, 1) : NULL;
    pthread_barrier_wait(&go);
    pthread_barrier_wait(&done);
    void *late = NULL;
    for (int i = 0; i < EARLY; i++) pthread_join(threads[i], NULL);
    pthread_join(threads[EARLY], &late);
    for (int i = 0; i < maps; i++) munmap(mine[i], sizes[i]);
    if (vos_malloc && !v) return fprintf(stderr, "VOS_Malloc(16) with the limit full of empty segments: NULL\n"), 1;
    if (v) vos_free(0, v, NULL, 0);
    if (!late) return fprintf(stderr, "a new thread's first malloc(16) with the limit full: NULL\n"), 1;
    printf("with the limit full of empty segments: a new thread's malloc and VOS_Malloc succeed\n");
    return 0;
}

/** Maps (and unmaps) 128 MiB of the program's own; returns 0 when it fits, else says so,
 *  naming what came before (`after`). */
static int own_mapping_fits(const char *after) {
    size_t n = (size_t)128 << 20;
    void *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "own mmap of 128 MiB after freeing every block and %s: errno %d\n", after, errno);
        return 1;
    }
    munmap(m, n);
    return 0;
}

/** Fills the limit with small blocks, frees them, calls malloc_trim(0): the program's
 *  own 128 MiB mapping must then fit. Returns 0 when it did. */
static int trim_releases_address_space(void) {
    if (exhaust(1000) <= 0) return 1;
    malloc_trim(0);
    return own_mapping_fits("malloc_trim(0)");
}

/** Fills the limit with 100 KB blocks, frees them and sleeps past the purge delay (no
 *  malloc_trim): the program's own 128 MiB mapping must then fit. Before, the emptied
 *  segments beyond the cache's 8 kept their address space until malloc_trim or a refused
 *  allocation (an outside review: 500 MB freed under a 800 MB limit, and an mmap of
 *  500 MB failed after any wait). Returns 0 when it did. */
static int delay_releases_address_space(void) {
    if (exhaust(100000) <= 0) return 1;
    usleep(1500 * 1000);
    return own_mapping_fits("sleeping 1.5 s");
}

/** realloc to a smaller size with the limit full: the block is kept, its bytes intact and
 *  errno untouched, as glibc shrinks in place (before, NULL with ENOMEM whenever the
 *  smaller size belonged in another block: an outside review). Returns 0 when it held. */
static int shrink_keeps_block(void) {
    static const size_t from[] = {24, 500, 5000, 40000, 300000, 1500000, 3u << 20};
    enum { N = sizeof from / sizeof from[0] };
    unsigned char *blocks[N];
    for (int i = 0; i < N; i++) {
        if (!(blocks[i] = malloc(from[i]))) return fprintf(stderr, "malloc(%zu) failed\n", from[i]), 1;
        memset(blocks[i], 'a' + i, from[i]);
    }
    void *chain = NULL;
    for (size_t s = (size_t)64 << 20; s >= 16;) {
        void **p = malloc(s);
        if (p) *p = chain, chain = p;
        else s /= 2;
    }
    int failed = 0;
    /* The VOS records are not mapped yet (own_mappings_retry's VOS_Malloc is the first):
     * a quota cannot be set, and says so with errno (before, errno was left alone). */
    int (*set_quota)(unsigned long, size_t) = (int (*)(unsigned long, size_t))dlsym(RTLD_DEFAULT, "swm_vos_set_quota");
    if (set_quota) {
        errno = 0;
        int r = set_quota(3, 1 << 20);
        if (r != -1 || errno != ENOMEM) {
            fprintf(stderr, "swm_vos_set_quota with the limit full: %d, errno %d\n", r, errno);
            failed = 1;
        }
    }
    for (int i = 0; i < N; i++) {
        size_t to = from[i] / 2 + 1;
        errno = 0;
        unsigned char *q = realloc(blocks[i], to);
        if (!q || errno != 0) {
            fprintf(stderr, "realloc(%zu-byte block, %zu) with the limit full: %p, errno %d\n", from[i], to,
                    (void *)q, errno);
            failed = 1;
            continue;
        }
        for (size_t k = 0; k < to; k++)
            if (q[k] != 'a' + i) {
                fprintf(stderr, "realloc(%zu-byte block, %zu) changed byte %zu\n", from[i], to, k);
                failed = 1;
                break;
            }
        blocks[i] = q;
    }
    while (chain) {
        void *next = *(void **)chain;
        free(chain);
        chain = next;
    }
    for (int i = 0; i < N; i++) free(blocks[i]);
    return failed;
}

/** What the limit leaves, in bytes: the address-space limit less the address space
 *  (statm's first field), or else the data limit less the data and stack (its sixth). */
static size_t room_left(void) {
    struct rlimit as, data;
    if (getrlimit(RLIMIT_AS, &as) != 0 || getrlimit(RLIMIT_DATA, &data) != 0) return 0;
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0, shared = 0, text = 0, lib = 0, data_pages = 0;
    if (!f || fscanf(f, "%ld %ld %ld %ld %ld %ld", &size, &resident, &shared, &text, &lib, &data_pages) != 6) size = 0;
    if (f) fclose(f);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t limit = as.rlim_cur != RLIM_INFINITY ? as.rlim_cur : data.rlim_cur;
    size_t used = (as.rlim_cur != RLIM_INFINITY ? (size_t)size : (size_t)data_pages) * page;
    return limit != RLIM_INFINITY && limit > used ? limit - used : 0;
}

/** Fills the limit with 100 KB blocks and frees them all, then asks for one block of
 *  all the room there was less 16 MiB, without malloc_trim: the failed mapping must give
 *  back the thread's own empty pages and segments too, not only the caches (before, a
 *  thread that freed 45 MB under a 48 MB limit could not get 24 MB until it called
 *  malloc_trim: an outside review). Returns 0 when it held. */
static int refill_without_trim(void) {
    size_t room = room_left();
    if (room < ((size_t)64 << 20)) return fprintf(stderr, "refill: only %zu MiB of room\n", room >> 20), 1;
    if (exhaust(100000) <= 0) return 1;
    size_t big = room - ((size_t)16 << 20);
    unsigned char *b = malloc(big);
    if (!b) return fprintf(stderr, "malloc(%zu MiB) after freeing every 100 KB block: NULL\n", big >> 20), 1;
    memset(b, 1, big);
    free(b);
    malloc_trim(0);   /* the checks that follow start with no cached address space */
    return 0;
}

int main(void) {
    if (refill_without_trim() || start_threads() || too_big_for_limit() || shrink_keeps_block()) return 1;
    static const size_t sizes[] = {8u << 20, 3u << 20, 512u << 10, 64u << 10, 1u << 10, 48};
    long counts[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        counts[i] = exhaust(sizes[i]);
        if (counts[i] <= 0) {
            if (counts[i] == 0) fprintf(stderr, "size %zu: no block could be allocated at all\n", sizes[i]);
            return 1;
        }
    }
    void *mix[100];
    for (int i = 0; i < 100; i++) {
        mix[i] = malloc((size_t)i * 10000 + 1);
        if (!mix[i]) {
            fprintf(stderr, "final mix: malloc failed\n");
            return 1;
        }
    }
    for (int i = 0; i < 100; i++) free(mix[i]);
    /* The small blocks filled the address space with segments, all empty now: a huge
     * block needs their address space back (it stayed reserved, and this failed). */
    size_t big = (size_t)64 << 20;
    unsigned char *b = malloc(big);
    if (!b) {
        fprintf(stderr, "malloc(64 MiB) after every small block was freed: NULL (errno %d)\n", errno);
        return 1;
    }
    memset(b, 2, big);
    free(b);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        printf("size %zu: %ld blocks before ENOMEM\n", sizes[i], counts[i]);
    if (delay_releases_address_space() || trim_releases_address_space() || capacity_holds() || own_mappings_retry()
        || cached_huge_fit())
        return 1;
    return 0;
}
