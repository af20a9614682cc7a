/* The size workloads: mixed-sizes (Pareto-like sizes), realloc-chain, large (64 KiB …
 * 64 MiB) and rss-return (does freed memory go back to the OS?). */
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* mixed-sizes: `slots` live blocks; `ops` times a random slot is freed and refilled with
 * a Pareto-sized block (min_size … max_size) whose first and last bytes are written. */
int workload_mixed_sizes(const char *api) {
    long ops = param_long("ops", 1000000);
    long slots = param_long("slots", 10000);
    long min_size = param_long("min_size", 16);
    long max_size = param_long("max_size", 65536);
    params_check_all_used();
    require_malloc("mixed-sizes", api);
    if (slots < 1 || min_size < 1 || max_size < min_size) {
        fprintf(stderr, "mixed-sizes: bad parameters\n");
        return 2;
    }
    void **table = must(calloc((size_t)slots, sizeof(void *)), "slots");
    rng_t r;
    rng_seed(&r, 7);
    double t0 = now_s();
    for (long i = 0; i < ops; i++) {
        long k = (long)(rng_next(&r) % (uint64_t)slots);
        free(table[k]);
        size_t size = pareto_size(&r, (size_t)min_size, (size_t)max_size);
        char *p = must(malloc(size), "malloc");
        p[0] = p[size - 1] = 1;
        table[k] = p;
    }
    for (long k = 0; k < slots; k++) free(table[k]);
    double t = now_s() - t0;
    free(table);
    result_begin("mixed-sizes", api);
    result_double("time_s", t);
    result_end();
    return 0;
}

/* realloc-chain: `chains` chains, `live` growing at a time in turn: each starts at 16
 * bytes and is reallocated by about 1.5× (writing its new last byte) until it passes
 * max_size, then freed. */
int workload_realloc_chain(const char *api) {
    long chains = param_long("chains", 4000);
    long live = param_long("live", 8);
    long max_size = param_long("max_size", 262144);
    params_check_all_used();
    require_malloc("realloc-chain", api);
    if (live < 1 || max_size < 16) {
        fprintf(stderr, "realloc-chain: live >= 1, max_size >= 16\n");
        return 2;
    }
    char **blocks = must(calloc((size_t)live, sizeof(char *)), "chains");
    size_t *sizes = must(calloc((size_t)live, sizeof(size_t)), "sizes");
    long started = 0, finished = 0, reallocs = 0;
    double t0 = now_s();
    while (finished < chains) {
        for (long k = 0; k < live; k++) {
            if (blocks[k] == NULL) {
                if (started == chains) continue;
                started++;
                sizes[k] = 16;
                blocks[k] = must(malloc(16), "malloc");
                blocks[k][0] = 1;
                continue;
            }
            size_t grown = sizes[k] + sizes[k] / 2 + (size_t)k;
            blocks[k] = must(realloc(blocks[k], grown), "realloc");
            blocks[k][grown - 1] = 1;
            sizes[k] = grown;
            reallocs++;
            if (grown > (size_t)max_size) {
                free(blocks[k]);
                blocks[k] = NULL;
                finished++;
            }
        }
    }
    double t = now_s() - t0;
    free(blocks);
    free(sizes);
    result_begin("realloc-chain", api);
    result_double("time_s", t);
    result_long("reallocs", reallocs);
    result_end();
    return 0;
}

/* large: `ops` times a random one of `live` slots is freed and refilled with a block of
 * log-uniform size between min_kb and max_kb KiB, every page of which is written. */
int workload_large(const char *api) {
    long ops = param_long("ops", 100);
    long live = param_long("live", 4);
    long min_kb = param_long("min_kb", 64);
    long max_kb = param_long("max_kb", 65536);
    params_check_all_used();
    require_malloc("large", api);
    if (live < 1 || min_kb < 1 || max_kb < min_kb) {
        fprintf(stderr, "large: bad parameters\n");
        return 2;
    }
    unsigned octaves = 0;
    while ((min_kb << (octaves + 1)) <= max_kb) octaves++;
    void **table = must(calloc((size_t)live, sizeof(void *)), "slots");
    rng_t r;
    rng_seed(&r, 11);
    double t0 = now_s();
    for (long i = 0; i < ops; i++) {
        long k = (long)(rng_next(&r) % (uint64_t)live);
        free(table[k]);
        size_t base = (size_t)min_kb << (rng_next(&r) % (octaves + 1));
        size_t size = (base + (size_t)(rng_next(&r) % base)) * 1024;
        if (size > (size_t)max_kb * 1024) size = (size_t)max_kb * 1024;
        char *p = must(malloc(size), "malloc");
        for (size_t off = 0; off < size; off += 4096) p[off] = 1;
        table[k] = p;
    }
    for (long k = 0; k < live; k++) free(table[k]);
    double t = now_s() - t0;
    free(table);
    result_begin("large", api);
    result_double("time_s", t);
    result_end();
    return 0;
}

/* rss-return: allocates `mb` MiB in blocks of min_size … max_size bytes (all written),
 * frees them all, waits wait_ms, and reports the RSS before, at the peak, just after the
 * frees and after the wait (kB, from /proc/self/statm). time_s covers allocating and
 * freeing, not the wait. */
int workload_rss_return(const char *api) {
    long mb = param_long("mb", 64);
    long min_size = param_long("min_size", 16);
    long max_size = param_long("max_size", 1024);
    long wait_ms = param_long("wait_ms", 1000);
    params_check_all_used();
    require_malloc("rss-return", api);
    if (mb < 1 || min_size < 1 || max_size < min_size || wait_ms < 0) {
        fprintf(stderr, "rss-return: bad parameters\n");
        return 2;
    }
    size_t target = (size_t)mb << 20;
    size_t cap = target / (size_t)((min_size + max_size) / 2) * 2 + 1024;
    void **blocks = must(malloc(cap * sizeof(void *)), "blocks");
    long base_kb = rss_now_kb();
    rng_t r;
    rng_seed(&r, 5);
    size_t n = 0, bytes = 0;
    long span = max_size - min_size + 1;
    double t0 = now_s();
    while (bytes < target && n < cap) {
        size_t size = (size_t)(min_size + (long)(rng_next(&r) % (uint64_t)span));
        blocks[n] = must(malloc(size), "malloc");
        memset(blocks[n], 1, size);
        bytes += size;
        n++;
    }
    double t1 = now_s();
    long peak_kb = rss_now_kb();
    double t2 = now_s();
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    double t3 = now_s();
    long freed_kb = rss_now_kb();
    usleep((useconds_t)wait_ms * 1000);
    long after_kb = rss_now_kb();
    free(blocks);
    result_begin("rss-return", api);
    result_double("time_s", (t1 - t0) + (t3 - t2));
    result_long("rss_base_kb", base_kb);
    result_long("rss_peak_kb", peak_kb);
    result_long("rss_freed_kb", freed_kb);
    result_long("rss_after_kb", after_kb);
    result_end();
    return 0;
}
