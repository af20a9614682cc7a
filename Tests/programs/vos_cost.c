/* vos_cost.c [THREADS [PAIRS]] — what the VOS API costs: nanoseconds per allocate + free
 * pair, for malloc/free, VOS_MallocModule/VOS_Free_Debug (module only) and
 * VOS_MallocWithDebug/VOS_Free_Debug (module + site), each thread looping on its own
 * module, sizes 16 ... 79 bytes. 60 rounds of PAIRS pairs (default 200,000) per thread
 * and kind, the kinds alternating round by round, timed with clock_gettime; the best
 * round of each kind is reported, and its ratio to malloc/free in the same run (short
 * alternating rounds keep the machine's slow spells out of the minimum). The README's
 * VOS figures come from `vos_cost 1` and `vos_cost 2`; the test runs it briefly. */
#include "check.h"
#include "vos_mem.h"
#include <pthread.h>
#include <time.h>

static long pairs = 200000;
static int kind;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *loop(void *arg) {
    void *volatile sink;
    unsigned long module = (unsigned long)arg;
    for (long i = 0; i < pairs; i++) {
        size_t size = 16 + (size_t)(i & 63);
        void *p;
        if (kind == 0) {
            p = malloc(size); sink = p; free(p);
        } else if (kind == 1) {
            p = VOS_MallocModule(size, module); sink = p; VOS_Free_Debug(0, p, NULL, 0);
        } else {
            p = VOS_MallocWithDebug(size, module, (const unsigned char *)__FILE__, __LINE__);
            sink = p;
            VOS_Free_Debug(0, p, (const unsigned char *)__FILE__, __LINE__);
        }
    }
    (void)sink;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (argc > 2) pairs = atol(argv[2]);
    CHECK(threads >= 1 && threads <= 64 && pairs > 0);
    const char *names[3] = {"malloc+free", "VOS module", "VOS site"};
    double best[3] = {1e30, 1e30, 1e30};
    for (int run = 0; run < 60; run++) {
        for (kind = 0; kind < 3; kind++) {
            pthread_t t[64];
            double start = now();
            for (long i = 0; i < threads; i++) CHECK(pthread_create(&t[i], NULL, loop, (void *)(i + 1)) == 0);
            for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
            double ns = (now() - start) * 1e9 / (double)pairs;
            if (ns < best[kind]) best[kind] = ns;
        }
    }
    for (int k = 0; k < 3; k++)
        printf("threads=%d %-12s %6.2f ns/pair  ratio %.2f\n", threads, names[k], best[k], best[k] / best[0]);
    return 0;
}
