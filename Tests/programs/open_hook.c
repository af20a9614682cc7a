/* open_hook.c — a preloaded library whose open() allocates, as I/O tracers and sandbox
 * shims do: a 256 KiB scratch buffer, then the real open. Built as a shared object and
 * preloaded after swmalloc by RegressionTests (regress.c retain_under_open_hook): the
 * allocator must never call an interposable open() while it holds a lock its own malloc
 * needs (review R24: retiring an empty segment read /proc/sys/vm/overcommit_memory with
 * open() under the heap's span lock, and free() deadlocked). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int open(const char *path, int flags, ...) {
    static int (*real)(const char *, int, ...);
    if (!real) real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, int);
        va_end(ap);
    }
    char *scratch = malloc(256 * 1024);
    if (scratch) {
        strncpy(scratch, path, 4096);
        free(scratch);
    }
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));
