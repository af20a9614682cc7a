/* allocating_hooks.c — a preloaded library whose open(), clock_gettime(), getenv(),
 * secure_getenv(), getpid(), syscall(), getauxval(), strlen(), strcmp(), strncmp(),
 * write(), pthread_key_create(), memset(), memmove(), __memset_chk() and __memmove_chk()
 * allocate, as I/O tracers, system-call tracers, time
 * fakers (libfaketime) and sandbox shims do: a 256 KiB scratch buffer and a small block,
 * then the real function. Built as a shared object and preloaded after swmalloc by
 * RegressionTests (regress.c interposed_calls_allocate): the allocator must never call an
 * interposable function while it holds a lock its own malloc needs. Before, open() under
 * a heap's span lock (review R24), clock_gettime() and syscall() (mmap, madvise, futex)
 * under it, and secure_getenv(), getpid(), getauxval(), strlen(), strncmp(), strcmp(),
 * syscall() and pthread_key_create() under the start-up lock, and memset() under the
 * registry lock as a thread's heap was parked at its exit, each deadlocked (review
 * R27); __memset_chk, called to clear a new heap record, gave each thread two heaps
 * (review R30). Its pthread_key_create also forks while swmalloc creates its key (see
 * below). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

/** Allocates and frees what a tracer's bookkeeping would: one large, one small block. */
static void allocate_something(const char *text) {
    char *scratch = malloc(256 * 1024);
    if (scratch) {
        size_t i = 0;
        for (; i < 4095 && text[i]; i++) scratch[i] = text[i];
        scratch[i] = 0;
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

long syscall(long number, ...) {
    static long (*real)(long, ...);
    if (!real) real = (long (*)(long, ...))next("syscall");
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    allocate_something("syscall");
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

unsigned long getauxval(unsigned long type) {
    static unsigned long (*real)(unsigned long);
    if (!real) real = (unsigned long (*)(unsigned long))next("getauxval");
    allocate_something("getauxval");
    return real(type);
}

size_t strlen(const char *text) {
    static size_t (*real)(const char *);
    if (!real) real = (size_t (*)(const char *))next("strlen");
    allocate_something("strlen");
    return real(text);
}

int strcmp(const char *a, const char *b) {
    static int (*real)(const char *, const char *);
    if (!real) real = (int (*)(const char *, const char *))next("strcmp");
    allocate_something("strcmp");
    return real(a, b);
}

int strncmp(const char *a, const char *b, size_t n) {
    static int (*real)(const char *, const char *, size_t);
    if (!real) real = (int (*)(const char *, const char *, size_t))next("strncmp");
    allocate_something("strncmp");
    return real(a, b, n);
}

ssize_t write(int fd, const void *bytes, size_t count) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t (*)(int, const void *, size_t))next("write");
    allocate_something("write");
    return real(fd, bytes, count);
}

/* The first pthread_key_create (swmalloc's thread-exit key, at the process's first
 * allocation) also starts a thread that allocates and waits for it (before, that thread
 * waited for the key's creator, which waited for it: review R31), then starts a thread
 * that forks at once, before it allocates, and takes 200 ms before going on: the child
 * allocates while the key is still being created by a thread the child does not have.
 * The child's status is checked when the program exits (`check_fork_child`): before, the
 * child waited for that thread for ever (review R29). */
static pthread_t forker;
static int forker_started, fork_child_status = -1;

static void *allocate_in_thread(void *unused) {
    (void)unused;
    free(malloc(64));
    return NULL;
}

static void *fork_and_allocate(void *unused) {
    (void)unused;
    pid_t pid = fork();
    if (pid == 0) {
        free(malloc(100));
        _exit(0);
    }
    if (pid > 0) waitpid(pid, &fork_child_status, 0);
    return NULL;
}

int pthread_key_create(pthread_key_t *key, void (*destructor)(void *)) {
    static int (*real)(pthread_key_t *, void (*)(void *));
    static int first = 1;
    if (!real) real = (int (*)(pthread_key_t *, void (*)(void *)))next("pthread_key_create");
    allocate_something("pthread_key_create");
    if (__atomic_exchange_n(&first, 0, __ATOMIC_ACQ_REL)) {
        pthread_t helper;
        if (pthread_create(&helper, NULL, allocate_in_thread, NULL) == 0) pthread_join(helper, NULL);
        forker_started = pthread_create(&forker, NULL, fork_and_allocate, NULL) == 0;
        struct timespec pause = {0, 200000000};
        nanosleep(&pause, NULL);
    }
    return real(key, destructor);
}

/* At exit: the fork child of `pthread_key_create` must have ended with status 0. */
__attribute__((destructor)) static void check_fork_child(void) {
    if (!forker_started) return;
    pthread_join(forker, NULL);
    if (fork_child_status != 0) {
        static const char message[] = "allocating_hooks: the fork child made during key creation failed\n";
        ssize_t ignored = write(2, message, sizeof message - 1);
        (void)ignored;
        _exit(3);
    }
}

void *memset(void *dst, int c, size_t n) {
    static void *(*real)(void *, int, size_t);
    if (!real) real = (void *(*)(void *, int, size_t))next("memset");
    allocate_something("memset");
    return real(dst, c, n);
}

void *memmove(void *dst, const void *src, size_t n) {
    static void *(*real)(void *, const void *, size_t);
    if (!real) real = (void *(*)(void *, const void *, size_t))next("memmove");
    allocate_something("memmove");
    return real(dst, src, n);
}

void *__memset_chk(void *dst, int c, size_t n, size_t dst_size) {
    static void *(*real)(void *, int, size_t, size_t);
    if (!real) real = (void *(*)(void *, int, size_t, size_t))next("__memset_chk");
    allocate_something("__memset_chk");
    return real(dst, c, n, dst_size);
}

void *__memmove_chk(void *dst, const void *src, size_t n, size_t dst_size) {
    static void *(*real)(void *, const void *, size_t, size_t);
    if (!real) real = (void *(*)(void *, const void *, size_t, size_t))next("__memmove_chk");
    allocate_something("__memmove_chk");
    return real(dst, src, n, dst_size);
}
