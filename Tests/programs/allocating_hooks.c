/* allocating_hooks.c — a preloaded library whose open(), clock_gettime(), getenv(),
 * secure_getenv() and getpid() allocate, as I/O tracers, time fakers (libfaketime) and
 * sandbox shims do: a 256 KiB scratch buffer and a small block, then the real function.
 * Built as a shared object and preloaded after swmalloc by RegressionTests (regress.c
 * interposed_calls_allocate): the allocator must never call an interposable function
 * while it holds a lock its own malloc needs. Before, open() under a heap's span lock
 * (review R24), clock_gettime() under it (a page retired in free), and secure_getenv()
 * and getpid() under the start-up lock each deadlocked. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/** Allocates and frees what a tracer's bookkeeping would: one large, one small block. */
static void allocate_something(const char *text) {
    char *scratch = malloc(256 * 1024);
    if (scratch) {
        strncpy(scratch, text, 4096);
        free(scratch);
    }
    free(malloc(40));
}

/** The next definition of `name` (the C library's). */
static void *next(const char *name) { return dlsym(RTLD_NEXT, name); }

int open(const char *path, int flags, ...) {
    static int (*real)(const char *, int, ...);
    if (!real) real = (int (*)(const char *, int, ...))next("open");
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, int);
        va_end(ap);
    }
    allocate_something(path);
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int clock_gettime(clockid_t clock, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))next("clock_gettime");
    allocate_something("clock_gettime");
    return real(clock, ts);
}

char *getenv(const char *name) {
    static char *(*real)(const char *);
    if (!real) real = (char *(*)(const char *))next("getenv");
    allocate_something(name);
    return real(name);
}

char *secure_getenv(const char *name) {
    static char *(*real)(const char *);
    if (!real) real = (char *(*)(const char *))next("secure_getenv");
    allocate_something(name);
    return real(name);
}

pid_t getpid(void) {
    static pid_t (*real)(void);
    if (!real) real = (pid_t (*)(void))next("getpid");
    allocate_something("getpid");
    return real();
}
