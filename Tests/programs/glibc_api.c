/* glibc_api.c — glibc's malloc extensions and internal names answered by swmalloc:
 * `glibc_api CASE` (or `glibc_api list`); prints "ok CASE" and exits 0, or names the
 * failed check and exits 1. Run with swmalloc preloaded or linked (-lswmalloc); its
 * statistics are found with dlsym, so the cases prove that swmalloc, not glibc's idle
 * allocator, answered.
 *
 *   mallinfo2_fields     live small blocks and a huge block show in uordblks, hblks,
 *                        hblkhd; arena = uordblks + fordblks; freeing them shows too.
 *   mallinfo_saturates   a 3 GiB block (never touched) does not fit mallinfo's int:
 *                        hblkhd reads INT_MAX, not a wrapped value.
 *   malloc_trim_returns  64 MiB freed: malloc_trim(0) gives memory back and returns 1; a
 *                        second call right after has nothing left and returns 0.
 *   keepcost_after_trim  2,000 blocks aligned to 2 MiB (a segment each), freed: keepcost
 *                        counts their resident free spans; after malloc_trim(0) it is
 *                        under 1 MiB (the header page each retained segment keeps is not
 *                        something trim gives back; it read as 7.8 MiB: review R91).
 *   malloc_stats_text    malloc_stats() prints swmalloc's report on stderr (the test
 *                        checks the text).
 *   malloc_stats_follows_stderr  malloc_stats() writes to the stderr stream as it is: a
 *                        buffered file the program made stderr gets the report between
 *                        what was printed before and after, and a memory stream gets it
 *                        (before, it went to descriptor 2: review R58).
 *   malloc_info_xml      malloc_info(0, f) writes glibc-shaped XML; options other than 0
 *                        return EINVAL, errno untouched (glibc's answer); to /dev/full
 *                        swmalloc returns -1 with ENOSPC (errno was 0: review R22); to a
 *                        memory stream, the report (it was -1 and EINVAL: review R34);
 *                        to a stream opened for reading, nothing, -1 with EBADF (the
 *                        report went out on its descriptor: review R79).
 *   mallopt_answers      glibc's answers (1; 0 for M_MXFAST above 160: before, 0 for all
 *                        but one, and programs that check them refused to start);
 *                        M_TRIM_THRESHOLD 0 maps onto purge_delay_ms=1: 100 turns of malloc,
 *                        touch and free of an 8 MiB block reuse its mapping (fewer than 100
 *                        page faults; with purge_delay_ms=0, which it mapped onto before,
 *                        every free unmapped it and every turn faulted twice, and an outside
 *                        review's program ran 2-4x slower than on glibc), and a freed 8 MiB
 *                        block is unmapped within 200 ms (the default delay is 250 ms);
 *                        another threshold puts the default delay back; allocation still
 *                        works.
 *   mallopt_keeps_user_delay  with purge_delay_ms=250 set by the user, M_TRIM_THRESHOLD 0
 *                        leaves it (before, it overrode it for good).
 *   libc_aliases         __libc_malloc/calloc/realloc/memalign/valloc/pvalloc/free are
 *                        swmalloc's: their blocks mix freely with malloc/free;
 *                        __libc_mallinfo and __libc_mallopt answer as mallinfo and mallopt
 *                        (they were glibc's: arena 0, review R34). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "swmalloc.h"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"   /* mallinfo: tested on purpose */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern struct mallinfo __libc_mallinfo(void);
extern int __libc_mallopt(int, int);
/* cfree as a program linked before glibc 2.26 calls it: glibc's old alias of its free. */
__asm__(".symver cfree,cfree@GLIBC_2.2.5");
extern void cfree(void *);

static int (*stats_get)(swm_stats_t *);

/** swmalloc's count of allocations since start. */
static size_t swm_mallocs(void) {
    swm_stats_t st;
    CHECK(stats_get(&st) == 0);
    return st.mallocs;
}

static void mallinfo2_fields(void) {
    enum { N = 1000 };
    static void *blocks[N];
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < N; i++) CHECK((blocks[i] = malloc(1024)) != NULL);
    void *huge = malloc(8u << 20);
    CHECK(huge != NULL);
    memset(huge, 1, 8u << 20);
    struct mallinfo2 m = mallinfo2();
    CHECKF(m.uordblks >= before.uordblks + N * 1024, "uordblks %zu, before %zu", m.uordblks, before.uordblks);
    CHECKF(m.hblks == before.hblks + 1, "hblks %zu, before %zu", m.hblks, before.hblks);
    CHECKF(m.hblkhd >= before.hblkhd + (8u << 20), "hblkhd %zu", m.hblkhd);
    CHECKF(m.arena == m.uordblks + m.fordblks, "arena %zu != uordblks %zu + fordblks %zu", m.arena, m.uordblks,
           m.fordblks);
    CHECK(m.arena > 0 && m.usmblks == 0 && m.smblks == 0);
    for (int i = 0; i < N; i++) free(blocks[i]);
    free(huge);
    struct mallinfo2 after = mallinfo2();
    CHECKF(after.hblks == before.hblks && after.hblkhd == before.hblkhd, "huge counts after free: %zu, %zu",
           after.hblks, after.hblkhd);
    CHECKF(after.uordblks + N * 1024 <= m.uordblks, "uordblks %zu after freeing, %zu before", after.uordblks,
           m.uordblks);
}

static void mallinfo_saturates(void) {
    void *p = malloc((size_t)3 << 30);
    CHECK(p != NULL);
    struct mallinfo2 wide = mallinfo2();
    struct mallinfo narrow = mallinfo();
    CHECKF(wide.hblkhd >= (size_t)3 << 30, "hblkhd %zu", wide.hblkhd);
    CHECKF(narrow.hblkhd == INT_MAX, "mallinfo().hblkhd %d, not INT_MAX", narrow.hblkhd);
    CHECK(narrow.hblks == (int)wide.hblks);
    free(p);
}

static void malloc_trim_returns(void) {
    enum { N = 64 * 1024 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        CHECK((blocks[i] = malloc(1000)) != NULL);
        memset(blocks[i], 2, 1000);
    }
    for (int i = 0; i < N; i++) free(blocks[i]);
    swm_stats_t st;
    CHECK(stats_get(&st) == 0);
    size_t returned = st.returned;
    CHECKF(malloc_trim(0) == 1, "malloc_trim after freeing 64 MiB returned 0");
    CHECK(stats_get(&st) == 0);
    CHECKF(st.returned > returned, "malloc_trim returned 1 but nothing went back");
    CHECKF(malloc_trim(0) == 0, "a second malloc_trim found memory to give back");
}

static void keepcost_after_trim(void) {
    enum { N = 2000 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        CHECK(posix_memalign(&blocks[i], 2 << 20, 64) == 0);
        memset(blocks[i], 3, 64);
    }
    for (int i = 0; i < N; i++) free(blocks[i]);
    size_t freed = mallinfo2().keepcost;
    malloc_trim(0);
    size_t trimmed = mallinfo2().keepcost;
    CHECKF(freed >= (4u << 20), "keepcost %zu after freeing 2,000 blocks: the test did not test", freed);
    CHECKF(trimmed < (1u << 20), "keepcost %zu after malloc_trim gave everything back", trimmed);
}

static void malloc_stats_text(void) {
    void *p = malloc(100);
    CHECK(p != NULL);
    malloc_stats();
    free(p);
}

/** Flushes the temporary file `f`, reads it whole into `text` (at most `capacity` - 1
 *  bytes, NUL-terminated), closes it and returns the length read. */
static size_t read_back(FILE *f, char *text, size_t capacity) {
    CHECK(fflush(f) == 0);
    rewind(f);
    size_t n = fread(text, 1, capacity - 1, f);
    text[n] = 0;
    fclose(f);
    return n;
}

static void malloc_stats_follows_stderr(void) {
    FILE *saved = stderr;
    FILE *f = tmpfile();
    CHECK(f != NULL);
    static char buffer[4096];
    CHECK(setvbuf(f, buffer, _IOFBF, sizeof buffer) == 0);
    void *p = malloc(100);
    CHECK(p != NULL);
    stderr = f;
    fputs("before\n", stderr);   /* buffered: malloc_stats must flush it first */
    malloc_stats();
    fputs("after\n", stderr);
    stderr = saved;
    static char text[16384];
    size_t n = read_back(f, text, sizeof text);
    CHECKF(strncmp(text, "before\n", 7) == 0 && n > 20, "the log starts: %.60s", text);
    CHECKF(strcmp(text + n - 6, "after\n") == 0, "the log ends: %s", text + (n > 60 ? n - 60 : 0));
    /* stderr a memory stream (no file descriptor): the report lands in it. */
    char *memory = NULL;
    size_t length = 0;
    FILE *m = open_memstream(&memory, &length);
    CHECK(m != NULL);
    stderr = m;
    malloc_stats();
    stderr = saved;
    CHECK(fclose(m) == 0);
    CHECKF(length > 20, "the memory stream got %zu bytes", length);
    free(memory);
    free(p);
}

static void malloc_info_xml(void) {
    FILE *f = tmpfile();
    CHECK(f != NULL);
    fputs("before\n", f);   /* buffered: malloc_info must flush it first */
    void *huge = malloc(5u << 20);
    CHECK(huge != NULL);
    CHECK(malloc_info(0, f) == 0);
    free(huge);
    static char text[8192];
    size_t n = read_back(f, text, sizeof text);
    CHECKF(strncmp(text, "before\n<malloc version=\"1\">\n", 28) == 0, "starts: %.60s", text);
    CHECKF(strstr(text, "<total type=\"mmap\" count=\"1\"") != NULL, "no mmap total of 1 block: %s", text);
    CHECKF(n > 9 && strcmp(text + n - 10, "</malloc>\n") == 0, "ends: %s", text + (n > 40 ? n - 40 : 0));
    errno = 0;
    CHECK(malloc_info(1, stdout) == EINVAL && errno == 0);   /* as glibc: returned, not set */
    FILE *full = fopen("/dev/full", "w");
    CHECK(full != NULL);
    errno = 0;
    int r = malloc_info(0, full);
    CHECKF(r == -1 && errno == ENOSPC, "malloc_info to /dev/full: %d, errno %d", r, errno);   /* glibc: 0 */
    fclose(full);
    /* A stream opened for reading, over a descriptor that can be written (a socket): the
     * report must not go out on it (glibc's fprintf fails with EBADF; swmalloc wrote to the
     * descriptor: review R79). */
    int pair[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    FILE *readOnly = fdopen(pair[0], "r");
    CHECK(readOnly != NULL);
    errno = 0;
    r = malloc_info(0, readOnly);
    CHECKF(r == -1 && errno == EBADF, "malloc_info to a read-only stream: %d, errno %d", r, errno);   /* glibc: 0 */
    char byte;
    ssize_t got = recv(pair[1], &byte, 1, MSG_DONTWAIT);
    CHECKF(got == -1 && errno == EAGAIN, "malloc_info wrote to a read-only stream's descriptor (%zd)", got);
    fclose(readOnly);
    close(pair[1]);
    /* A memory stream has no descriptor: the report reaches it all the same (it was -1
     * and EINVAL: review R34), after what the stream held. */
    char *memory = NULL;
    size_t length = 0;
    FILE *m = open_memstream(&memory, &length);
    CHECK(m != NULL);
    fputs("before\n", m);
    errno = 0;
    CHECKF(malloc_info(0, m) == 0 && errno == 0, "malloc_info to a memory stream: errno %d", errno);
    CHECK(fclose(m) == 0);
    CHECKF(length > 40 && strncmp(memory, "before\n<malloc version=\"1\">\n", 28) == 0
           && strcmp(memory + length - 10, "</malloc>\n") == 0, "memory stream: %.60s", memory);
    free(memory);
}

/** Page faults during 100 turns of malloc, touch (two pages) and free of an 8 MiB block:
 *  about 200 when each free unmaps it, about 0 when the next malloc reuses the mapping. */
static long faults_of_huge_turns(void) {
    struct rusage before, after;
    CHECK(getrusage(RUSAGE_SELF, &before) == 0);
    for (int i = 0; i < 100; i++) {
        char *p = malloc((size_t)8 << 20);
        CHECK(p != NULL);
        p[0] = 1;
        p[(size_t)4 << 20] = 1;
        free(p);
    }
    CHECK(getrusage(RUSAGE_SELF, &after) == 0);
    return after.ru_minflt - before.ru_minflt;
}

/** Mapped bytes right after a fresh 8 MiB block is written and freed, less those
 *  before (`*later`: the same `wait_ms` later, polled every 10 ms until the block is
 *  unmapped): about -8 MiB when the freed block was unmapped by then, 0 when it is kept
 *  in the huge cache for the delay. */
static double mapped_change_mib(int wait_ms, double *later) {
    swm_stats_t before, after;
    char *p = malloc((size_t)8 << 20);
    CHECK(p != NULL);
    memset(p, 3, (size_t)8 << 20);
    CHECK(stats_get(&before) == 0);
    free(p);
    CHECK(stats_get(&after) == 0);
    double change = ((double)after.mapped - (double)before.mapped) / (1 << 20);
    if (later) {
        for (int waited = 0;; waited += 10) {
            CHECK(stats_get(&after) == 0);
            *later = ((double)after.mapped - (double)before.mapped) / (1 << 20);
            if (*later < -7 || waited >= wait_ms) break;
            usleep(10000);
        }
    }
    return change;
}

/** `mapped_change_mib(0)` up to 5 times, until one finds the freed block still mapped:
 *  a test starved between the free and the statistics for longer than a 250 ms delay
 *  sees the purger's unmap (review R8: 15 of 40 runs under `nice -n 19` beside six busy
 *  loops), while a delay of 0 unmaps the block at every try. */
static double kept_change_mib(void) {
    double change = mapped_change_mib(0, NULL);
    for (int i = 1; i < 5 && change <= -1; i++) change = mapped_change_mib(0, NULL);
    return change;
}

static void mallopt_answers(void) {
    /* glibc's answers: 1 for every parameter (unknown ones too), 0 for M_MXFAST above 160. */
    CHECK(mallopt(M_ARENA_MAX, 2) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
    CHECK(mallopt(M_MMAP_MAX, 0) == 1);
    CHECK(mallopt(M_TOP_PAD, 0) == 1);
    CHECK(mallopt(M_TRIM_THRESHOLD, -1) == 1);
    CHECK(mallopt(123456, 7) == 1);
    CHECK(mallopt(M_MXFAST, 160) == 1);
    CHECK(mallopt(M_MXFAST, 161) == 0);
    /* M_TRIM_THRESHOLD 0: memory goes back after 1 ms, not at every free; another
     * threshold: after the delay. */
    CHECK(mallopt(M_TRIM_THRESHOLD, 0) == 1);
    long faults = faults_of_huge_turns();
    CHECKF(faults < 100, "after M_TRIM_THRESHOLD 0, 100 turns of malloc and free of 8 MiB took %ld page faults: "
           "purge_delay_ms=0, every free unmapped the block", faults);
    double later = 0;
    mapped_change_mib(200, &later);
    CHECKF(later < -7, "after M_TRIM_THRESHOLD 0 a freed 8 MiB block stayed mapped for 200 ms (%.1f MiB)", later);
    CHECK(mallopt(M_TRIM_THRESHOLD, 128 * 1024) == 1);
    double change = kept_change_mib();
    CHECKF(change > -1, "after M_TRIM_THRESHOLD 128 KiB a freed 8 MiB block was unmapped at once (%.1f MiB)", change);
    void *p = malloc(200000);
    CHECK(p != NULL);
    memset(p, 3, 200000);
    free(p);
}

/** Run with purge_delay_ms=5000 in SWMALLOC_OPTIONS: the user's delay stays in force after
 *  the program's mallopt(M_TRIM_THRESHOLD, 0), so a freed 8 MiB block is still mapped
 *  200 ms later (with the 1 ms that mallopt sets otherwise, it is unmapped by then; an
 *  outside review, R51: with a 250 ms delay, the default, and a check right after the
 *  free, the case could not fail). */
static void mallopt_keeps_user_delay(void) {
    CHECK(mallopt(M_TRIM_THRESHOLD, 0) == 1);
    double later = 0;
    mapped_change_mib(200, &later);
    CHECKF(later > -1, "mallopt(M_TRIM_THRESHOLD, 0) overrode purge_delay_ms=5000: a freed 8 MiB block was "
           "unmapped within 200 ms (%.1f MiB)", later);
}

static void libc_aliases(void) {
    size_t before = swm_mallocs();
    char *a = __libc_malloc(100);
    CHECK(a != NULL);
    memset(a, 4, 100);
    CHECKF(swm_mallocs() > before, "__libc_malloc was not served by swmalloc");
    CHECK(malloc_usable_size(a) >= 100);
    free(a);
    char *b = malloc(50);
    CHECK(b != NULL);
    __libc_free(b);
    unsigned char *c = __libc_calloc(10, 10);
    CHECK(c != NULL);
    for (int i = 0; i < 100; i++) CHECK(c[i] == 0);
    c = __libc_realloc(c, 5000);
    CHECK(c != NULL && c[99] == 0);
    free(c);
    void *d = __libc_memalign(4096, 100);
    CHECK(d != NULL && ((uintptr_t)d & 4095) == 0);
    __libc_free(d);
    long page = sysconf(_SC_PAGESIZE);
    void *e = __libc_valloc(10);
    CHECK(e != NULL && ((uintptr_t)e & (uintptr_t)(page - 1)) == 0);
    free(e);
    void *g = __libc_pvalloc(10);
    CHECK(g != NULL && ((uintptr_t)g & (uintptr_t)(page - 1)) == 0 && malloc_usable_size(g) >= (size_t)page);
    __libc_free(g);
    /* Before cfree was exported, glibc's free got the block and aborted. */
    swm_stats_t st;
    CHECK(stats_get(&st) == 0);
    size_t frees = st.frees;
    for (int i = 0; i < 4; i++) {
        void *h = malloc(100);
        CHECK(h != NULL);
        cfree(h);
    }
    CHECK(stats_get(&st) == 0);
    CHECKF(st.frees >= frees + 4, "cfree was not served by swmalloc");
    char *live = malloc(40000);
    CHECK(live != NULL);
    struct mallinfo mi = __libc_mallinfo();
    CHECKF(mi.arena > 0 && mi.uordblks >= 40000, "__libc_mallinfo: arena %d, uordblks %d", mi.arena, mi.uordblks);
    free(live);
    CHECK(__libc_mallopt(M_MXFAST, 1000) == 0 && __libc_mallopt(M_ARENA_MAX, 2) == 1);
}

static const struct test_case cases[] = {
    {"mallinfo2_fields", mallinfo2_fields},   {"mallinfo_saturates", mallinfo_saturates},
    {"malloc_trim_returns", malloc_trim_returns}, {"keepcost_after_trim", keepcost_after_trim},
    {"malloc_stats_text", malloc_stats_text},
    {"malloc_stats_follows_stderr", malloc_stats_follows_stderr},
    {"malloc_info_xml", malloc_info_xml},     {"mallopt_answers", mallopt_answers},
    {"mallopt_keeps_user_delay", mallopt_keeps_user_delay},
    {"libc_aliases", libc_aliases},
};

int main(int argc, char **argv) {
    const struct test_case *c = select_case(cases, sizeof cases / sizeof cases[0], argc, argv);
    stats_get = (int (*)(swm_stats_t *))dlsym(RTLD_DEFAULT, "swm_stats_get");
    CHECKF(stats_get != NULL, "run with swmalloc preloaded or linked");
    c->run();
    printf("ok %s\n", c->name);
    return 0;
}
