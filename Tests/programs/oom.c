/* oom.c — out of memory under `ulimit -v`: requests above the limit fail with ENOMEM
 * (a failed realloc leaves its block intact); then for each block size (huge, large,
 * small), allocate until malloc returns NULL, check errno == ENOMEM, free everything, and
 * check that allocating works again, a 64 MiB block included once the small blocks are
 * all freed. Blocks are chained through their first word, so the
 * program itself needs no memory to remember them. Run as
 *     sh -c 'ulimit -v 262144; exec oom'
 * with swmalloc preloaded. Prints one line per size and exits 0 when every check held. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/** Exhausts memory with each size in turn, then allocates a mix again. */
int main(void) {
    if (too_big_for_limit()) return 1;
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
    return 0;
}
