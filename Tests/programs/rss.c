/* rss.c — memory goes back to the OS (README, "Memory goes back to the OS"). Allocates
 * ~256 MiB (128 MiB of 1 KiB blocks, 128 MiB of 64 KiB blocks), touches every byte, frees
 * everything, then either calls swm_collect() (`rss collect`) or sleeps past the purge
 * delay and allocates a block of a size class not used before, which takes the slow path
 * where purging runs (`rss delay`). Prints the resident set size at start, at the peak
 * and at the end (/proc/self/statm), and exits 0 when the end is within 32 MiB of the
 * start, 1 otherwise. Linked with -lswmalloc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "swmalloc.h"

/** Block sizes, and the bytes allocated in each. */
enum { SMALL = 1024, LARGE = 64 * 1024, HALF = 128 << 20 };

/** The live blocks (static, so that remembering them allocates nothing). */
static void *small_blocks[HALF / SMALL];
static void *large_blocks[HALF / LARGE];

/** Resident set size in MiB, from /proc/self/statm. */
static double rss_mib(void) {
    long pages_total = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) {
        perror("/proc/self/statm");
        exit(2);
    }
    fclose(f);
    return (double)pages_resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

/** Allocates, touches and frees ~256 MiB, returns memory to the OS the way argv[1]
 *  says, and checks the resident set size. */
int main(int argc, char **argv) {
    int collect = argc > 1 && strcmp(argv[1], "collect") == 0;
    memset(small_blocks, 0, sizeof small_blocks);
    memset(large_blocks, 0, sizeof large_blocks);
    free(malloc(16));
    double start = rss_mib();
    for (size_t i = 0; i < HALF / SMALL; i++) {
        small_blocks[i] = malloc(SMALL);
        if (!small_blocks[i]) return 2;
        memset(small_blocks[i], 1, SMALL);
    }
    for (size_t i = 0; i < HALF / LARGE; i++) {
        large_blocks[i] = malloc(LARGE);
        if (!large_blocks[i]) return 2;
        memset(large_blocks[i], 1, LARGE);
    }
    double peak = rss_mib();
    for (size_t i = 0; i < HALF / SMALL; i++) free(small_blocks[i]);
    for (size_t i = 0; i < HALF / LARGE; i++) free(large_blocks[i]);
    double freed = rss_mib();
    void *probe = NULL;
    if (collect) {
        swm_collect();
    } else {
        struct timespec delay = {0, 100 * 1000 * 1000};
        nanosleep(&delay, NULL);
        probe = malloc(3000);
    }
    double end = rss_mib();
    free(probe);
    printf("rss MiB: start %.1f peak %.1f after free %.1f end %.1f (%s)\n", start, peak, freed, end,
           collect ? "swm_collect" : "purge delay + one malloc");
    if (peak - start < 200) {
        fprintf(stderr, "peak only %.1f MiB above start: the test did not allocate what it meant to\n", peak - start);
        return 1;
    }
    return end - start <= 32 ? 0 : 1;
}
