/* swm-workload: the benchmark's workloads, one per run (see workload.h). The driver,
 * `swmalloc bench`, starts it once per workload, allocator and repetition with the
 * allocator under test in LD_PRELOAD, and parses the RESULT line it prints. */
#define _GNU_SOURCE
#include "workload.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One entry of the workload catalogue. */
typedef struct {
    const char *name;
    int (*run)(const char *api);
} workload_entry;

static const workload_entry catalogue[] = {
    {"single-loop", workload_single_loop},
    {"thread-loop", workload_thread_loop},
    {"nginx-1500", workload_nginx_1500},
    {"slab-kv", workload_slab_kv},
    {"larson", workload_larson},
    {"producer-consumer", workload_producer_consumer},
    {"false-sharing", workload_false_sharing},
    {"thread-churn", workload_thread_churn},
    {"mixed-sizes", workload_mixed_sizes},
    {"realloc-chain", workload_realloc_chain},
    {"large", workload_large},
    {"rss-return", workload_rss_return},
    {"vos-cost", workload_vos_cost},
    {"retention-idle", workload_retention_idle},
    {"retention-pc", workload_retention_pc},
    {"retention-fork", workload_retention_fork},
    {"retention-spawn", workload_retention_spawn},
};

static int param_count;
static char **param_args;
static unsigned char *param_used;

void params_init(int argc, char **argv) {
    param_count = argc;
    param_args = argv;
    param_used = must(calloc((size_t)argc + 1, 1), "parameters");
}

/* The value of `key` in the arguments, or NULL; marks the argument used. */
static const char *param_find(const char *key) {
    size_t len = strlen(key);
    for (int i = 0; i < param_count; i++) {
        if (strncmp(param_args[i], key, len) == 0 && param_args[i][len] == '=') {
            param_used[i] = 1;
            return param_args[i] + len + 1;
        }
    }
    return NULL;
}

long param_long(const char *key, long fallback) {
    const char *v = param_find(key);
    if (v == NULL) return fallback;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0') {
        fprintf(stderr, "swm-workload: bad value for %s: '%s'\n", key, v);
        exit(2);
    }
    /* Counts and sizes are at least 1, percentages (_pct) and delays (_ms) at least 0:
     * n=0 divided by zero and n=-5 reported a negative time (review R49). */
    size_t length = strlen(key);
    long least = length > 4 && (strcmp(key + length - 4, "_pct") == 0 || strcmp(key + length - 3, "_ms") == 0) ? 0 : 1;
    if (n < least) {
        fprintf(stderr, "swm-workload: %s must be at least %ld, not %ld\n", key, least, n);
        exit(2);
    }
    return n;
}

const char *param_str(const char *key, const char *fallback) {
    const char *v = param_find(key);
    return v == NULL ? fallback : v;
}

void params_check_all_used(void) {
    for (int i = 0; i < param_count; i++) {
        if (!param_used[i]) {
            fprintf(stderr, "swm-workload: unknown parameter '%s'\n", param_args[i]);
            exit(2);
        }
    }
}

void result_begin(const char *workload, const char *api) {
    printf("RESULT workload=%s api=%s", workload, api);
}

void result_double(const char *key, double value) { printf(" %s=%.9g", key, value); }

void result_long(const char *key, long value) { printf(" %s=%ld", key, value); }

void result_str(const char *key, const char *value) { printf(" %s=%s", key, value); }

void result_end(void) {
    printf(" peak_rss_kb=%ld\n", rss_peak_kb());
    fflush(stdout);
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long rss_now_kb(void) {
    /* open/read, not stdio: measuring must not call the allocator (which could make it
     * purge, or be the only allocation of a thread that is meant to sleep). */
    char text[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return -1;
    text[n] = 0;
    long size = 0, resident = -1;
    if (sscanf(text, "%ld %ld", &size, &resident) != 2) resident = -1;
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

long rss_peak_kb(void) {
    /* VmHWM, not getrusage: ru_maxrss keeps the high-water mark of the address space
     * replaced by exec, so a child spawned by the driver would report the driver's RSS. */
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

/* Published pointers: the compiler cannot prove an allocation unused. */
/* Per thread: a slot shared by all threads would be a contended cache line that slows
 * the multi-threaded workloads down for reasons that have nothing to do with the allocator. */
static __thread void *volatile sink_slot;

void sink(void *p) {
    *(volatile char *)p = 1;
    sink_slot = p;
}

void rng_seed(rng_t *r, uint64_t seed) { r->s = seed ? seed : 0x9E3779B97F4A7C15ull; }

uint64_t rng_next(rng_t *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

size_t pareto_size(rng_t *r, size_t min, size_t max) {
    /* The octave k above `min` has probability 2^-(k+1) (a Pareto tail of index 1),
     * the size is uniform within the octave, and the result is capped at `max`. */
    uint64_t x = rng_next(r);
    unsigned k = (unsigned)__builtin_ctzll(x | (1ull << 40));
    size_t base = min << (k > 40 ? 40 : k);
    size_t size = base + (size_t)((rng_next(r) >> 20) % base);
    return size > max ? max : size;
}

void *must(void *p, const char *what) {
    if (p == NULL) {
        fprintf(stderr, "swm-workload: out of memory (%s)\n", what);
        exit(1);
    }
    return p;
}

void require_malloc(const char *workload, const char *api) {
    if (strcmp(api, "malloc") != 0) {
        fprintf(stderr, "%s: api must be malloc\n", workload);
        exit(2);
    }
}

void run_threads(int n, void *(*fn)(void *), void *args, size_t arg_size) {
    pthread_t *tids = must(malloc(sizeof(pthread_t) * (size_t)n), "threads");
    for (int i = 0; i < n; i++) {
        if (pthread_create(&tids[i], NULL, fn, (char *)args + arg_size * (size_t)i) != 0) {
            fprintf(stderr, "swm-workload: pthread_create failed\n");
            exit(1);
        }
    }
    for (int i = 0; i < n; i++) pthread_join(tids[i], NULL);
    free(tids);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: swm-workload WORKLOAD [api=NAME] [key=value ...]\nworkloads:");
        for (size_t i = 0; i < sizeof catalogue / sizeof catalogue[0]; i++)
            fprintf(stderr, " %s", catalogue[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    params_init(argc - 2, argv + 2);
    const char *api = param_str("api", "malloc");
    for (size_t i = 0; i < sizeof catalogue / sizeof catalogue[0]; i++) {
        if (strcmp(catalogue[i].name, argv[1]) == 0) return catalogue[i].run(api);
    }
    fprintf(stderr, "swm-workload: unknown workload '%s'\n", argv[1]);
    return 2;
}
