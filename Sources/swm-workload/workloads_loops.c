/* The loop workloads: single-loop (the design document's VOS-vs-glibc table) and
 * thread-loop (the same loop on 1 … T threads, reported as scaling). */
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* single-loop: malloc/free of one size `n` times on one thread; api=vos-pool runs the
 * same loop on the VOS pool baseline. Parameters: n, size. */
int workload_single_loop(const char *api) {
    long n = param_long("n", 1000000);
    long size = param_long("size", 64);
    params_check_all_used();
    int pool = strcmp(api, "vos-pool") == 0;
    if (!pool && strcmp(api, "malloc") != 0) {
        fprintf(stderr, "single-loop: api must be malloc or vos-pool\n");
        return 2;
    }
    if (pool && vos_pool_init(128ul << 20) != 0) return 1;
    double t0 = now_s();
    if (pool) {
        for (long i = 0; i < n; i++) {
            void *p = must(vos_pool_malloc((unsigned long)size, 7, __FILE__, __LINE__), "vos pool");
            sink(p);
            vos_pool_free(p, __FILE__, __LINE__);
        }
    } else {
        for (long i = 0; i < n; i++) {
            void *p = must(malloc((size_t)size), "malloc");
            sink(p);
            free(p);
        }
    }
    double t = now_s() - t0;
    result_begin("single-loop", api);
    result_double("time_s", t);
    result_double("ns_per_pair", t * 1e9 / (double)n);
    result_end();
    return 0;
}

/* Arguments of one thread-loop thread. */
typedef struct {
    long n;
    long size;
    long batch;
} loop_args;

/* Allocates `batch` blocks and frees them, n / batch times. */
static void *loop_thread(void *arg) {
    loop_args *a = arg;
    void *blocks[256];
    for (long done = 0; done < a->n; done += a->batch) {
        for (long j = 0; j < a->batch; j++) {
            blocks[j] = must(malloc((size_t)a->size), "malloc");
            sink(blocks[j]);
        }
        for (long j = 0; j < a->batch; j++) free(blocks[j]);
    }
    return NULL;
}

/* thread-loop: for T = 1 … threads, T threads each do `n` malloc/free pairs of `size`
 * bytes in batches of `batch`. Reports the time of each T (t1_s, t2_s, …) and their sum. */
int workload_thread_loop(const char *api) {
    long threads = param_long("threads", 2);
    long n = param_long("n", 1000000);
    long size = param_long("size", 64);
    long batch = param_long("batch", 16);
    params_check_all_used();
    if (strcmp(api, "malloc") != 0 || threads < 1 || threads > 1024 || batch < 1 || batch > 256) {
        fprintf(stderr, "thread-loop: api=malloc, 1 <= threads <= 1024, 1 <= batch <= 256\n");
        return 2;
    }
    loop_args *args = must(malloc(sizeof(loop_args) * (size_t)threads), "args");
    double total = 0, times[1025];
    for (long t = 1; t <= threads; t++) {
        for (long i = 0; i < t; i++) args[i] = (loop_args){n, size, batch};
        double t0 = now_s();
        run_threads((int)t, loop_thread, args, sizeof(loop_args));
        times[t] = now_s() - t0;
        total += times[t];
    }
    free(args);
    result_begin("thread-loop", api);
    result_double("time_s", total);
    for (long t = 1; t <= threads; t++) {
        char key[32];
        snprintf(key, sizeof key, "t%ld_s", t);
        result_double(key, times[t]);
    }
    result_end();
    return 0;
}
