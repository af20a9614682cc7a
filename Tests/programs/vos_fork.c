/* vos_fork.c — fork while other threads are inside VOS calls that take the VOS locks
 * (threads starting and exiting fold their tables; new sites are registered; statistics
 * are read). Each child allocates at a new site, reads the statistics, writes the report
 * to /dev/null and exits 0; a child stuck on a lock inherited held is killed by alarm().
 * Prints "vos fork ok". */
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

static _Atomic int stop;

/* Allocates at many sites (a new one per line value) and exits: table fold at exit. */
static void *short_lived(void *arg) {
    unsigned base = (unsigned)(unsigned long)arg;
    for (unsigned i = 0; i < 200; i++) {
        void *p = VOS_MallocWithDebug(64, 77, (const unsigned char *)"fork-sites.c", base * 200 + i);
        CHECK(p != NULL);
        VOS_Free(p);
    }
    return NULL;
}

static void *churn(void *arg) {
    (void)arg;
    unsigned round = 0;
    while (!stop) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, short_lived, (void *)(unsigned long)(round++ % 300)) == 0);
        pthread_join(t, NULL);
        swm_vos_module_stats_t st;
        CHECK(swm_vos_module_stats(77, &st) == 0);
    }
    return NULL;
}

int main(void) {
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&threads[i], NULL, churn, NULL) == 0);
    for (int i = 0; i < 100; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(60);   /* a hang, not a slow child: the debug library under a loaded test run took over 10 s */
            void *p = VOS_Malloc(100, 78);
            CHECK(p != NULL);
            swm_vos_module_stats_t st;
            CHECK(swm_vos_module_stats(78, &st) == 0 && st.live_bytes == 100 && st.live_blocks == 1);
            int fd = open("/dev/null", O_WRONLY);
            /* JSON (every site, up to 60,000 of them) in one child of ten: the debug
             * library takes 2 … 4 s to write it, and with a child in two writing it the
             * program overran its time under a loaded test run. */
            swm_vos_report(fd, i % 10 == 1);
            VOS_Free(p);
            _exit(0);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status 0x%x", i, status);
    }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    printf("vos fork ok\n");
    return 0;
}
