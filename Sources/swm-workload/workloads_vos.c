/* vos-cost: what the VOS API's accounting costs. VOS_MallocModule (module only) and
 * VOS_MallocWithDebug (module and site) with VOS_Free_Debug, against plain malloc/free
 * and against the VOS pool baseline, on 1 and 2 threads. The VOS functions are looked up
 * with dlsym: only swmalloc provides them; elsewhere they are reported as skipped. */
#define _GNU_SOURCE
#include "workload.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *(*vos_malloc_debug_fn)(unsigned long, unsigned long, const unsigned char *, unsigned int);
typedef void *(*vos_malloc_module_fn)(unsigned long, unsigned long);
typedef void (*vos_free_debug_fn)(unsigned long, void *, const unsigned char *, unsigned int);

static vos_malloc_debug_fn vos_malloc_debug;
static vos_malloc_module_fn vos_malloc_module;
static vos_free_debug_fn vos_free_debug;

/* The API a vos-cost loop runs. */
typedef enum { API_MALLOC, API_VOS_MODULE, API_VOS_SITE, API_VOS_POOL } cost_api;

/* One vos-cost thread: n alloc/free pairs of `size` bytes through `api`. */
typedef struct {
    cost_api api;
    long n;
    long size;
    unsigned long module_id;
} cost_args;

/* Runs the pairs. */
static void *cost_thread(void *arg) {
    cost_args *a = arg;
    const unsigned char *file = (const unsigned char *)__FILE__;
    for (long i = 0; i < a->n; i++) {
        void *p;
        switch (a->api) {
        case API_MALLOC:
            p = must(malloc((size_t)a->size), "malloc");
            sink(p);
            free(p);
            break;
        case API_VOS_MODULE:
            p = must(vos_malloc_module((unsigned long)a->size, a->module_id), "VOS_MallocModule");
            sink(p);
            vos_free_debug(0, p, file, __LINE__);
            break;
        case API_VOS_SITE:
            p = must(vos_malloc_debug((unsigned long)a->size, a->module_id, file, __LINE__), "VOS_MallocWithDebug");
            sink(p);
            vos_free_debug(0, p, file, __LINE__);
            break;
        case API_VOS_POOL:
            p = must(vos_pool_malloc((unsigned long)a->size, a->module_id, __FILE__, __LINE__), "vos pool");
            sink(p);
            vos_pool_free(p, __FILE__, __LINE__);
            break;
        }
    }
    return NULL;
}

/* Times `threads` threads running `n` pairs each; returns nanoseconds per pair per thread. */
static double cost_run(cost_api api, int threads, long n, long size) {
    cost_args args[2];
    for (int i = 0; i < threads; i++) args[i] = (cost_args){api, n, size, 100 + (unsigned long)i};
    double t0 = now_s();
    run_threads(threads, cost_thread, args, sizeof(cost_args));
    return (now_s() - t0) * 1e9 / (double)n;
}

/* vos-cost: n pairs of `size` bytes per thread, on 1 and 2 threads, for malloc,
 * vos_module, vos_site (when the VOS functions exist) and the VOS pool. Prints ns per
 * pair for each (key API_tT_ns), vos=present|skipped, and time_s = the malloc runs. */
int workload_vos_cost(const char *api) {
    long n = param_long("n", 500000);
    long size = param_long("size", 64);
    params_check_all_used();
    if (strcmp(api, "malloc") != 0) {
        fprintf(stderr, "vos-cost: api must be malloc\n");
        return 2;
    }
    vos_malloc_debug = (vos_malloc_debug_fn)dlsym(RTLD_DEFAULT, "VOS_MallocWithDebug");
    vos_malloc_module = (vos_malloc_module_fn)dlsym(RTLD_DEFAULT, "VOS_MallocModule");
    vos_free_debug = (vos_free_debug_fn)dlsym(RTLD_DEFAULT, "VOS_Free_Debug");
    int vos = vos_malloc_debug != NULL && vos_malloc_module != NULL && vos_free_debug != NULL;
    if (vos_pool_init(128ul << 20) != 0) return 1;
    static const struct {
        cost_api api;
        const char *name;
    } variants[] = {
        {API_MALLOC, "malloc"}, {API_VOS_MODULE, "vos_module"}, {API_VOS_SITE, "vos_site"}, {API_VOS_POOL, "vos_pool"},
    };
    double ns[4][3];
    for (int v = 0; v < 4; v++) {
        if (!vos && (variants[v].api == API_VOS_MODULE || variants[v].api == API_VOS_SITE)) continue;
        for (int t = 1; t <= 2; t++) ns[v][t] = cost_run(variants[v].api, t, n, size);
    }
    result_begin("vos-cost", api);
    result_double("time_s", (ns[0][1] + ns[0][2]) * (double)n * 1e-9);
    result_str("vos", vos ? "present" : "skipped");
    for (int v = 0; v < 4; v++) {
        if (!vos && (variants[v].api == API_VOS_MODULE || variants[v].api == API_VOS_SITE)) continue;
        for (int t = 1; t <= 2; t++) {
            char key[32];
            snprintf(key, sizeof key, "%s_t%d_ns", variants[v].name, t);
            result_double(key, ns[v][t]);
        }
    }
    result_end();
    return 0;
}
