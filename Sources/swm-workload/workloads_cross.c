/* The cross-thread workloads: larson, producer-consumer, false-sharing, thread-churn.
 * Each measures memory that one thread allocates and another frees or writes. */
#include "workload.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- larson ---- */

/* One larson worker: a slot array it inherits from the previous generation. */
typedef struct {
    void **slots;
    long nslots;
    long ops;
    long min_size, max_size;
    uint64_t seed;
} larson_args;

/* Replaces random slots (free the old block, which an earlier thread may have allocated,
 * and allocate a new one) `ops` times. */
static void *larson_thread(void *arg) {
    larson_args *a = arg;
    rng_t r;
    rng_seed(&r, a->seed);
    long span = a->max_size - a->min_size + 1;
    for (long i = 0; i < a->ops; i++) {
        long k = (long)(rng_next(&r) % (uint64_t)a->nslots);
        free(a->slots[k]);
        a->slots[k] = must(malloc((size_t)(a->min_size + (long)(rng_next(&r) % (uint64_t)span))), "malloc");
        sink(a->slots[k]);
    }
    return NULL;
}

/* larson: a server simulation. `threads` workers each own `slots` live blocks and replace
 * random ones `ops` times; then the workers exit and a new generation of threads takes
 * their slot arrays over, freeing blocks allocated by threads that are gone. */
int workload_larson(const char *api) {
    long threads = param_long("threads", 2);
    long slots = param_long("slots", 1000);
    long ops = param_long("ops", 100000);
    long generations = param_long("generations", 5);
    long min_size = param_long("min_size", 16);
    long max_size = param_long("max_size", 1024);
    params_check_all_used();
    require_malloc("larson", api);
    if (threads < 1 || slots < 1 || min_size < 1 || max_size < min_size) {
        fprintf(stderr, "larson: bad parameters\n");
        return 2;
    }
    larson_args *args = must(calloc((size_t)threads, sizeof(larson_args)), "args");
    for (long t = 0; t < threads; t++) {
        args[t] = (larson_args){must(calloc((size_t)slots, sizeof(void *)), "slots"), slots, ops, min_size,
                                max_size, 0};
        for (long k = 0; k < slots; k++) args[t].slots[k] = must(malloc((size_t)min_size), "malloc");
    }
    double t0 = now_s();
    for (long g = 0; g < generations; g++) {
        /* each generation takes over the previous one's arrays, shifted by one thread */
        void **first = args[0].slots;
        for (long t = 0; t + 1 < threads; t++) args[t].slots = args[t + 1].slots;
        args[threads - 1].slots = first;
        for (long t = 0; t < threads; t++) args[t].seed = (uint64_t)(g * threads + t + 1);
        run_threads((int)threads, larson_thread, args, sizeof(larson_args));
    }
    double t = now_s() - t0;
    for (long i = 0; i < threads; i++) {
        for (long k = 0; k < slots; k++) free(args[i].slots[k]);
        free(args[i].slots);
    }
    free(args);
    result_begin("larson", api);
    result_double("time_s", t);
    result_double("mops_per_s", (double)(threads * ops * generations) / t / 1e6);
    result_end();
    return 0;
}

/* ---- producer-consumer ---- */

enum { RING = 4096 };

/* A single-producer single-consumer ring of blocks. */
typedef struct {
    _Alignas(64) _Atomic unsigned long head;
    _Alignas(64) _Atomic unsigned long tail;
    _Alignas(64) void *items[RING];
    long n;
    long min_size, max_size;
} ring_t;

/* Allocates n blocks, writes them, and pushes them on the ring. */
static void *producer(void *arg) {
    ring_t *q = arg;
    rng_t r;
    rng_seed(&r, 42);
    long span = q->max_size - q->min_size + 1;
    for (long i = 0; i < q->n; i++) {
        size_t size = (size_t)(q->min_size + (long)(rng_next(&r) % (uint64_t)span));
        char *p = must(malloc(size), "malloc");
        p[0] = p[size - 1] = (char)i;
        unsigned long h = atomic_load_explicit(&q->head, memory_order_relaxed);
        while (h - atomic_load_explicit(&q->tail, memory_order_acquire) == RING) sched_yield();
        q->items[h % RING] = p;
        atomic_store_explicit(&q->head, h + 1, memory_order_release);
    }
    return NULL;
}

/* Pops n blocks from the ring and frees them. */
static void *consumer(void *arg) {
    ring_t *q = arg;
    for (long i = 0; i < q->n; i++) {
        unsigned long t = atomic_load_explicit(&q->tail, memory_order_relaxed);
        while (atomic_load_explicit(&q->head, memory_order_acquire) == t) sched_yield();
        free(q->items[t % RING]);
        atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    }
    return NULL;
}

/* Starts the producer and the consumer of one ring and joins them. */
static void *pair_thread(void *arg) {
    pthread_t prod, cons;
    pthread_create(&prod, NULL, producer, arg);
    pthread_create(&cons, NULL, consumer, arg);
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    return NULL;
}

/* producer-consumer: `pairs` pairs of threads; in each, one thread allocates `n` blocks
 * (min_size … max_size bytes) and passes them through a ring to the other, which frees
 * them: every free is a free from another thread. */
int workload_producer_consumer(const char *api) {
    long n = param_long("n", 1000000);
    long pairs = param_long("pairs", 1);
    long min_size = param_long("min_size", 16);
    long max_size = param_long("max_size", 512);
    params_check_all_used();
    require_malloc("producer-consumer", api);
    if (pairs < 1 || min_size < 1 || max_size < min_size) {
        fprintf(stderr, "producer-consumer: bad parameters\n");
        return 2;
    }
    ring_t *rings = must(aligned_alloc(64, sizeof(ring_t) * (size_t)pairs), "rings");
    for (long i = 0; i < pairs; i++) {
        atomic_init(&rings[i].head, 0);
        atomic_init(&rings[i].tail, 0);
        rings[i].n = n;
        rings[i].min_size = min_size;
        rings[i].max_size = max_size;
    }
    double t0 = now_s();
    run_threads((int)pairs, pair_thread, rings, sizeof(ring_t));
    double t = now_s() - t0;
    free(rings);
    result_begin("producer-consumer", api);
    result_double("time_s", t);
    result_double("mops_per_s", (double)(n * pairs) / t / 1e6);
    result_end();
    return 0;
}

/* ---- false-sharing ---- */

/* One false-sharing worker: the block it writes (given, or allocated by itself). */
typedef struct {
    volatile long *block;
    long writes;
    long size;
    int allocate_own;
} share_args;

/* Writes its block `writes` times (allocating it first in the active phase). */
static void *share_thread(void *arg) {
    share_args *a = arg;
    if (a->allocate_own) a->block = must(malloc((size_t)a->size), "malloc");
    for (long i = 0; i < a->writes; i++) *a->block += i;
    if (a->allocate_own) free((void *)a->block);
    return NULL;
}

/* false-sharing: `rounds` times, (passive) the main thread allocates one small block per
 * thread, one after another, and hands them out; each thread writes its block `writes`
 * times. Then (active) each thread allocates its own small block and does the same.
 * Blocks the allocator places in one cache line make the writes slow. */
int workload_false_sharing(const char *api) {
    long threads = param_long("threads", 2);
    long rounds = param_long("rounds", 50);
    long writes = param_long("writes", 200000);
    long size = param_long("size", 8);
    params_check_all_used();
    require_malloc("false-sharing", api);
    if (threads < 1 || size < (long)sizeof(long)) {
        fprintf(stderr, "false-sharing: threads >= 1 and size >= %zu\n", sizeof(long));
        return 2;
    }
    share_args *args = must(calloc((size_t)threads, sizeof(share_args)), "args");
    double passive = 0, active = 0;
    for (long r = 0; r < rounds; r++) {
        for (long t = 0; t < threads; t++)
            args[t] = (share_args){must(malloc((size_t)size), "malloc"), writes, size, 0};
        double t0 = now_s();
        run_threads((int)threads, share_thread, args, sizeof(share_args));
        passive += now_s() - t0;
        for (long t = 0; t < threads; t++) free((void *)args[t].block);
        for (long t = 0; t < threads; t++) args[t] = (share_args){NULL, writes, size, 1};
        t0 = now_s();
        run_threads((int)threads, share_thread, args, sizeof(share_args));
        active += now_s() - t0;
    }
    free(args);
    result_begin("false-sharing", api);
    result_double("time_s", passive + active);
    result_double("passive_s", passive);
    result_double("active_s", active);
    result_end();
    return 0;
}

/* ---- thread-churn ---- */

/* One churn worker: frees the blocks of a thread of the previous phase, allocates its own. */
typedef struct {
    void **inherited;
    void **own;
    long objs;
    uint64_t seed;
} churn_args;

/* Frees the inherited blocks (allocated by a thread that has exited) and allocates `objs`
 * new ones that outlive this thread. */
static void *churn_thread(void *arg) {
    churn_args *a = arg;
    rng_t r;
    rng_seed(&r, a->seed);
    for (long i = 0; i < a->objs; i++) {
        free(a->inherited[i]);
        a->inherited[i] = NULL;
        a->own[i] = must(malloc(16 + (size_t)(rng_next(&r) % 2033)), "malloc");
        sink(a->own[i]);
    }
    return NULL;
}

/* thread-churn: `phases` phases; in each, `threads` new threads free the `objs` blocks
 * each of the previous phase's (now exited) threads and allocate `objs` blocks that
 * outlive them. */
int workload_thread_churn(const char *api) {
    long phases = param_long("phases", 50);
    long threads = param_long("threads", 2);
    long objs = param_long("objs", 5000);
    params_check_all_used();
    require_malloc("thread-churn", api);
    if (threads < 1 || objs < 1) {
        fprintf(stderr, "thread-churn: threads and objs positive\n");
        return 2;
    }
    /* Two sets of block arrays alternate: one phase fills one set and empties the other. */
    void ***sets[2];
    for (int s = 0; s < 2; s++) {
        sets[s] = must(calloc((size_t)threads, sizeof(void **)), "sets");
        for (long t = 0; t < threads; t++) sets[s][t] = must(calloc((size_t)objs, sizeof(void *)), "blocks");
    }
    churn_args *args = must(calloc((size_t)threads, sizeof(churn_args)), "args");
    double t0 = now_s();
    for (long p = 0; p < phases; p++) {
        for (long t = 0; t < threads; t++)
            args[t] = (churn_args){sets[(p + 1) % 2][(t + 1) % threads], sets[p % 2][t], objs,
                                   (uint64_t)(p * threads + t + 1)};
        run_threads((int)threads, churn_thread, args, sizeof(churn_args));
    }
    double t = now_s() - t0;
    for (int s = 0; s < 2; s++) {
        for (long t = 0; t < threads; t++) {
            for (long i = 0; i < objs; i++) free(sets[s][t][i]);
            free(sets[s][t]);
        }
        free(sets[s]);
    }
    free(args);
    result_begin("thread-churn", api);
    result_double("time_s", t);
    result_end();
    return 0;
}
