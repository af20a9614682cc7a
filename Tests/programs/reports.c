/* reports.c — the statistics reports reach their descriptor whole, whatever the program
 * does (ReportTests.swift runs one case per process, linked with -lswmalloc):
 *
 *   signal_at_exit   60,000 VOS sites, then the stats_signal signal to itself, 20 ms, and
 *                    return: the signal's report and the one at exit must not interleave;
 *                    without stats_print, the signal's report in progress must end whole
 *   no_malloc        never calls malloc, raises the stats_signal signal if one is set,
 *                    waits 200 ms: verbose, stats_print and stats_signal still work
 *   closes_stderr    an exit handler of its own closes stderr (as coreutils do), which
 *                    runs before swmalloc's: the report at exit still arrives
 *   file_encoding    sites whose __FILE__ is not UTF-8: the JSON report stays UTF-8
 *   fork_child_fds   a fork child (a daemon's) holds no copy of stderr beyond fd 2: the
 *                    reports' duplicate of stats_fd must not keep its caller's pipe open
 *   interrupted_writes  3,000 sites reported to a pipe read slowly while a 1 ms timer's
 *                    handler (installed without SA_RESTART) interrupts the writes: every
 *                    site arrives (before: about 2,800; each interrupted write's chunk
 *                    was dropped)
 *   nonblocking_pipe  3,000 sites reported to a pipe whose write end is non-blocking (as
 *                    a parent may leave stderr), read slowly: every site arrives (review
 *                    R116: the chunks written while the pipe was full were dropped and
 *                    later ones went through, a hole in the middle of the report)
 *   malloc_stats_full  stderr is a non-blocking pipe nobody reads, full: five calls of
 *                    malloc_stats return within 2.5 s together, as glibc's (review R118:
 *                    each waited 1 s for room once reports waited on such descriptors)
 *   fatal_in_cut_report  children whose swm_vos_report to a full non-blocking pipe is
 *                    cut short after its 1 s wait, each with a timer (1.00 … 1.10 s)
 *                    whose handler frees a pointer that is not a block: every child must
 *                    abort with its one line on stderr (review R118: once the report gave
 *                    up on its pipe, the thread's writes to any descriptor failed at once,
 *                    and a fatal line in that window was lost)
 *   fatal_in_slow_report  children whose stderr is a non-blocking pipe the parent drains
 *                    slowly, each writing a JSON report of 20,000 sites there with a timer
 *                    (100, 200, 300 ms) whose handler frees a pointer that is not a block:
 *                    every child's abort line must reach the parent (review R119: the
 *                    line's one write found the pipe full and was lost, every time)
 *   abort_on_full_stderr  a child whose stderr is a full non-blocking pipe nobody reads:
 *                    a thread frees a pointer that is not a block, and the main thread
 *                    returns from main 500 ms later: the child must die of SIGABRT
 *                    (review R120: the abort line waited a second for room, and the
 *                    main thread's exit ended the process with status 0 meanwhile)
 *   exit_during_abort_line  stderr a full non-blocking pipe: a SIGALRM handler's misuse
 *                    inside its thread's report there (its line waits for room, as the
 *                    report's writes do), the main thread's exit 200 ms later: the child
 *                    must die of SIGABRT (review R124: the exit ended it with status 0);
 *                    and a thread's misuse while another thread's report keeps stderr
 *                    full, the main thread's _exit 50 ms later: SIGABRT (R126: the line
 *                    waited for room there too, and _exit won)
 *   misuse_every_tick  the first of those with a thread (256 KiB of stack) whose 1 ms
 *                    SA_NODEFER timer's handler misuses at every tick: SIGABRT (R124: the
 *                    waits nested until SIGSEGV); then, stderr drained slowly, a reporting
 *                    thread whose own such timer misuses during its report: SIGABRT with
 *                    its line (R124: a tick during the line's wait dropped it)
 *   cut_not_holed    malloc_stats and malloc_info into a non-blocking pipe with 0 … 1,200
 *                    bytes of room: what they wrote must be the start of the whole report
 *                    (review R122: a chunk that did not fit was dropped and a later one
 *                    that did went through, a hole)
 *   info_waits_its_turn  malloc_info to a pipe (read slowly) while another thread writes
 *                    a JSON report there: the two reports must not interleave (review R122:
 *                    malloc_info took no report lock, and its XML landed inside the JSON)
 *   reader_gone      with stats_print, a child whose stderr is a pipe nobody reads any
 *                    more exits 0 (before: killed by SIGPIPE in the report at exit)
 *   reopens_stderr   closes stderr and opens its data file ($REPORTS_DATA), which gets
 *                    descriptor 2, and writes one record: the report at exit must go to
 *                    the stderr the process started with, not into that file (the test
 *                    reads it; before: the whole report was appended to it)
 *   blocked_report   a thread blocks in swm_stats_print to a pipe nobody reads; with
 *                    stats_print the process must still exit (the report at exit waits 1 s
 *                    for the report lock, then says in one line that it left its report
 *                    out; before, exit waited for ever)
 *
 * file_encoding also names a site with 200 backslashes (400 bytes escaped): before, the
 * JSON line was cut inside that entry.
 *
 * Prints "ok CASE" (no_malloc writes it with write(2), calling no allocator). */
#define _GNU_SOURCE
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void case_signal_at_exit(void) {
    for (unsigned i = 0; i < 60000; i++)
        CHECK(VOS_MallocWithDebug(1 + i % 100, i % 5000, (const unsigned char *)"reports.c", i) != NULL);
    CHECK(kill(getpid(), SIGUSR1) == 0);
    struct timespec pause = {0, 20 * 1000 * 1000};   /* the signal's report has started */
    nanosleep(&pause, NULL);
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
    static char backslashes[201];
    memset(backslashes, '\\', 200);
    CHECK(VOS_MallocWithDebug(10, 1, (const unsigned char *)backslashes, 4) != NULL);
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

static int report_pipe[2];
static volatile sig_atomic_t ticks;
static void on_tick(int signal) { (void)signal; ticks++; }

/** Reads the report pipe slowly; counts the lines that name reports.c. */
static void *slow_reader(void *arg) {
    long *lines = arg;
    char buf[4096];
    ssize_t n;
    const char *key = "reports.c:";
    size_t matched = 0;
    while ((n = read(report_pipe[0], buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            matched = buf[i] == key[matched] ? matched + 1 : (buf[i] == key[0] ? 1 : 0);
            if (matched == strlen(key)) { (*lines)++; matched = 0; }
        }
        struct timespec pause = {0, 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void case_interrupted_writes(void) {
    enum { SITES = 3000 };
    for (unsigned i = 0; i < SITES; i++)
        CHECK(VOS_MallocWithDebug(1 + i, i % 50, (const unsigned char *)"reports.c", i + 1) != NULL);
    CHECK(pipe(report_pipe) == 0);
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    CHECK(pthread_sigmask(SIG_BLOCK, &alarm, NULL) == 0);   /* the reader never takes it */
    long lines = 0;
    pthread_t reader;
    CHECK(pthread_create(&reader, NULL, slow_reader, &lines) == 0);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &alarm, NULL) == 0);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_tick;                               /* no SA_RESTART */
    CHECK(sigaction(SIGALRM, &action, NULL) == 0);
    struct itimerval every_ms = {{0, 1000}, {0, 1000}}, off = {{0, 0}, {0, 0}};
    CHECK(setitimer(ITIMER_REAL, &every_ms, NULL) == 0);
    swm_vos_report(report_pipe[1], 0);
    CHECK(setitimer(ITIMER_REAL, &off, NULL) == 0);
    close(report_pipe[1]);
    CHECK(pthread_join(reader, NULL) == 0);
    CHECKF(lines == SITES, "%ld of %d sites reported (%d timer signals during the report)", lines, SITES, (int)ticks);
}

static void case_nonblocking_pipe(void) {
    enum { SITES = 3000 };
    for (unsigned i = 0; i < SITES; i++)
        CHECK(VOS_MallocWithDebug(1 + i, i % 50, (const unsigned char *)"reports.c", i + 1) != NULL);
    CHECK(pipe(report_pipe) == 0);
    CHECK(fcntl(report_pipe[1], F_SETFL, fcntl(report_pipe[1], F_GETFL) | O_NONBLOCK) == 0);
    long lines = 0;
    pthread_t reader;
    CHECK(pthread_create(&reader, NULL, slow_reader, &lines) == 0);
    swm_vos_report(report_pipe[1], 0);
    close(report_pipe[1]);
    CHECK(pthread_join(reader, NULL) == 0);
    CHECKF(lines == SITES, "%ld of %d sites reported to a non-blocking pipe", lines, SITES);
}

/** Fills the non-blocking pipe `fd` writes to until it takes no more. */
static void fill_nonblocking(int fd) {
    CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    while (write(fd, chunk, sizeof chunk) > 0) {}
    CHECK(errno == EAGAIN);
}

static double monotonic_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void case_malloc_stats_full(void) {
    CHECK(malloc(100) != NULL);
    int p[2];
    CHECK(pipe(p) == 0);
    int saved = dup(2);
    CHECK(saved >= 0 && dup2(p[1], 2) == 2);
    fill_nonblocking(2);
    double start = monotonic_now();
    for (int i = 0; i < 5; i++) malloc_stats();
    double took = monotonic_now() - start;
    CHECK(dup2(saved, 2) == 2);
    CHECKF(took < 2.5, "5 malloc_stats() on a full non-blocking stderr took %.2f s (glibc: none waits)", took);
}

static char not_a_block[64];
static void free_not_a_block(int signal) { (void)signal; free(not_a_block + 16); }

/** Writes a VOS report of the process's sites to `fd` with a timer armed to fire
 *  `microseconds` later, whose handler frees a pointer that is not a block; then waits for
 *  it (the report ended first): the process always ends in swmalloc's abort. */
static _Noreturn void report_until_aborted(int fd, int json, long microseconds) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = free_not_a_block;
    CHECK(sigaction(SIGALRM, &action, NULL) == 0);
    struct itimerval at = {{0, 0}, {microseconds / 1000000, microseconds % 1000000}};
    CHECK(setitimer(ITIMER_REAL, &at, NULL) == 0);
    swm_vos_report(fd, json);
    for (;;) pause();
}

static void case_fatal_in_cut_report(void) {
    for (unsigned i = 0; i < 60000; i++)
        CHECK(VOS_MallocWithDebug(1 + i % 100, i % 5000, (const unsigned char *)"reports.c", i) != NULL);
    for (int k = 0; k <= 10; k++) {
        char path[] = "/tmp/swm-reports-XXXXXX";
        int err = mkstemp(path);
        CHECK(err >= 0);
        unlink(path);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            dup2(err, 2);
            int p[2];
            CHECK(pipe(p) == 0);
            fill_nonblocking(p[1]);
            report_until_aborted(p[1], 0, 1000000 + k * 10000);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        char text[512] = {0};
        CHECK(pread(err, text, sizeof text - 1, 0) >= 0);
        close(err);
        CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(text, "swmalloc: free(): invalid pointer"),
               "timer at 1.%02d s: the child's free of a non-block during its cut-short report: status %#x, "
               "stderr \"%s\"", k, status, text);
    }
}

/** Reads `fd` to its end 4 KiB every 5 ms (a slow reader), keeping what fits of it in
 *  `text` (NUL-terminated); returns how many bytes came. */
static size_t read_slowly(int fd, char *text, size_t size) {
    size_t total = 0;
    ssize_t n;
    char chunk[4096];
    while ((n = read(fd, chunk, sizeof chunk)) > 0) {
        if (total + (size_t)n < size) memcpy(text + total, chunk, (size_t)n);
        total += (size_t)n;
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    text[total < size ? total : size - 1] = 0;
    return total;
}

/** Runs `child(k)` (which does not return) in a child whose stderr is a non-blocking pipe
 *  this process drains slowly; the child must die of SIGABRT with swmalloc's abort line
 *  on that stderr. */
static void child_aborts_with_line(void (*child)(int), int k, const char *what) {
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        close(p[1]);
        CHECK(fcntl(2, F_SETFL, fcntl(2, F_GETFL) | O_NONBLOCK) == 0);
        child(k);
    }
    close(p[1]);
    static char text[16 << 20];
    size_t total = read_slowly(p[0], text, sizeof text);
    close(p[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT
           && memmem(text, total < sizeof text ? total : sizeof text, "swmalloc: free(): invalid pointer", 33),
           "%s (%d) to a slow non-blocking stderr: status %#x, %zu bytes on stderr, no abort line",
           what, k, status, total);
}

/** Adds 20,000 VOS sites, so that a JSON report of them takes a while to write. */
static void add_sites(void) {
    for (unsigned i = 0; i < 20000; i++)
        CHECK(VOS_MallocWithDebug(1 + i % 100, i % 500, (const unsigned char *)"reports.c", i) != NULL);
}

static _Noreturn void report_with_timer(int k) { report_until_aborted(2, 1, k * 100000); }

static void case_fatal_in_slow_report(void) {
    add_sites();
    for (int k = 1; k <= 3; k++)
        child_aborts_with_line(report_with_timer, k, "a handler's free of a non-block, timer at k * 100 ms, during a report");
}

static void *free_not_a_block_later(void *arg) {
    struct timespec pause = {0, 150 * 1000 * 1000};
    nanosleep(&pause, NULL);
    free(not_a_block + 16);
    return arg;
}

static void *free_not_a_block_thread(void *arg) {
    free(not_a_block + 16);
    return arg;
}

/** Runs `child()` (which does not return) in a child whose stderr is a full
 *  non-blocking pipe nobody reads; returns how the child ended. */
static int status_on_full_stderr(void (*child)(void)) {
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        fill_nonblocking(2);
        child();
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    close(p[0]);
    close(p[1]);
    return status;
}

/** Sleeps `milliseconds` (under a second). */
static void sleep_ms(long milliseconds) {
    struct timespec pause = {0, milliseconds * 1000 * 1000};
    nanosleep(&pause, NULL);
}

static _Noreturn void misuse_then_exit(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_not_a_block_thread, NULL) == 0);
    sleep_ms(500);
    exit(0);
}

static void case_abort_on_full_stderr(void) {
    int status = status_on_full_stderr(misuse_then_exit);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "a thread's invalid free with stderr a full non-blocking pipe: status %#x, not SIGABRT", status);
}

static void *report_to_stderr(void *arg) {
    swm_stats_print(2, 1);
    return arg;
}

static void *report_until_aborted_thread(void *arg) {
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    CHECK(pthread_sigmask(SIG_UNBLOCK, &alarm, NULL) == 0);
    report_until_aborted(2, 1, 100000);
    return arg;
}

/** Starts a thread whose report to stderr a SIGALRM handler interrupts 100 ms in with a
 *  misuse (the calling thread, and those it starts later, block SIGALRM): the misuse's
 *  line waits for room, as the report's writes do. */
static void start_report_misused_inside(void) {
    add_sites();
    sigset_t alarm;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    CHECK(pthread_sigmask(SIG_BLOCK, &alarm, NULL) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, report_until_aborted_thread, NULL) == 0);
}

static _Noreturn void misuse_inside_report_then_exit(void) {
    start_report_misused_inside();
    sleep_ms(300);
    exit(0);
}

static _Noreturn void misuse_beside_report_then_quick_exit(void) {
    add_sites();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, report_to_stderr, NULL) == 0);
    CHECK(pthread_create(&t, NULL, free_not_a_block_later, NULL) == 0);
    sleep_ms(200);
    _exit(0);
}

static void case_exit_during_abort_line(void) {
    int status = status_on_full_stderr(misuse_inside_report_then_exit);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "a handler's invalid free inside its thread's report to a full stderr, the main thread's exit 200 ms "
           "later: status %#x, not SIGABRT", status);
    status = status_on_full_stderr(misuse_beside_report_then_quick_exit);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "a thread's invalid free while another thread's report keeps stderr full, the main thread's _exit 50 ms "
           "later: status %#x, not SIGABRT", status);
}

static char *ticking_block;
static void free_inside_block(int signal) { (void)signal; free(ticking_block + 8); }

/** Arms a timer on the calling thread, first after `first_ms`, then every 1 ms, whose
 *  handler (SA_NODEFER: a tick may interrupt the handler itself) frees a pointer inside a
 *  block. */
static void arm_misuse_ticks(long first_ms) {
    ticking_block = malloc(64);
    CHECK(ticking_block != NULL);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = free_inside_block;
    action.sa_flags = SA_NODEFER;
    CHECK(sigaction(SIGUSR2, &action, NULL) == 0);
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = SIGUSR2;
    event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    CHECK(timer_create(CLOCK_MONOTONIC, &event, &timer) == 0);
    struct itimerspec ticks = {{0, 1000000}, {first_ms / 1000, first_ms % 1000 * 1000000}};
    CHECK(timer_settime(timer, 0, &ticks, NULL) == 0);
}

static void *misuse_every_tick_later(void *arg) {
    arm_misuse_ticks(200);
    for (;;) {}
    return arg;
}

/** As `start_report_misused_inside`, and a thread with a 256 KiB stack whose timer's
 *  handler misuses at every tick from 200 ms: it waits for the first misuse's abort. */
static _Noreturn void report_misused_inside_and_every_tick(void) {
    start_report_misused_inside();
    pthread_attr_t small;
    CHECK(pthread_attr_init(&small) == 0 && pthread_attr_setstacksize(&small, 256 << 10) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, &small, misuse_every_tick_later, NULL) == 0);
    for (;;) pause();
}

/** A report to stderr whose own thread's timer misuses at every tick from 100 ms. */
static _Noreturn void report_misused_every_tick(int k) {
    (void)k;
    arm_misuse_ticks(100);
    swm_stats_print(2, 1);
    for (;;) pause();
}

static void case_misuse_every_tick(void) {
    int status = status_on_full_stderr(report_misused_inside_and_every_tick);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "a thread whose handler misuses at every tick while another thread's misuse line waits: "
           "status %#x, not SIGABRT", status);
    add_sites();
    child_aborts_with_line(report_misused_every_tick, 0, "a handler's free inside a block at every tick of the reporting thread");
}

/** Writes the report `what` (malloc_stats to stderr, or malloc_info to `stream`) into a
 *  non-blocking pipe left with `room` bytes of room (-1: empty); returns the length of what
 *  it put there, copied to `out`. The pipe's 16 pages are in use, the last with `room`
 *  bytes free, so that a report's chunk may not fit where a shorter later one does. */
static size_t report_into_pipe(int info, int room, FILE *stream, char *out, size_t size) {
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK) == 0);
    static char filler[4096];
    memset(filler, '#', sizeof filler);
    int pages = fcntl(p[1], F_GETPIPE_SZ) / 4096;
    if (room >= 0) {
        for (int i = 0; i < pages - 1; i++) CHECK(write(p[1], filler, 4096) == 4096);
        CHECK(write(p[1], filler, (size_t)(4096 - room)) == 4096 - room);
    }
    int target = info ? fileno(stream) : 2;
    int saved = dup(target);
    CHECK(saved >= 0 && dup2(p[1], target) == target);
    if (info) malloc_info(0, stream); else malloc_stats();
    CHECK(dup2(saved, target) == target);
    close(saved);
    close(p[1]);
    size_t total = 0;
    ssize_t n;
    while ((n = read(p[0], out + total, size - total)) > 0) total += (size_t)n;
    close(p[0]);
    size_t skip = 0;
    while (skip < total && out[skip] == '#') skip++;
    memmove(out, out + skip, total - skip);
    return total - skip;
}

static void case_cut_not_holed(void) {
    CHECK(malloc(100) != NULL);
    CHECK(VOS_MallocWithDebug(100, 7, (const unsigned char *)"reports.c", 1) != NULL);
    FILE *stream = fdopen(dup(1), "w");
    CHECK(stream != NULL);
    static char whole[1 << 16], part[1 << 17];
    for (int info = 0; info <= 1; info++)
        for (int room = 0; room <= 1200; room += 100) {
            size_t length = report_into_pipe(info, -1, stream, whole, sizeof whole);
            CHECK(length > 0);
            size_t cut = report_into_pipe(info, room, stream, part, sizeof part);
            CHECKF(cut <= length && memcmp(part, whole, cut) == 0,
                   "%s into a full non-blocking pipe with %d bytes of room wrote %zu bytes, "
                   "not the start of its %zu-byte report: \"%.80s\"",
                   info ? "malloc_info" : "malloc_stats", room, cut, length, part);
        }
}

static int shared_pipe[2];
static void *json_report(void *arg) {
    swm_stats_print(shared_pipe[1], 1);
    return arg;
}

static void case_info_waits_its_turn(void) {
    add_sites();
    FILE *stream = fdopen(dup(1), "w");
    CHECK(stream != NULL);
    CHECK(pipe(shared_pipe) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(shared_pipe[0]);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, json_report, NULL) == 0);
        struct timespec pause = {0, 50 * 1000 * 1000};   /* the JSON report is under way */
        nanosleep(&pause, NULL);
        CHECK(dup2(shared_pipe[1], fileno(stream)) == fileno(stream));
        malloc_info(0, stream);
        CHECK(pthread_join(t, NULL) == 0);
        _exit(0);
    }
    close(shared_pipe[1]);
    static char text[16 << 20];
    size_t total = read_slowly(shared_pipe[0], text, sizeof text);
    close(shared_pipe[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECKF(total < sizeof text, "%zu bytes of reports", total);
    /* Two whole reports, in either order: the JSON one line, the XML from "<malloc" to
     * "</malloc>\n". */
    char *xml = strstr(text, "<malloc version=");
    char *xml_end = strstr(text, "</malloc>\n");
    CHECKF(xml && xml_end, "no whole malloc_info report in %zu bytes", total);
    xml_end += strlen("</malloc>\n");
    char *json = xml == text ? xml_end : text;
    char *json_end = strchr(json, '\n');
    CHECKF(json[0] == '{' && json_end && (xml == text ? json_end + 1 == text + total : json_end + 1 == xml)
               && xml_end == (xml == text ? json : text + total),
           "malloc_info's XML at byte %td of %zu, its end at %td: inside the JSON report (\"…%.40s\")",
           xml - text, total, xml_end - text, xml > text + 40 ? xml - 40 : text);
}

static void case_reader_gone(void) {
    int p[2], go[2];
    CHECK(pipe(p) == 0 && pipe(go) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        close(go[1]);
        for (int i = 0; i < 100; i++) (void)VOS_MallocWithDebug(10, (unsigned long)i, (const unsigned char *)"reports.c", 1);
        char byte;
        (void)read(go[0], &byte, 1);   /* until the parent closed its read end */
        exit(0);
    }
    close(p[0]);   /* nobody reads the child's stderr any more */
    close(p[1]);
    close(go[0]);
    CHECK(write(go[1], "x", 1) == 1);
    close(go[1]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's report at exit to a pipe without a reader: status %#x",
           status);
}

static void case_reopens_stderr(void) {
    const char *path = getenv("REPORTS_DATA");
    CHECK(path != NULL);
    char *record = malloc(64);
    CHECK(record != NULL);
    strcpy(record, "record 1\n");
    close(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd == 2);
    CHECK(write(fd, record, strlen(record)) == (ssize_t)strlen(record));
    free(record);
}

static int blocked_pipe[2];

static void *report_to_blocked_pipe(void *arg) {
    (void)arg;
    swm_stats_print(blocked_pipe[1], 1);
    return NULL;
}

static void case_blocked_report(void) {
    for (unsigned i = 0; i < 2000; i++)   /* sites: a report longer than the pipe holds */
        CHECK(VOS_MallocWithDebug(16, 1, (const unsigned char *)"reports.c", i) != NULL);
    CHECK(pipe(blocked_pipe) == 0);
    CHECK(fcntl(blocked_pipe[1], F_SETPIPE_SZ, 4096) > 0);
    pthread_t writer;
    CHECK(pthread_create(&writer, NULL, report_to_blocked_pipe, NULL) == 0);
    struct timespec pause = {0, 200 * 1000 * 1000};   /* the report fills the pipe */
    nanosleep(&pause, NULL);
    CHECKF(pthread_tryjoin_np(writer, NULL) == EBUSY, "the report did not block: nothing was tested");
}

static const struct test_case cases[] = {
    {"signal_at_exit", case_signal_at_exit},
    {"no_malloc", case_no_malloc},
    {"closes_stderr", case_closes_stderr},
    {"file_encoding", case_file_encoding},
    {"fork_child_fds", case_fork_child_fds},
    {"interrupted_writes", case_interrupted_writes},
    {"nonblocking_pipe", case_nonblocking_pipe},
    {"malloc_stats_full", case_malloc_stats_full},
    {"fatal_in_cut_report", case_fatal_in_cut_report},
    {"fatal_in_slow_report", case_fatal_in_slow_report},
    {"abort_on_full_stderr", case_abort_on_full_stderr},
    {"exit_during_abort_line", case_exit_during_abort_line},
    {"misuse_every_tick", case_misuse_every_tick},
    {"cut_not_holed", case_cut_not_holed},
    {"info_waits_its_turn", case_info_waits_its_turn},
    {"reader_gone", case_reader_gone},
    {"reopens_stderr", case_reopens_stderr},
    {"blocked_report", case_blocked_report},
};

int main(int argc, char **argv) {
    const struct test_case *c = select_case(cases, sizeof cases / sizeof cases[0], argc, argv);
    c->run();
    char done[64];
    int n = snprintf(done, sizeof done, "ok %s\n", c->name);
    CHECK(write(1, done, (size_t)n) == n);
    return 0;
}
