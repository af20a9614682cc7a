/* Shared declarations of the benchmark workload program (swm-workload).
 *
 * Usage: swm-workload WORKLOAD [key=value ...]
 * Each workload runs once and prints exactly one line on stdout:
 *   RESULT workload=NAME api=API time_s=SECONDS key=value ...
 * `time_s` is the workload's timed region (the driver's primary metric), `peak_rss_kb`
 * the process's peak RSS; the other keys are phase timings and figures the driver
 * reports per workload. */
#ifndef SWM_WORKLOAD_H
#define SWM_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

/* ---- parameters (key=value arguments) ---- */

/* Records the command line for the param_* lookups. */
void params_init(int argc, char **argv);
/* The integer value of `key`, or `fallback` when it is absent. Exits with status 2 on a
 * malformed value. */
long param_long(const char *key, long fallback);
/* The string value of `key`, or `fallback` when it is absent. */
const char *param_str(const char *key, const char *fallback);
/* Exits with status 2 naming the first key=value argument no workload looked up. */
void params_check_all_used(void);

/* ---- the RESULT line ---- */

/* Starts the RESULT line with the workload name and API. */
void result_begin(const char *workload, const char *api);
/* Appends key=value with a floating-point value. */
void result_double(const char *key, double value);
/* Appends key=value with an integer value. */
void result_long(const char *key, long value);
/* Appends key=value with a string value (no spaces). */
void result_str(const char *key, const char *value);
/* Ends the RESULT line with peak_rss_kb (the process's peak RSS) and flushes it. */
void result_end(void);

/* ---- measuring ---- */

/* Monotonic time in seconds. */
double now_s(void);
/* The process's resident set size now, in kB (from /proc/self/statm, without calling
 * the allocator). */
long rss_now_kb(void);
/* The process's peak resident set size so far, in kB (VmHWM of /proc/self/status). */
long rss_peak_kb(void);
/* Keeps the compiler from eliding an allocation: stores a byte in it and publishes it. */
void sink(void *p);

/* ---- helpers ---- */

/* A small fast pseudo-random generator (xorshift64*), one per thread. */
typedef struct { uint64_t s; } rng_t;
/* Seeds a generator (any seed; 0 is replaced). */
void rng_seed(rng_t *r, uint64_t seed);
/* The next 64-bit pseudo-random number. */
uint64_t rng_next(rng_t *r);
/* A Pareto-like size in [min, max]: most sizes small, a long tail of big ones. */
size_t pareto_size(rng_t *r, size_t min, size_t max);
/* Exits with status 1 and a message naming `what` when `p` is NULL. */
void *must(void *p, const char *what);
/* Exits with status 2 unless `api` is plain malloc (for workloads without a baseline). */
void require_malloc(const char *workload, const char *api);
/* Starts `n` threads running fn(index) and joins them all. */
void run_threads(int n, void *(*fn)(void *), void *args, size_t arg_size);

/* ---- workloads: each reads its parameters, runs, prints RESULT, returns 0 ---- */

int workload_single_loop(const char *api);
int workload_thread_loop(const char *api);
int workload_nginx_1500(const char *api);
int workload_slab_kv(const char *api);
int workload_larson(const char *api);
int workload_producer_consumer(const char *api);
int workload_false_sharing(const char *api);
int workload_thread_churn(const char *api);
int workload_mixed_sizes(const char *api);
int workload_realloc_chain(const char *api);
int workload_large(const char *api);
int workload_rss_return(const char *api);
int workload_vos_cost(const char *api);
int workload_retention_idle(const char *api);
int workload_retention_pc(const char *api);
int workload_retention_fork(const char *api);
int workload_retention_spawn(const char *api);

/* ---- baseline allocators (the design document's, measured through their own API) ---- */

/* VOS-style pool: a 128 MiB region from malloc, slab classes, one global mutex, a
 * module/file/line header on every block and per-site counters; memory never returned. */
int vos_pool_init(size_t region_bytes);
void *vos_pool_malloc(unsigned long size, unsigned long module_id, const char *file, unsigned line);
void vos_pool_free(void *p, const char *file, unsigned line);

/* memcached-style slab allocator: classes growing by `factor`, 1 MiB pages taken with
 * malloc up to `limit` bytes, one global mutex; NULL when a class needs a page past the limit. */
int mc_slab_init(size_t limit, double factor);
void *mc_slab_alloc(size_t size);
void mc_slab_free(void *p, size_t size);
/* The largest size mc_slab_alloc serves. */
size_t mc_slab_max_size(void);

/* nginx-style slab pool (ngx_slab): one preallocated pool of 4 KiB pages, power-of-two
 * slots from 8 bytes to half a page with a bitmap per page; sizes above half a page take
 * runs of whole pages. */
int ngx_slab_init(size_t pool_bytes);
void *ngx_slab_alloc(size_t size);
void ngx_slab_free(void *p);

#endif
