/* The nginx-style slab pool (ngx_slab.c, reduced): one preallocated pool of 4 KiB pages;
 * sizes up to half a page get power-of-two slots (8 … 2048 bytes) in pages with a
 * bitmap of used slots, kept on a per-slot-size list while they have a free slot and
 * returned to the free pages when empty; bigger sizes take runs of whole pages (first
 * fit). A mutex guards the pool, as ngx_shmtx does. */
#include "workload.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

enum {
    NGX_PAGE_SHIFT = 12,
    NGX_PAGE = 1 << NGX_PAGE_SHIFT,
    NGX_MIN_SHIFT = 3,
    NGX_SLOT_SHIFTS = NGX_PAGE_SHIFT - 1 - NGX_MIN_SHIFT + 1, /* 8 … 2048 */
    NGX_BITMAP_WORDS = NGX_PAGE / 8 / 64,
    NGX_PAGE_FREE = 0,
    NGX_PAGE_SLOTS = 1,
    NGX_PAGE_RUN = 2,
    NGX_PAGE_RUN_TAIL = 3,
};

/* The metadata of one page (ngx_slab_page_t). */
typedef struct {
    uint64_t bitmap[NGX_BITMAP_WORDS];
    uint32_t used, capacity, run_pages;
    uint8_t kind, shift;
    int32_t next, prev; /* the slot-size list; -1 ends it */
} ngx_page;

static pthread_mutex_t ngx_lock = PTHREAD_MUTEX_INITIALIZER;
static char *ngx_start;
static ngx_page *ngx_pages;
static uint64_t *ngx_free_map; /* one bit per page, set when free */
static size_t ngx_npages, ngx_hint;
static int32_t ngx_partial[NGX_SLOT_SHIFTS];

int ngx_slab_init(size_t pool_bytes) {
    ngx_npages = (pool_bytes + NGX_PAGE - 1) / NGX_PAGE;
    char *raw = malloc(ngx_npages * NGX_PAGE + NGX_PAGE);
    ngx_pages = calloc(ngx_npages, sizeof(ngx_page));
    ngx_free_map = calloc((ngx_npages + 63) / 64, sizeof(uint64_t));
    if (raw == NULL || ngx_pages == NULL || ngx_free_map == NULL) {
        fprintf(stderr, "ngx slab: cannot take the %zu-byte pool\n", pool_bytes);
        return 1;
    }
    ngx_start = (char *)(((uintptr_t)raw + NGX_PAGE - 1) & ~(uintptr_t)(NGX_PAGE - 1));
    for (size_t i = 0; i < ngx_npages; i++) ngx_free_map[i / 64] |= 1ull << (i % 64);
    for (int i = 0; i < NGX_SLOT_SHIFTS; i++) ngx_partial[i] = -1;
    ngx_hint = 0;
    return 0;
}

/* Whether page i is free. */
static int ngx_is_free(size_t i) { return (ngx_free_map[i / 64] >> (i % 64)) & 1; }

/* Takes a run of n free pages (first fit from the hint, wrapping once); -1 if none. */
static long ngx_take_pages(size_t n) {
    for (size_t scanned = 0, i = ngx_hint; scanned < ngx_npages;) {
        if (i + n > ngx_npages) {
            scanned += ngx_npages - i;
            i = 0;
            continue;
        }
        size_t k = 0;
        while (k < n && ngx_is_free(i + k)) k++;
        if (k == n) {
            for (k = 0; k < n; k++) ngx_free_map[(i + k) / 64] &= ~(1ull << ((i + k) % 64));
            ngx_hint = i + n;
            return (long)i;
        }
        scanned += k + 1;
        i += k + 1;
    }
    return -1;
}

/* Returns pages [i, i + n) to the free map. */
static void ngx_give_pages(size_t i, size_t n) {
    for (size_t k = 0; k < n; k++) {
        ngx_pages[i + k].kind = NGX_PAGE_FREE;
        ngx_free_map[(i + k) / 64] |= 1ull << ((i + k) % 64);
    }
    if (i < ngx_hint) ngx_hint = i;
}

/* Unlinks page i from its slot-size list. */
static void ngx_unlink(size_t i) {
    ngx_page *pg = &ngx_pages[i];
    if (pg->prev >= 0) ngx_pages[pg->prev].next = pg->next;
    else ngx_partial[pg->shift - NGX_MIN_SHIFT] = pg->next;
    if (pg->next >= 0) ngx_pages[pg->next].prev = pg->prev;
}

/* Pushes page i on its slot-size list. */
static void ngx_link(size_t i) {
    ngx_page *pg = &ngx_pages[i];
    int32_t *head = &ngx_partial[pg->shift - NGX_MIN_SHIFT];
    pg->prev = -1;
    pg->next = *head;
    if (*head >= 0) ngx_pages[*head].prev = (int32_t)i;
    *head = (int32_t)i;
}

void *ngx_slab_alloc(size_t size) {
    void *result = NULL;
    pthread_mutex_lock(&ngx_lock);
    if (size > NGX_PAGE / 2) {
        size_t n = (size + NGX_PAGE - 1) / NGX_PAGE;
        long i = ngx_take_pages(n);
        if (i >= 0) {
            ngx_pages[i].kind = NGX_PAGE_RUN;
            ngx_pages[i].run_pages = (uint32_t)n;
            for (size_t k = 1; k < n; k++) ngx_pages[(size_t)i + k].kind = NGX_PAGE_RUN_TAIL;
            result = ngx_start + ((size_t)i << NGX_PAGE_SHIFT);
        }
        pthread_mutex_unlock(&ngx_lock);
        return result;
    }
    unsigned shift = NGX_MIN_SHIFT;
    while (((size_t)1 << shift) < size) shift++;
    int32_t head = ngx_partial[shift - NGX_MIN_SHIFT];
    if (head < 0) {
        long i = ngx_take_pages(1);
        if (i < 0) {
            pthread_mutex_unlock(&ngx_lock);
            return NULL;
        }
        ngx_page *pg = &ngx_pages[i];
        for (int w = 0; w < NGX_BITMAP_WORDS; w++) pg->bitmap[w] = 0;
        pg->kind = NGX_PAGE_SLOTS;
        pg->shift = (uint8_t)shift;
        pg->used = 0;
        pg->capacity = NGX_PAGE >> shift;
        ngx_link((size_t)i);
        head = (int32_t)i;
    }
    ngx_page *pg = &ngx_pages[head];
    for (int w = 0; w < NGX_BITMAP_WORDS; w++) {
        if (~pg->bitmap[w] == 0) continue;
        unsigned bit = (unsigned)__builtin_ctzll(~pg->bitmap[w]);
        pg->bitmap[w] |= 1ull << bit;
        size_t slot = (size_t)w * 64 + bit;
        if (++pg->used == pg->capacity) ngx_unlink((size_t)head);
        result = ngx_start + ((size_t)head << NGX_PAGE_SHIFT) + (slot << shift);
        break;
    }
    pthread_mutex_unlock(&ngx_lock);
    return result;
}

void ngx_slab_free(void *p) {
    size_t offset = (size_t)((char *)p - ngx_start);
    size_t i = offset >> NGX_PAGE_SHIFT;
    pthread_mutex_lock(&ngx_lock);
    ngx_page *pg = &ngx_pages[i];
    if (pg->kind == NGX_PAGE_RUN && (offset & (NGX_PAGE - 1)) == 0) {
        ngx_give_pages(i, pg->run_pages);
        pthread_mutex_unlock(&ngx_lock);
        return;
    }
    size_t slot = (offset & (NGX_PAGE - 1)) >> pg->shift;
    uint64_t bit = 1ull << (slot % 64);
    if (pg->kind != NGX_PAGE_SLOTS || (pg->bitmap[slot / 64] & bit) == 0) {
        pthread_mutex_unlock(&ngx_lock);
        fprintf(stderr, "ngx slab: bad free of %p\n", p);
        abort();
    }
    pg->bitmap[slot / 64] &= ~bit;
    if (pg->used-- == pg->capacity) ngx_link(i);
    if (pg->used == 0) {
        ngx_unlink(i);
        ngx_give_pages(i, 1);
    }
    pthread_mutex_unlock(&ngx_lock);
}
