/* remote_race.c — a remote free racing the owner's retire of its page and the release of
 * its segment (run linked to the DEBUG library, which has the test hook).
 *
 * Thread R frees blocks of the main thread (A). The debug library calls a hook right after
 * the compare-and-swap that publishes R's blocks to the page; the hook holds R there while
 * A collects those blocks, retires the page and empties its segment, with A's spare
 * segment taken and the process's segment cache full — the segment leaves A. Then R goes
 * on with the rest of its free. Before the fix the segment was unmapped at that point and
 * R's load of the page's owner faulted (SIGSEGV); the allocator must never touch a page
 * after the operation that can hand it back, or never unmap what a remote free can reach.
 * Run with SWMALLOC_OPTIONS=purge_delay_ms=0,background=0, so that emptied segments are
 * purged at once and the cache holds at most 8 (the segment is then retained, out of the
 * segment map), and no purger collects R's frees before A does.
 * Prints "remote race ok" and exits 0 when R survives. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "swmalloc.h"

/** Blocks of 2 MiB: each one takes a large page of 32 slices, one per 4 MiB segment. */
#define BLOCK (2u << 20)
/** Blocks A allocates: one per segment. Freeing all but the last two leaves A a spare
 *  segment and fills the process's cache of 8 (one more than needed, in case the first
 *  segment also holds small pages); the last two are freed by R. */
#define COUNT 12

static void *blocks[COUNT];
static sem_t start, published, resume;
static volatile int armed;

/** The debug library's hook: runs on R right after R's blocks were published. */
static void hook(void *page) {
    (void)page;
    if (!armed) return;
    armed = 0;
    sem_post(&published);  /* A may now collect, retire and give the segment away */
    sem_wait(&resume);     /* ... and R goes on only after it did */
}

/** Thread R: one remote free to set A's hint, then the one held in the window. */
static void *remote(void *arg) {
    (void)arg;
    sem_wait(&start);
    free(blocks[COUNT - 1]);     /* a large block is sent at once: A's remote-free hint is raised */
    armed = 1;
    free(blocks[COUNT - 2]);     /* the hook holds R after the publishing CAS */
    return NULL;
}

int main(void) {
    void (*set_hook)(void (*)(void *)) = (void (*)(void (*)(void *)))dlsym(RTLD_DEFAULT, "swm_debug_set_remote_hook");
    if (!set_hook) { fprintf(stderr, "swm_debug_set_remote_hook missing: link the debug library\n"); return 2; }
    sem_init(&published, 0, 0);
    sem_init(&resume, 0, 0);
    sem_init(&start, 0, 0);
    /* R starts first: creating a thread allocates (its TLS vector), which must not take
     * A's spare segment later. */
    pthread_t r;
    pthread_create(&r, NULL, remote, NULL);
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = malloc(BLOCK);
        if (!blocks[i]) { perror("malloc"); return 2; }
        memset(blocks[i], i, 4096);
    }
    /* Empty ten segments: one becomes A's spare, eight fill the cache. */
    for (int i = 0; i < COUNT - 2; i++) free(blocks[i]);
    set_hook(hook);
    sem_post(&start);
    sem_wait(&published);
    /* A's class list for this size is empty, so malloc collects the remote frees of its full
     * pages: both 2 MiB pages come back, retire, and their segments leave A (spare taken,
     * cache full). */
    swm_stats_t before, after;
    swm_stats_get(&before);
    void *p = malloc(120000);
    swm_stats_get(&after);
    sem_post(&resume);
    pthread_join(r, NULL);
    set_hook(NULL);
    free(p);
    if (swm_validate() != 0) { fprintf(stderr, "heap invalid\n"); return 1; }
    /* The scenario happened: both segments left A while R was held (none is in use now). */
    if (after.segments + 2 != before.segments) {
        fprintf(stderr, "the window was not exercised: segments %zu -> %zu\n", before.segments, after.segments);
        return 1;
    }
    printf("remote race ok\n");
    return 0;
}
