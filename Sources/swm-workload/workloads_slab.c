/* The slab workloads from the design document: nginx-1500 (nginx's 1500-byte test, on
 * malloc and on the nginx slab pool) and slab-kv (memcached-like sets and deletes, on
 * malloc and on the memcached slab allocator). */
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* nginx-1500: `count` blocks of `size` bytes in rounds of `batch`: alloc all, touch all
 * (memset), free all, each phase timed separately. api=malloc or api=ngx-slab.
 * Prints the document's Total/Alloc/Test/Free in microseconds (peak RSS: peak_rss_kb). */
int workload_nginx_1500(const char *api) {
    long count = param_long("count", 500000);
    long batch = param_long("batch", 50000);
    long size = param_long("size", 1500);
    params_check_all_used();
    int slab = strcmp(api, "ngx-slab") == 0;
    if ((!slab && strcmp(api, "malloc") != 0) || batch < 1 || size < 1) {
        fprintf(stderr, "nginx-1500: api must be malloc or ngx-slab, batch and size positive\n");
        return 2;
    }
    if (batch > count) batch = count;
    if (slab) {
        size_t slot = 8;
        while (slot < (size_t)size) slot <<= 1;
        size_t per_block = slot <= 2048 ? slot : (((size_t)size + 4095) & ~(size_t)4095);
        if (ngx_slab_init((size_t)batch * per_block + (1u << 20)) != 0) return 1;
    }
    void **blocks = must(malloc(sizeof(void *) * (size_t)batch), "block table");
    double alloc_s = 0, test_s = 0, free_s = 0;
    for (long done = 0; done < count; done += batch) {
        long m = count - done < batch ? count - done : batch;
        double t0 = now_s();
        if (slab) {
            for (long i = 0; i < m; i++) blocks[i] = must(ngx_slab_alloc((size_t)size), "ngx slab");
        } else {
            for (long i = 0; i < m; i++) blocks[i] = must(malloc((size_t)size), "malloc");
        }
        double t1 = now_s();
        for (long i = 0; i < m; i++) memset(blocks[i], (int)(i & 0xff), (size_t)size);
        double t2 = now_s();
        if (slab) {
            for (long i = 0; i < m; i++) ngx_slab_free(blocks[i]);
        } else {
            for (long i = 0; i < m; i++) free(blocks[i]);
        }
        double t3 = now_s();
        alloc_s += t1 - t0;
        test_s += t2 - t1;
        free_s += t3 - t2;
    }
    free(blocks);
    double total = alloc_s + test_s + free_s;
    result_begin("nginx-1500", api);
    result_double("time_s", total);
    result_long("total_us", (long)(total * 1e6));
    result_long("alloc_us", (long)(alloc_s * 1e6));
    result_long("test_us", (long)(test_s * 1e6));
    result_long("free_us", (long)(free_s * 1e6));
    result_end();
    return 0;
}

/* Arguments and results of one slab-kv thread. */
typedef struct {
    int slab;
    long ops;
    long keys;
    long max_size;
    long delete_pct;
    uint64_t seed;
    long misses;
} kv_args;

/* One stored value: its block and size (0 when the key is absent). */
typedef struct {
    void *value;
    size_t size;
} kv_entry;

/* Releases a value through the API under test. */
static void kv_release(const kv_args *a, kv_entry *e) {
    if (e->size == 0) return;
    if (a->slab) mc_slab_free(e->value, e->size);
    else free(e->value);
    e->size = 0;
}

/* Runs `ops` random sets (replace the value: free old, allocate new, copy data in) and
 * deletes over this thread's own `keys` keys. */
static void *kv_thread(void *arg) {
    kv_args *a = arg;
    kv_entry *table = must(calloc((size_t)a->keys, sizeof(kv_entry)), "kv table");
    rng_t r;
    rng_seed(&r, a->seed);
    char data[64];
    memset(data, 'v', sizeof data);
    for (long i = 0; i < a->ops; i++) {
        kv_entry *e = &table[rng_next(&r) % (uint64_t)a->keys];
        kv_release(a, e);
        if ((long)(rng_next(&r) % 100) < a->delete_pct) continue;
        size_t size = pareto_size(&r, 32, (size_t)a->max_size);
        void *v = a->slab ? mc_slab_alloc(size) : must(malloc(size), "malloc");
        if (v == NULL) {
            a->misses++;
            continue;
        }
        memcpy(v, data, size < sizeof data ? size : sizeof data);
        ((char *)v)[size - 1] = 'e';
        e->value = v;
        e->size = size;
    }
    for (long k = 0; k < a->keys; k++) kv_release(a, &table[k]);
    free(table);
    return NULL;
}

/* slab-kv: `threads` threads, each with `keys` keys, run `ops` operations: a set of a
 * Pareto-sized value (32 bytes … max_size) or, with probability delete_pct %, a delete.
 * api=malloc or api=mc-slab (64 MiB limit, factor 1.25). Reports misses: sets the slab
 * allocator refused at its limit. */
int workload_slab_kv(const char *api) {
    long threads = param_long("threads", 1);
    long ops = param_long("ops", 1000000);
    long keys = param_long("keys", 20000);
    long max_size = param_long("max_size", 8192);
    long delete_pct = param_long("delete_pct", 10);
    params_check_all_used();
    int slab = strcmp(api, "mc-slab") == 0;
    if ((!slab && strcmp(api, "malloc") != 0) || threads < 1 || keys < 1 || max_size < 32) {
        fprintf(stderr, "slab-kv: api must be malloc or mc-slab, threads and keys positive, max_size >= 32\n");
        return 2;
    }
    if (slab) {
        if (mc_slab_init(64ul << 20, 1.25) != 0) return 1;
        if ((size_t)max_size > mc_slab_max_size()) max_size = (long)mc_slab_max_size();
    }
    kv_args *args = must(calloc((size_t)threads, sizeof(kv_args)), "args");
    for (long i = 0; i < threads; i++)
        args[i] = (kv_args){slab, ops, keys, max_size, delete_pct, 0x1234 + (uint64_t)i, 0};
    double t0 = now_s();
    run_threads((int)threads, kv_thread, args, sizeof(kv_args));
    double t = now_s() - t0;
    long misses = 0;
    for (long i = 0; i < threads; i++) misses += args[i].misses;
    free(args);
    result_begin("slab-kv", api);
    result_double("time_s", t);
    result_long("misses", misses);
    result_end();
    return 0;
}
