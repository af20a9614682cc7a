/* reports.c — the statistics reports reach their descriptor whole, whatever the program
 * does (ReportTests.swift runs one case per process, linked with -lswmalloc):
 *
 *   signal_at_exit   20,000 VOS sites, then the stats_signal signal to itself and return:
 *                    the signal's report and the one at exit must not interleave
 *   no_malloc        never calls malloc, raises the stats_signal signal if one is set,
 *                    waits 200 ms: verbose, stats_print and stats_signal still work
 *   closes_stderr    an exit handler of its own closes stderr (as coreutils do), which
 *                    runs before swmalloc's: the report at exit still arrives
 *   file_encoding    sites whose __FILE__ is not UTF-8: the JSON report stays UTF-8
 *   fork_child_fds   a fork child (a daemon's) holds no copy of stderr beyond fd 2: the
 *                    reports' duplicate of stats_fd must not keep its caller's pipe open
 *
 * Prints "ok CASE" (no_malloc writes it with write(2), calling no allocator). */
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void case_signal_at_exit(void) {
    for (unsigned i = 0; i < 20000; i++)
        CHECK(VOS_MallocWithDebug(1 + i % 100, i % 5000, (const unsigned char *)"reports.c", i) != NULL);
    CHECK(kill(getpid(), SIGUSR1) == 0);
}

static void case_no_malloc(void) {
    const char *options = getenv("SWMALLOC_OPTIONS");
    if (options && strstr(options, "stats_signal=10")) {
        CHECK(kill(getpid(), SIGUSR1) == 0);
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

static void close_stderr(void) { close(2); }

static void case_closes_stderr(void) {
    CHECK(atexit(close_stderr) == 0);
    CHECK(malloc(100) != NULL);
}

static void case_file_encoding(void) {
    CHECK(VOS_MallocWithDebug(10, 1, (const unsigned char *)"bad\xff\xfe.c", 1) != NULL);
    CHECK(VOS_MallocWithDebug(10, 1, (const unsigned char *)"cut\xe6\x97.c", 2) != NULL);
    CHECK(VOS_MallocWithDebug(10, 1, (const unsigned char *)"utf8-\xc3\xa9-\xe6\x97\xa5.c", 3) != NULL);
    fflush(stdout);
    swm_vos_report(1, 1);
}

/** Descriptors above 2 open on the same file as stderr (other inherited descriptors, a
 *  test runner's, are not counted). */
static int copies_of_stderr(void) {
    struct stat err;
    CHECK(fstat(2, &err) == 0);
    DIR *dir = opendir("/proc/self/fd");
    CHECK(dir != NULL);
    int copies = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        int fd = atoi(entry->d_name);
        struct stat st;
        if (fd > 2 && fd != dirfd(dir) && fstat(fd, &st) == 0 && st.st_dev == err.st_dev && st.st_ino == err.st_ino)
            copies++;
    }
    closedir(dir);
    return copies;
}

static void case_fork_child_fds(void) {
    CHECK(malloc(100) != NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(copies_of_stderr() == 0 ? 0 : 3);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the fork child holds a copy of stderr beyond fd 2 (status %#x)",
           status);
}

static const struct test_case cases[] = {
    {"signal_at_exit", case_signal_at_exit},
    {"no_malloc", case_no_malloc},
    {"closes_stderr", case_closes_stderr},
    {"file_encoding", case_file_encoding},
    {"fork_child_fds", case_fork_child_fds},
};

int main(int argc, char **argv) {
    const struct test_case *c = select_case(cases, sizeof cases / sizeof cases[0], argc, argv);
    c->run();
    char done[64];
    int n = snprintf(done, sizeof done, "ok %s\n", c->name);
    CHECK(write(1, done, (size_t)n) == n);
    return 0;
}
