/* The retention family: memory an allocator keeps after the program freed it, in the
 * patterns the memory-policy review found (RSS in kB from /proc/self/statm: rss_now_kb
 * reads it without calling the allocator, so that measuring does not make one purge).
 *
 *   retention-idle   `threads` threads each allocate `mb` MiB of 16 … 4,000-byte blocks,
 *                    free them and go to sleep; the main thread sleeps `wait_ms` too.
 *   retention-pc     one thread allocates `kb` KiB blocks that another frees, at most
 *                    `live` in flight, `n` times: resident memory should stay a small
 *                    multiple of what is live.
 *   retention-fork   `threads` threads allocate `mb` MiB each in 1 KiB blocks and stay
 *                    alive; the process forks; the child frees all of it and allocates as
 *                    much again: its RSS should not double.
 *   retention-spawn  two threads start `threads` short detached threads between them, one
 *                    every 200 µs, whatever how many still run; each puts 50 blocks of
 *                    16 B … 400 KB into a shared table of 512, freeing the block it
 *                    replaces (another thread's); meanwhile a third thread forks `forks`
 *                    times, and each child frees the table's blocks. The peak RSS grows
 *                    with the threads alive at once when each holds memory of its own. */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workload.h"

/* Threads park on this until the main thread has measured. */
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;
static int parked_release;
static pthread_barrier_t done_barrier;

static void park(void) {
    pthread_mutex_lock(&park_lock);
    while (!parked_release) pthread_cond_wait(&park_cond, &park_lock);
    pthread_mutex_unlock(&park_lock);
}

static void unpark(void) {
    pthread_mutex_lock(&park_lock);
    parked_release = 1;
    pthread_cond_broadcast(&park_cond);
    pthread_mutex_unlock(&park_lock);
}

/* ---- retention-idle ---- */

typedef struct {
    long bytes;
    uint64_t seed;
    double seconds;
} idle_args;

static void *idle_thread(void *p) {
    idle_args *a = p;
    rng_t r;
    rng_seed(&r, a->seed);
    long cap = a->bytes / 16 + 1;
    void **blocks = must(malloc(sizeof(void *) * (size_t)cap), "blocks");
    double t0 = now_s();
    long n = 0, total = 0;
    while (total < a->bytes && n < cap) {
        size_t size = 16 + (size_t)(rng_next(&r) % 3985);
        blocks[n] = must(malloc(size), "malloc");
        memset(blocks[n], 1, size);
        total += (long)size;
        n++;
    }
    for (long i = 0; i < n; i++) free(blocks[i]);
    free(blocks);
    a->seconds = now_s() - t0;
    pthread_barrier_wait(&done_barrier);
    park();
    return NULL;
}

int workload_retention_idle(const char *api) {
    long threads = param_long("threads", 16);
    long mb = param_long("mb", 3);
    long wait_ms = param_long("wait_ms", 1000);
    params_check_all_used();
    require_malloc("retention-idle", api);
    if (threads < 1 || mb < 1 || wait_ms < 0) {
        fprintf(stderr, "retention-idle: bad parameters\n");
        return 2;
    }
    idle_args *args = must(calloc((size_t)threads, sizeof(idle_args)), "args");
    pthread_t *tids = must(calloc((size_t)threads, sizeof(pthread_t)), "threads");
    pthread_barrier_init(&done_barrier, NULL, (unsigned)threads + 1);
    long base_kb = rss_now_kb();
    for (long t = 0; t < threads; t++) {
        args[t] = (idle_args){mb << 20, (uint64_t)t + 1, 0};
        if (pthread_create(&tids[t], NULL, idle_thread, &args[t]) != 0) {
            fprintf(stderr, "retention-idle: pthread_create failed\n");
            return 1;
        }
    }
    pthread_barrier_wait(&done_barrier);
    long freed_kb = rss_now_kb();
    usleep((useconds_t)wait_ms * 1000);
    long after_kb = rss_now_kb();
    unpark();
    double seconds = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(tids[t], NULL);
        if (args[t].seconds > seconds) seconds = args[t].seconds;
    }
    free(args);
    free(tids);
    result_begin("retention-idle", api);
    result_double("time_s", seconds);
    result_long("rss_base_kb", base_kb);
    result_long("rss_freed_kb", freed_kb);
    result_long("rss_after_kb", after_kb);
    result_end();
    return 0;
}

/* ---- retention-pc ---- */

static void **pc_ring;
static long pc_live, pc_n;
static sem_t pc_full, pc_free;

static void *pc_consumer(void *unused) {
    (void)unused;
    for (long i = 0; i < pc_n; i++) {
        sem_wait(&pc_full);
        void *p = pc_ring[i % pc_live];
        sem_post(&pc_free);
        free(p);
    }
    return NULL;
}

int workload_retention_pc(const char *api) {
    long n = param_long("n", 20000);
    long kb = param_long("kb", 256);
    long live = param_long("live", 16);
    params_check_all_used();
    require_malloc("retention-pc", api);
    if (n < 1 || kb < 1 || live < 1) {
        fprintf(stderr, "retention-pc: bad parameters\n");
        return 2;
    }
    pc_ring = must(calloc((size_t)live, sizeof(void *)), "ring");
    pc_live = live;
    pc_n = n;
    sem_init(&pc_full, 0, 0);
    sem_init(&pc_free, 0, (unsigned)live);
    long base_kb = rss_now_kb();
    pthread_t consumer;
    if (pthread_create(&consumer, NULL, pc_consumer, NULL) != 0) return 1;
    size_t size = (size_t)kb * 1024;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        char *p = must(malloc(size), "malloc");
        for (size_t off = 0; off < size; off += 4096) p[off] = 1;
        sem_wait(&pc_free);
        pc_ring[i % live] = p;
        sem_post(&pc_full);
    }
    pthread_join(consumer, NULL);
    double t = now_s() - t0;
    long end_kb = rss_now_kb();
    free(pc_ring);
    result_begin("retention-pc", api);
    result_double("time_s", t);
    result_long("rss_base_kb", base_kb);
    result_long("rss_end_kb", end_kb);
    result_long("live_kb", kb * live);
    result_end();
    return 0;
}

/* ---- retention-fork ---- */

typedef struct {
    void **blocks;
    long count;
} hold_args;

static void *holder_thread(void *p) {
    hold_args *a = p;
    for (long i = 0; i < a->count; i++) {
        a->blocks[i] = must(malloc(1024), "malloc");
        memset(a->blocks[i], 2, 1024);
    }
    pthread_barrier_wait(&done_barrier);
    park();
    return NULL;
}

int workload_retention_fork(const char *api) {
    long threads = param_long("threads", 4);
    long mb = param_long("mb", 16);
    params_check_all_used();
    require_malloc("retention-fork", api);
    if (threads < 1 || mb < 1) {
        fprintf(stderr, "retention-fork: bad parameters\n");
        return 2;
    }
    long per = mb * 1024;
    hold_args *args = must(calloc((size_t)threads, sizeof(hold_args)), "args");
    pthread_t *tids = must(calloc((size_t)threads, sizeof(pthread_t)), "threads");
    pthread_barrier_init(&done_barrier, NULL, (unsigned)threads + 1);
    for (long t = 0; t < threads; t++) {
        args[t] = (hold_args){must(calloc((size_t)per, sizeof(void *)), "blocks"), per};
        if (pthread_create(&tids[t], NULL, holder_thread, &args[t]) != 0) return 1;
    }
    pthread_barrier_wait(&done_barrier);
    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        long report[3];
        report[0] = rss_now_kb();
        for (long t = 0; t < threads; t++)
            for (long i = 0; i < per; i++) free(args[t].blocks[i]);
        report[1] = rss_now_kb();
        for (long t = 0; t < threads; t++)
            for (long i = 0; i < per; i++) {
                args[t].blocks[i] = malloc(1024);
                if (!args[t].blocks[i]) _exit(3);
                memset(args[t].blocks[i], 3, 1024);
            }
        report[2] = rss_now_kb();
        if (write(pipefd[1], report, sizeof report) != (ssize_t)sizeof report) _exit(4);
        _exit(0);
    }
    close(pipefd[1]);
    long report[3] = {-1, -1, -1};
    ssize_t got = read(pipefd[0], report, sizeof report);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    double t = now_s() - t0;
    unpark();
    for (long i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    for (long t2 = 0; t2 < threads; t2++) {
        for (long i = 0; i < per; i++) free(args[t2].blocks[i]);
        free(args[t2].blocks);
    }
    free(args);
    free(tids);
    if (got != (ssize_t)sizeof report || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "retention-fork: the child failed\n");
        return 1;
    }
    result_begin("retention-fork", api);
    result_double("time_s", t);
    result_long("rss_child_start_kb", report[0]);
    result_long("rss_child_freed_kb", report[1]);
    result_long("rss_child_again_kb", report[2]);
    result_end();
    return 0;
}

/* ---- retention-spawn ---- */

enum { SPAWN_SLOTS = 512, SPAWN_PUTS = 50 };
static void *spawn_slot[SPAWN_SLOTS];
static size_t spawn_size[SPAWN_SLOTS];
static pthread_mutex_t spawn_lock = PTHREAD_MUTEX_INITIALIZER;
static long spawn_left;          /* threads still to start (atomic) */
static long spawn_running;       /* threads started and not done with the table (atomic) */
static int spawn_corrupt;        /* a block's last byte changed (atomic) */

/* Holds the table across fork, so that the child finds it whole. */
static void spawn_prepare(void) { pthread_mutex_lock(&spawn_lock); }
static void spawn_release(void) { pthread_mutex_unlock(&spawn_lock); }

/* Allocates a block of the size `r` draws (3 in 4 below 2,000 bytes), marks its last byte,
 * and swaps it into a slot; frees the block it replaced after checking its mark. */
static void spawn_put(rng_t *r) {
    uint64_t x = rng_next(r);
    size_t size = (x & 3) ? 16 + (size_t)(x >> 8) % 1985 : 16 + (size_t)(x >> 8) % 399985;
    unsigned char *p = must(malloc(size), "malloc");
    memset(p, (unsigned char)size, size);
    long i = (long)((x >> 40) % SPAWN_SLOTS);
    pthread_mutex_lock(&spawn_lock);
    unsigned char *old = spawn_slot[i];
    size_t old_size = spawn_size[i];
    spawn_slot[i] = p;
    spawn_size[i] = size;
    pthread_mutex_unlock(&spawn_lock);
    if (old != NULL) {
        if (old[old_size - 1] != (unsigned char)old_size) __atomic_store_n(&spawn_corrupt, 1, __ATOMIC_RELAXED);
        free(old);
    }
}

static void *spawn_worker(void *seed) {
    rng_t r;
    rng_seed(&r, (uint64_t)(uintptr_t)seed);
    for (int i = 0; i < SPAWN_PUTS; i++) spawn_put(&r);
    __atomic_fetch_sub(&spawn_running, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Starts detached workers, one every 200 µs, until `spawn_left` runs out. */
static void *spawn_starter(void *unused) {
    (void)unused;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    long n;
    while ((n = __atomic_fetch_sub(&spawn_left, 1, __ATOMIC_RELAXED)) > 0) {
        pthread_t t;
        __atomic_fetch_add(&spawn_running, 1, __ATOMIC_RELAXED);
        if (pthread_create(&t, &attr, spawn_worker, (void *)(uintptr_t)n) != 0) {
            __atomic_fetch_sub(&spawn_running, 1, __ATOMIC_RELAXED);
            usleep(1000);
        }
        usleep(200);
    }
    pthread_attr_destroy(&attr);
    return NULL;
}

static long spawn_forks;
static int spawn_child_failed;

/* Forks `spawn_forks` times, 3 ms apart; each child checks and frees the table's blocks. */
static void *spawn_forker(void *unused) {
    (void)unused;
    for (long f = 0; f < spawn_forks; f++) {
        usleep(3000);
        pid_t pid = fork();
        if (pid < 0) { spawn_child_failed = 1; return NULL; }
        if (pid == 0) {
            for (int i = 0; i < SPAWN_SLOTS; i++) {
                unsigned char *p = spawn_slot[i];
                if (p == NULL) continue;
                if (p[spawn_size[i] - 1] != (unsigned char)spawn_size[i]) _exit(5);
                free(p);
            }
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) spawn_child_failed = 1;
    }
    return NULL;
}

int workload_retention_spawn(const char *api) {
    long threads = param_long("threads", 4000);
    long forks = param_long("forks", 12);
    params_check_all_used();
    require_malloc("retention-spawn", api);
    if (threads < 1 || forks < 0) {
        fprintf(stderr, "retention-spawn: bad parameters\n");
        return 2;
    }
    pthread_atfork(spawn_prepare, spawn_release, spawn_release);
    long base_kb = rss_now_kb();
    spawn_left = threads;
    spawn_forks = forks;
    double t0 = now_s();
    pthread_t starters[2], forker;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&starters[i], NULL, spawn_starter, NULL) != 0) return 1;
    if (pthread_create(&forker, NULL, spawn_forker, NULL) != 0) return 1;
    for (int i = 0; i < 2; i++) pthread_join(starters[i], NULL);
    pthread_join(forker, NULL);
    /* The detached workers end on their own. */
    while (__atomic_load_n(&spawn_running, __ATOMIC_ACQUIRE) > 0) usleep(1000);
    double t = now_s() - t0;
    long live = 0;
    pthread_mutex_lock(&spawn_lock);
    for (int i = 0; i < SPAWN_SLOTS; i++) live += spawn_slot[i] ? (long)spawn_size[i] : 0;
    pthread_mutex_unlock(&spawn_lock);
    long end_kb = rss_now_kb();
    if (spawn_corrupt || spawn_child_failed) {
        fprintf(stderr, "retention-spawn: %s\n", spawn_corrupt ? "a block changed" : "a child failed");
        return 1;
    }
    result_begin("retention-spawn", api);
    result_double("time_s", t);
    result_long("rss_base_kb", base_kb);
    result_long("rss_end_kb", end_kb);
    result_long("live_kb", live / 1024);
    result_end();
    return 0;
}
