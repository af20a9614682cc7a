/* vos_reads.c — VOS statistics reads beside threads that keep allocating. One case per
 * process (`vos_reads CASE`, `vos_reads list`); each prints "ok CASE".
 *
 *   report_to_full_pipe  a thread writes the VOS report (2,000 modules) with
 *                       swm_vos_report to a pipe of one page that nobody drains yet;
 *                       meanwhile a new thread's first VOS_Malloc (its table is created
 *                       under the VOS lock) and 64 KiB of VOS blocks (a publication, under
 *                       the lock) must finish. Before: the report held the lock while it
 *                       waited on the pipe, and they waited for the reader (a reader
 *                       thread that used VOS deadlocked).
 *   counts_never_wrap   a producer allocates 64-byte blocks of module 7 into a ring of 16,
 *                       a consumer frees them, the consumer's table registered first;
 *                       the main thread reads the module's and the sites' statistics for
 *                       3 s: live blocks must stay within the ring (18) and live bytes at
 *                       or above 0. Before: a read that summed the consumer's frees of
 *                       blocks whose allocation it had not counted wrapped live blocks to
 *                       about 1.8e19 and made live bytes negative. */
#define _GNU_SOURCE
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {}
}

static int pipe_out;

static void *write_report(void *arg) {
    swm_vos_report(pipe_out, 0);
    return arg;
}

static int pipe_in;

/** Reads the pipe until its write end is closed. */
static void *drain(void *arg) {
    char buffer[4096];
    while (read(pipe_in, buffer, sizeof buffer) > 0) {}
    return arg;
}

static atomic_int first_call_done;

static void *first_vos_call(void *arg) {
    void *blocks[16];
    for (int i = 0; i < 16; i++) {
        blocks[i] = VOS_Malloc(8192, 3);   /* 128 KiB: at least one publication */
        CHECK(blocks[i] != NULL);
    }
    for (int i = 0; i < 16; i++) VOS_Free(blocks[i]);
    atomic_store(&first_call_done, 1);
    return arg;
}

static void report_to_full_pipe(void) {
    enum { MODULES = 2000 };
    static void *held[MODULES];
    for (int m = 0; m < MODULES; m++) CHECK((held[m] = VOS_Malloc(16, (unsigned long)m + 1)) != NULL);
    int fds[2];
    CHECK(pipe(fds) == 0);
    CHECK(fcntl(fds[1], F_SETPIPE_SZ, 4096) >= 4096);
    pipe_out = fds[1];
    pthread_t reporter, newcomer;
    CHECK(pthread_create(&reporter, NULL, write_report, NULL) == 0);
    int queued = 0;
    for (int waited = 0; waited < 5000; waited += 10) {
        CHECK(ioctl(fds[0], FIONREAD, &queued) == 0);
        if (queued >= 3072) break;   /* less room left than one of the report's lines */
        sleep_ms(10);
    }
    CHECKF(queued >= 3072, "the report did not fill the pipe (%d bytes): nothing was tested", queued);
    CHECK(pthread_create(&newcomer, NULL, first_vos_call, NULL) == 0);
    for (int waited = 0; waited < 5000 && !atomic_load(&first_call_done); waited += 10) sleep_ms(10);
    int done = atomic_load(&first_call_done);
    /* Drain the pipe whatever happened, so that the threads end. */
    pthread_t drainer;
    pipe_in = fds[0];
    CHECK(pthread_create(&drainer, NULL, drain, NULL) == 0);
    CHECK(pthread_join(reporter, NULL) == 0);
    CHECK(close(fds[1]) == 0);
    CHECK(pthread_join(drainer, NULL) == 0);
    CHECK(close(fds[0]) == 0);
    CHECK(pthread_join(newcomer, NULL) == 0);
    CHECKF(done, "a new thread's first VOS calls waited for the report's reader");
    for (int m = 0; m < MODULES; m++) VOS_Free(held[m]);
}

enum { RING = 16 };
static _Atomic(void *) ring[RING];
static atomic_int stop, consumer_ready;

static void *producer(void *arg) {
    for (unsigned long i = 0; !atomic_load(&stop);) {
        if (atomic_load(&ring[i % RING]) == NULL) {
            void *p = VOS_Malloc(64, 7);
            CHECK(p != NULL);
            atomic_store(&ring[i % RING], p);
            i++;
        }
    }
    return arg;
}

static void *consumer(void *arg) {
    VOS_Free(VOS_Malloc(8, 7));   /* its table first in the registry */
    atomic_store(&consumer_ready, 1);
    for (unsigned long i = 0; !atomic_load(&stop);) {
        void *p = atomic_exchange(&ring[i % RING], NULL);
        if (p) {
            VOS_Free(p);
            i++;
        }
    }
    return arg;
}

static void counts_never_wrap(void) {
    VOS_Free(VOS_Malloc(1, 7));
    pthread_t c, p;
    CHECK(pthread_create(&c, NULL, consumer, NULL) == 0);
    while (!atomic_load(&consumer_ready)) {}
    CHECK(pthread_create(&p, NULL, producer, NULL) == 0);
    time_t start = time(NULL);
    unsigned long reads = 0;
    while (time(NULL) - start < 3) {
        swm_vos_module_stats_t s;
        CHECK(swm_vos_module_stats(7, &s) == 0);
        CHECKF(s.live_blocks <= RING + 2 && s.live_bytes >= 0 && s.live_bytes <= (RING + 2) * 64,
               "read %lu: module 7 live blocks %zu, live bytes %ld (at most %d blocks of 64 bytes live)", reads,
               s.live_blocks, (long)s.live_bytes, RING + 2);
        if ((reads++ & 63) == 0) {
            swm_vos_site_stats_t sites[4];
            size_t n = swm_vos_sites(sites, 4);
            for (size_t k = 0; k < n && k < 4; k++)
                CHECKF(sites[k].live_blocks <= RING + 2 && sites[k].live_bytes >= 0,
                       "read %lu: site %s:%zu live blocks %zu, live bytes %ld", reads, sites[k].file,
                       (size_t)sites[k].line, sites[k].live_blocks, (long)sites[k].live_bytes);
        }
    }
    atomic_store(&stop, 1);
    CHECK(pthread_join(p, NULL) == 0);
    CHECK(pthread_join(c, NULL) == 0);
    for (int i = 0; i < RING; i++) VOS_Free(atomic_exchange(&ring[i], NULL));
    printf("%lu reads\n", reads);
}

static const struct test_case cases[] = {
    {"report_to_full_pipe", report_to_full_pipe},
    {"counts_never_wrap", counts_never_wrap},
};

int main(int argc, char **argv) {
    const struct test_case *c = select_case(cases, sizeof cases / sizeof cases[0], argc, argv);
    c->run();
    printf("ok %s\n", c->name);
    return 0;
}
