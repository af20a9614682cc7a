/* rss.c — memory goes back to the OS (README, "Memory goes back to the OS").
 *     rss collect|delay|fragmented-collect|fragmented-delay
 * `collect` and `delay`: allocates ~256 MiB (128 MiB of 1 KiB blocks, 128 MiB of 64 KiB
 * blocks), touches every byte and frees everything.
 * `fragmented-*`: allocates 256 MiB of 256 KiB blocks, touches them and frees all but
 * every 16th, so no segment empties: the freed spans can only go back by purging
 * (madvise), not by unmapping.
 * Then `*collect` calls swm_collect(); `*delay` only sleeps (in 50 ms steps until the
 * memory is back, 3 s at most; the default purge delay is 250 ms): no thread calls the
 * allocator, so only the background purger can give the memory back.
 * `thread-exit`: a thread allocates and touches the blocks of `collect` and exits; the
 * main thread frees them all, sleeps 100 ms, allocates one block of each of 64 size
 * classes (64 slow paths) and calls swm_collect(). Prints the resident set size (/proc/self/statm) at
 * start, peak, after the frees and at the end, and exits 0 when the end is within 32 MiB
 * of the start plus the bytes still live, 1 otherwise. Linked with -lswmalloc. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "swmalloc.h"

/** Block sizes, and the bytes allocated in each kind of run. */
enum { SMALL = 1024, MEDIUM = 64 * 1024, LARGE = 256 * 1024, HALF = 128 << 20, TOTAL = 256 << 20 };

/** The live blocks (static, so that remembering them allocates nothing). */
static void *small_blocks[HALF / SMALL];
static void *medium_blocks[HALF / MEDIUM];
static void *large_blocks[TOTAL / LARGE];

/** Resident set size in MiB, from /proc/self/statm. */
static double rss_mib(void) {
    /* open/read, not stdio: reading it must not call the allocator (see `delay`). */
    char text[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, text, sizeof text - 1);
    if (fd >= 0) close(fd);
    long pages_total = 0, pages_resident = 0;
    if (n <= 0 || (text[n] = 0, sscanf(text, "%ld %ld", &pages_total, &pages_resident)) != 2) {
        perror("/proc/self/statm");
        exit(2);
    }
    return (double)pages_resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

/** Allocates `count` touched blocks of `size` bytes into `blocks`; exits 2 on failure. */
static void allocate_all(void **blocks, size_t count, size_t size) {
    for (size_t i = 0; i < count; i++) {
        blocks[i] = malloc(size);
        if (!blocks[i]) exit(2);
        memset(blocks[i], 1, size);
    }
}

/** The thread of `thread-exit`: allocates and touches the blocks, then exits. */
static void *allocate_on_thread(void *arg) {
    (void)arg;
    allocate_all(small_blocks, HALF / SMALL, SMALL);
    allocate_all(medium_blocks, HALF / MEDIUM, MEDIUM);
    return NULL;
}

/** Runs the scenario argv[1] names and checks the resident set size. */
int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    int fragmented = strncmp(mode, "fragmented-", 11) == 0;
    int thread_exit = strcmp(mode, "thread-exit") == 0;
    const char *how = fragmented ? mode + 11 : mode;
    if (strcmp(how, "collect") && strcmp(how, "delay") && !thread_exit) {
        fprintf(stderr, "usage: rss collect|delay|fragmented-collect|fragmented-delay|thread-exit\n");
        return 2;
    }
    free(malloc(16));
    double start = rss_mib();
    double live = 0;
    if (fragmented) {
        allocate_all(large_blocks, TOTAL / LARGE, LARGE);
    } else if (thread_exit) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, allocate_on_thread, NULL) || pthread_join(thread, NULL)) return 2;
    } else {
        allocate_all(small_blocks, HALF / SMALL, SMALL);
        allocate_all(medium_blocks, HALF / MEDIUM, MEDIUM);
    }
    double peak = rss_mib();
    if (fragmented) {
        for (size_t i = 0; i < TOTAL / LARGE; i++) {
            if (i % 16) free(large_blocks[i]);
            else live += (double)LARGE / (1 << 20);
        }
    } else {
        for (size_t i = 0; i < HALF / SMALL; i++) free(small_blocks[i]);
        for (size_t i = 0; i < HALF / MEDIUM; i++) free(medium_blocks[i]);
    }
    double freed = rss_mib();
    void *probes[64];
    if (thread_exit) {
        struct timespec delay = {0, 100 * 1000 * 1000};
        nanosleep(&delay, NULL);
        for (unsigned c = 0; c < 64; c++) probes[c] = malloc(swm_class_size(c + 16));
        swm_collect();
        for (unsigned c = 0; c < 64; c++) free(probes[c]);
    } else if (strcmp(how, "collect") == 0) {
        swm_collect();
    } else {
        /* Sleep in steps of 50 ms until the memory is back, 3 s at most (a loaded machine
         * may run the purger late); no call to the allocator meanwhile. */
        struct timespec step = {0, 50 * 1000 * 1000};
        for (int i = 0; i < 60 && rss_mib() - start - live > 32; i++) nanosleep(&step, NULL);
    }
    double end = rss_mib();
    printf("rss MiB (%s): start %.1f peak %.1f after free %.1f end %.1f, live %.1f\n", mode, start, peak,
           freed, end, live);
    if (peak - start < 200) {
        fprintf(stderr, "peak only %.1f MiB above start: the test did not allocate what it meant to\n", peak - start);
        return 1;
    }
    if (end - start - live > 32) {
        fprintf(stderr, "resident set still %.1f MiB above start plus live blocks\n", end - start - live);
        return 1;
    }
    return 0;
}
