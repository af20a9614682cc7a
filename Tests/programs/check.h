/* check.h — assertion helpers shared by the C test programs: a failed CHECK prints the
 * condition and its line on stderr and exits 1. */
#ifndef SWM_TEST_CHECK_H
#define SWM_TEST_CHECK_H

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/** Fails the program (exit 1) with a message naming the condition when `cond` is false. */
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

/** CHECK with a printf-style explanation. */
#define CHECKF(cond, ...)                                                                 \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "CHECK failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

/** Reads the file `path` (of /proc) into `text`, `size` bytes at most with the NUL that
 *  ends it, without calling the allocator (so that waiting for the resident set to fall
 *  is not what makes it fall). */
static inline void read_proc(const char *path, char *text, size_t size) {
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    ssize_t n = read(fd, text, size - 1);
    close(fd);
    CHECK(n > 0);
    text[n] = 0;
}

/** The address space (`resident` 0) or the resident set (1) in bytes, from
 *  /proc/thread-self/statm (thread-self: after the main thread's pthread_exit,
 *  /proc/self, the exited leader, reads zero). */
static inline size_t statm_bytes(int resident) {
    char text[128];
    read_proc("/proc/thread-self/statm", text, sizeof text);
    unsigned long pages[2] = {0, 0};
    CHECK(sscanf(text, "%lu %lu", &pages[0], &pages[1]) == 2);
    return pages[resident ? 1 : 0] * (size_t)sysconf(_SC_PAGESIZE);
}

/** One named case of a test program that runs one case per process. */
struct test_case {
    const char *name;
    void (*run)(void);
};

/** The case named by `prog CASE`. `prog list` prints every name and exits 0; anything
 *  else prints the usage and exits 2. */
static inline const struct test_case *select_case(const struct test_case *cases, size_t count, int argc,
                                                  char **argv) {
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < count; i++) printf("%s\n", cases[i].name);
        exit(0);
    }
    for (size_t i = 0; argc == 2 && i < count; i++)
        if (strcmp(cases[i].name, argv[1]) == 0) return &cases[i];
    fprintf(stderr, "usage: %s CASE | %s list\n", argv[0], argv[0]);
    exit(2);
}

/** Makes every call of system call `nr` by this thread, and by the threads it starts
 *  afterwards, fail with `error`, as a sandbox may: a seccomp filter (other
 *  architectures' calls pass). */
static inline void refuse_system_call(long nr, int error) {
#if defined(__x86_64__)
    const unsigned arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const unsigned arch = AUDIT_ARCH_AARCH64;
#endif
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)error),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {sizeof code / sizeof code[0], code};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHECKF(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0, "seccomp filter: errno %d", errno);
}

#endif
