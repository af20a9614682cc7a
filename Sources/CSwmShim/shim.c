// shim.c — storage for the TLS slot, the empty heap and the segment map, and the raw
// system calls. No allocator logic: see swm_shim.h.
#define _GNU_SOURCE
#include "swm_shim.h"
#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <link.h>
#include <poll.h>
#include <sys/auxv.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/// A zeroed page descriptor: its first word, the free list, is NULL. 256 bytes covers
/// the Swift `Page` layout (checked at start-up).
static _Alignas(64) void *swmshim_empty_page[32];

void *swmshim_empty_heap[SWM_DIRECT_SLOTS] = {[0 ... SWM_DIRECT_SLOTS - 1] = swmshim_empty_page};
void *swmshim_exited_heap[SWM_DIRECT_SLOTS] = {[0 ... SWM_DIRECT_SLOTS - 1] = swmshim_empty_page};

__thread void *swmshim_tls_heap __attribute__((tls_model("initial-exec"))) = swmshim_empty_heap;

__thread long swmshim_tls_locks __attribute__((tls_model("initial-exec"))) = 0;
__thread long swmshim_tls_fork_depth __attribute__((tls_model("initial-exec"))) = 0;
__thread long swmshim_tls_fork_held __attribute__((tls_model("initial-exec"))) = 0;
__thread long swmshim_tls_reaping __attribute__((tls_model("initial-exec"))) = 0;
void *swmshim_fork_locks[SWM_FORK_LOCKS_MAX];
long swmshim_fork_lock_count;

uint8_t swmshim_segment_map[SWM_SEGMENT_MAP_BYTES];
uint8_t swmshim_slot_table[SWM_SLOT_TABLE_ROWS];


_Alignas(64) unsigned char swmshim_globals_storage[SWM_GLOBALS_BYTES];

/* A system call made with the instruction itself, never through the C library's
 * `syscall()`: the allocator makes these under its own locks, and a preloaded library
 * may wrap any libc function, `syscall` included, with one that allocates; that malloc
 * would wait for ever on the lock its own thread holds (an outside review's `syscall`
 * hook hung start-up, malloc and free). Returns the kernel's result, -errno on failure;
 * errno is never touched. */
static inline long raw_syscall(long n, long a, long b, long c, long d, long e, long f) {
#if defined(__x86_64__)
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
#else
#error "shim.c: add this architecture's system-call instruction"
#endif
}

/* 0 for a raw result that succeeded, else the -errno it carries. */
static inline long raw_status(long r) { return (unsigned long)r > -4096UL ? r : 0; }

long swmshim_mmap(void *addr, size_t len, int prot, int flags, void **out) {
    long r = raw_syscall(SYS_mmap, (long)addr, (long)len, prot, flags, -1, 0);
    if (raw_status(r) != 0) { *out = NULL; return r; }
    *out = (void *)r;
    return 0;
}

long swmshim_mremap_fixed(void *old, size_t old_len, size_t new_len, void *target) {
    return raw_status(raw_syscall(SYS_mremap, (long)old, (long)old_len, (long)new_len,
                                  MREMAP_MAYMOVE | MREMAP_FIXED, (long)target, 0));
}

int swmshim_move_target_kept(void *target, size_t len) {
    /* Mapped again where it was free, it is the caller's once more. Where something is
     * mapped (EEXIST), it is the caller's reservation when all of the range is mapped
     * (mincore fails with ENOMEM on a hole): another thread's mapping would have to fill
     * exactly the hole the kernel left. Any other refusal means the range is free. */
    long r = raw_syscall(SYS_mmap, (long)target, (long)len, PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (raw_status(r) == 0) {
        if ((void *)r == target) return 1;
        raw_syscall(SYS_munmap, r, (long)len, 0, 0, 0, 0);   /* before 4.17: taken for a hint */
    } else if (r != -EEXIST) {
        return 0;
    }
    unsigned char vec[4096];
    const size_t chunk = sizeof vec * 4096;   /* pages of at least 4 KiB: vec holds a chunk's */
    for (size_t done = 0; done < len; done += chunk) {
        size_t n = len - done < chunk ? len - done : chunk;
        if (raw_status(raw_syscall(SYS_mincore, (long)target + (long)done, (long)n, (long)vec, 0, 0, 0)) != 0) return 0;
    }
    return 1;
}

long swmshim_mremap_inplace(void *old, size_t old_len, size_t new_len) {
    return raw_status(raw_syscall(SYS_mremap, (long)old, (long)old_len, (long)new_len, 0, 0, 0));
}

long swmshim_munmap(void *addr, size_t len) {
    return raw_status(raw_syscall(SYS_munmap, (long)addr, (long)len, 0, 0, 0, 0));
}

long swmshim_madvise(void *addr, size_t len, int advice) {
    return raw_status(raw_syscall(SYS_madvise, (long)addr, (long)len, advice, 0, 0, 0));
}

long swmshim_futex_wait(uint32_t *addr, uint32_t expected) {
    return raw_status(raw_syscall(SYS_futex, (long)addr, FUTEX_WAIT_PRIVATE, (long)expected, 0, 0, 0));
}

long swmshim_futex_wait_ns(uint32_t *addr, uint32_t expected, uint64_t timeout_ns) {
    struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
    return raw_status(raw_syscall(SYS_futex, (long)addr, FUTEX_WAIT_PRIVATE, (long)expected, (long)&ts, 0, 0));
}

long swmshim_futex_wake(uint32_t *addr, int count) {
    return raw_syscall(SYS_futex, (long)addr, FUTEX_WAKE_PRIVATE, count, 0, 0, 0);
}

// The errno of this thread's last `swmshim_write` that failed (which keeps errno itself).
static __thread int last_write_error __attribute__((tls_model("initial-exec")));

/* `swmshim_write_patience`'s setting for this thread (0: none), whether a report is being
 * written and whether it waits (`swmshim_report_writes`), and the descriptors (+ 1; 0: a
 * free slot) a report's write ran out of its wait for, or found full in a report that
 * does not wait, since: only those descriptors' later writes fail at once (review
 * R118: a fatal error's line to another descriptor, from a signal handler that
 * interrupted the report, was lost). A handler's own report to another descriptor takes
 * another slot (review R119: with one slot, it replaced the report's, which then wrote
 * on: a hole); past `GIVE_UP_SLOTS` descriptors, every later write fails at once. */
enum { GIVE_UP_SLOTS = 4 };
static __thread uint64_t write_patience_ns __attribute__((tls_model("initial-exec")));
static __thread int report_writes __attribute__((tls_model("initial-exec")));
static __thread int write_gave_up_on[GIVE_UP_SLOTS] __attribute__((tls_model("initial-exec")));
static __thread int write_gave_up_all __attribute__((tls_model("initial-exec")));

static void forget_given_up(void) {
    for (int i = 0; i < GIVE_UP_SLOTS; i++) write_gave_up_on[i] = 0;
    write_gave_up_all = 0;
}

static int given_up(int fd) {
    if (write_gave_up_all) return 1;
    for (int i = 0; i < GIVE_UP_SLOTS; i++)
        if (write_gave_up_on[i] == fd + 1) return 1;
    return 0;
}

static void give_up(int fd) {
    for (int i = 0; i < GIVE_UP_SLOTS; i++)
        if (write_gave_up_on[i] == 0) {
            write_gave_up_on[i] = fd + 1;
            return;
        }
    write_gave_up_all = 1;
}

void swmshim_write_patience(uint64_t nanoseconds) {
    write_patience_ns = nanoseconds;
    forget_given_up();
}

void swmshim_report_writes(int mode) {
    report_writes = mode;
    forget_given_up();
}

void swmshim_fatal_line_mode(int nested) {
    report_writes = !nested && report_writes == SWMSHIM_REPORT_WAITS ? SWMSHIM_REPORT_WAITS : SWMSHIM_REPORT_OFF;
    forget_given_up();
}

/* Waits at most `nanoseconds` for `fd` to take bytes; false when it did not (then every
 * later write to `fd` fails at once, until the patience or the report is set again). */
static int writable_in_time(int fd, uint64_t nanoseconds) {
    if (given_up(fd)) return 0;
    struct pollfd p = {fd, POLLOUT, 0};
    struct timespec wait = {(time_t)(nanoseconds / 1000000000u), (long)(nanoseconds % 1000000000u)};
    long r;
    do r = raw_syscall(SYS_ppoll, (long)&p, 1, (long)&wait, 0, 0, 0);
    while (r == -EINTR);
    if (r != 0) return 1;
    give_up(fd);
    return 0;
}

/* A signal handler installed without SA_RESTART interrupts a write to a slow reader (a
 * pipe): the report must go on, not lose that chunk. A raw system call: option warnings
 * are written under the start-up lock. */
static long write_uninterrupted(int fd, const void *buf, size_t len) {
    long r;
    do r = raw_syscall(SYS_write, fd, (long)buf, (long)len, 0, 0, 0);
    while (r == -EINTR);
    return r;
}

long swmshim_write(int fd, const void *buf, size_t len) {
    long r;
    if (write_patience_ns != 0) {
        if (!writable_in_time(fd, write_patience_ns)) {
            last_write_error = EAGAIN;
            return -1;
        }
        if (len > 4096) len = 4096;   /* what a pipe that polls writable takes without blocking */
    } else if (given_up(fd)) {
        last_write_error = EAGAIN;
        return -1;
    }
    r = write_uninterrupted(fd, buf, len);
    /* A report to a non-blocking descriptor that is full (a pipe its parent left
     * O_NONBLOCK, a slow reader): the write waits for room instead of dropping this chunk
     * while later ones went through, which left a hole in the middle of the report (review
     * R116: JSON from a signal report lost 600 KB between its first 64 KiB and its end). */
    while (r == -EAGAIN && report_writes == SWMSHIM_REPORT_WAITS && writable_in_time(fd, 1000000000u)) {
        if (len > 4096) len = 4096;
        r = write_uninterrupted(fd, buf, len);
    }
    /* A report that does not wait (malloc_stats) is cut short at its first chunk that
     * found the descriptor full: a later, smaller chunk that fitted went through after it,
     * a hole (review R122: malloc_stats into a pipe with 200 bytes of room wrote its last
     * two lines only). */
    if (r == -EAGAIN && report_writes != SWMSHIM_REPORT_OFF && !given_up(fd)) give_up(fd);
    if (r < 0) {
        last_write_error = (int)-r;
        return -1;
    }
    if (r == 0 && len > 0) last_write_error = EIO;
    return r;
}

int swmshim_last_write_error(void) { return last_write_error; }
void swmshim_clear_write_error(void) { last_write_error = 0; }

/// The kernel's own clock_gettime in the vDSO (NULL until `swmshim_platform_init`, or
/// when the vDSO has none: then the system call).
static int (*vdso_clock_gettime)(clockid_t, struct timespec *);

uint64_t swmshim_now_ns(void) {
    struct timespec ts;
    int (*gettime)(clockid_t, struct timespec *) = __atomic_load_n(&vdso_clock_gettime, __ATOMIC_RELAXED);
    if (!gettime || gettime(CLOCK_MONOTONIC, &ts) != 0)
        raw_syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts, 0, 0, 0, 0);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* String helpers of our own: start-up runs them under its lock, and the C library's
 * strlen and strcmp are interposable too. `no_builtin` keeps the compiler from turning
 * the loops back into calls to them. */
__attribute__((no_builtin)) static size_t text_length(const char *text) {
    size_t n = 0;
    while (text[n] != 0) n++;
    return n;
}

__attribute__((no_builtin)) static int text_equal(const char *a, const char *b) {
    size_t i = 0;
    while (a[i] != 0 && a[i] == b[i]) i++;
    return a[i] == b[i];
}

/* `entry` is `name=value`: the value, else NULL. */
__attribute__((no_builtin)) static const char *entry_value(const char *entry, const char *name, size_t length) {
    for (size_t i = 0; i < length; i++)
        if (entry[i] != name[i]) return NULL;
    return entry[length] == '=' ? entry + length + 1 : NULL;
}

/* The core's memset and memmove: the shared library's link binds the compiler's calls to
 * these (swmalloc-aliases.ld), so that no copy or clearing the core makes under a
 * lock of its own calls the C library's, which another preloaded library may wrap with
 * one that allocates (an outside review's memset hook hung a thread's exit). A thread
 * that holds no allocator lock and has its heap (calloc's clearing, realloc's copy) and
 * 128 bytes or more to do goes on to the C library's optimised routines, under their
 * fortify names (`__memset_chk`, `__memmove_chk`, unlimited), which the link does not
 * redirect, and which a preloaded library may wrap too: a thread still attaching its heap
 * does not (a wrapper's malloc there attached a second heap, review R30); else
 * 16-byte stores, four to a round, the last one overlapping, and from 2 KiB `rep stosb`
 * / `rep movsb`. `no_builtin` keeps the compiler from turning the loops back into calls. */
extern void *__memset_chk(void *dst, int c, size_t n, size_t dst_size);
extern void *__memmove_chk(void *dst, const void *src, size_t n, size_t dst_size);
/* Called through pointers: the compiler folds a direct call with an unlimited size back
 * into memset or memmove, which this link binds to the functions below (a loop). */
static void *(*const volatile libc_memset)(void *, int, size_t, size_t) = __memset_chk;
static void *(*const volatile libc_memmove)(void *, const void *, size_t, size_t) = __memmove_chk;

/* True when the C library's routines may be called: no allocator lock held, and the
 * thread has its heap (a wrapper that allocates finds it ready). */
static inline int may_call_out(void) {
    return swmshim_tls_locks == 0 && swmshim_tls_heap != (void *)swmshim_empty_heap
        && swmshim_tls_heap != (void *)swmshim_exited_heap;
}

typedef unsigned char swm_v16 __attribute__((vector_size(16), may_alias, aligned(1)));
typedef uint64_t swm_u64 __attribute__((may_alias, aligned(1)));
typedef uint32_t swm_u32 __attribute__((may_alias, aligned(1)));

__attribute__((no_builtin, visibility("hidden"))) void *swmshim_memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    unsigned char byte = (unsigned char)c;
    if (n >= 128 && may_call_out()) return libc_memset(dst, c, n, (size_t)-1);
#if defined(__x86_64__)
    if (n >= 2048) {
        __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(byte) : "memory");
        return dst;
    }
#endif
    if (n >= 16) {
        swm_v16 v;
        for (int i = 0; i < 16; i++) v[i] = byte;
        unsigned char *end = d + n;
        for (; d + 64 <= end; d += 64) {
            *(swm_v16 *)d = v;
            *(swm_v16 *)(d + 16) = v;
            *(swm_v16 *)(d + 32) = v;
            *(swm_v16 *)(d + 48) = v;
        }
        for (; d + 16 < end; d += 16) *(swm_v16 *)d = v;
        *(swm_v16 *)(end - 16) = v;
    } else if (n >= 8) {
        uint64_t w = byte * 0x0101010101010101ull;
        *(swm_u64 *)d = w;
        *(swm_u64 *)(d + n - 8) = w;
    } else if (n >= 4) {
        uint32_t w = byte * 0x01010101u;
        *(swm_u32 *)d = w;
        *(swm_u32 *)(d + n - 4) = w;
    } else {
        for (size_t i = 0; i < n; i++) d[i] = byte;
    }
    return dst;
}

__attribute__((no_builtin, visibility("hidden"))) void *swmshim_memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (n >= 128 && may_call_out()) return libc_memmove(dst, src, n, (size_t)-1);
    if (d + n <= s || s + n <= d) {
        // Apart (every copy the core makes between two blocks).
#if defined(__x86_64__)
        if (n >= 2048) {
            __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
            return dst;
        }
#endif
        if (n >= 16) {
            swm_v16 tail = *(const swm_v16 *)(s + n - 16);
            size_t i = 0;
            for (; i + 64 <= n; i += 64) {
                swm_v16 a = *(const swm_v16 *)(s + i), b = *(const swm_v16 *)(s + i + 16);
                swm_v16 c = *(const swm_v16 *)(s + i + 32), e = *(const swm_v16 *)(s + i + 48);
                *(swm_v16 *)(d + i) = a;
                *(swm_v16 *)(d + i + 16) = b;
                *(swm_v16 *)(d + i + 32) = c;
                *(swm_v16 *)(d + i + 48) = e;
            }
            for (; i + 16 < n; i += 16) *(swm_v16 *)(d + i) = *(const swm_v16 *)(s + i);
            *(swm_v16 *)(d + n - 16) = tail;
            return dst;
        }
        for (size_t i = 0; i < n; i++) d[i] = s[i];
    } else if (d < s) {
        for (size_t i = 0; i < n; i++) d[i] = s[i];
    } else {
        for (size_t i = n; i > 0; i--) d[i - 1] = s[i - 1];
    }
    return dst;
}

/* Reads the file at `path` (a /proc file) whole, up to `size` - 1 bytes, with raw system
 * calls (no allocation, no interposable libc call), and ends the text with a 0; returns
 * the bytes read, or -1 when it cannot be opened. */
static long read_proc_file(const char *path, char *text, size_t size) {
    long fd = raw_syscall(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
    if (raw_status(fd) != 0) return -1;
    size_t length = 0;
    while (length < size - 1) {
        long n = raw_syscall(SYS_read, fd, (long)(text + length), (long)(size - 1 - length), 0, 0, 0);
        if (n == -EINTR) continue;
        if (n <= 0) break;
        length += (size_t)n;
    }
    raw_syscall(SYS_close, fd, 0, 0, 0, 0, 0);
    text[length] = 0;
    return (long)length;
}

/* What start-up needs of the auxiliary vector (read by `read_auxv`, once). */
static uintptr_t auxv_vdso;   /* AT_SYSINFO_EHDR: the vDSO's address, 0 if unknown */
static int auxv_secure;       /* AT_SECURE, or, without /proc, whether the ids differ */

/* True when the process has a permitted capability that is not in its ambient set (or
 * the kernel will not say). */
static int has_exec_capabilities(void) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct caps[2] = {{0, 0, 0}, {0, 0, 0}};
    if (raw_syscall(SYS_capget, (long)&header, (long)caps, 0, 0, 0, 0) != 0) return 1;
    uint64_t permitted = (uint64_t)caps[1].permitted << 32 | caps[0].permitted;
    for (int cap = 0; cap < 64; cap++) {
        if (!(permitted >> cap & 1)) continue;
        if (raw_syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0, 0) != 1) return 1;
    }
    return 0;
}

/* Reads /proc/self/auxv with raw system calls (getauxval is interposable). Without it (no
 * /proc), the vDSO stays unknown (the clock is then a system call), and the program counts
 * as privileged when its real and effective user or group ids differ, or when it is not
 * root's and has capabilities. */
static void read_auxv(void) {
    /* Pairs of words up to AT_NULL's (a few dozen), and the 0 the reader ends with. */
    unsigned long pairs[2 * 64 + 1];
    long length = read_proc_file("/proc/self/auxv", (char *)pairs, sizeof pairs);
    if (length < 0) {
        // What the kernel's AT_SECURE says, guessed: set-user-ID or set-group-ID (the ids
        // differ), or file capabilities (a process other than root's with a permitted
        // capability that is not ambient: ambient ones, a service manager's, do not make
        // an exec secure, and file capabilities clear the ambient set).
        long euid = raw_syscall(SYS_geteuid, 0, 0, 0, 0, 0, 0);
        auxv_secure = raw_syscall(SYS_getuid, 0, 0, 0, 0, 0, 0) != euid
            || raw_syscall(SYS_getgid, 0, 0, 0, 0, 0, 0) != raw_syscall(SYS_getegid, 0, 0, 0, 0, 0, 0)
            || (euid != 0 && has_exec_capabilities());
        return;
    }
    for (long i = 0; (i + 1) * 2 * (long)sizeof(unsigned long) <= length && pairs[2 * i] != AT_NULL; i++) {
        if (pairs[2 * i] == AT_SYSINFO_EHDR) auxv_vdso = pairs[2 * i + 1];
        else if (pairs[2 * i] == AT_SECURE) auxv_secure = pairs[2 * i + 1] != 0;
    }
}

/* The address of the vDSO's function `name` (a defined function, by its ELF dynamic
 * symbol table, counted by DT_HASH), or NULL. The vDSO is the kernel's own shared object,
 * mapped into every process; the C library's clock_gettime calls the same function. */
static void *vdso_function(const char *name) {
    uintptr_t base = auxv_vdso;
    if (base == 0) return NULL;
    const ElfW(Ehdr) *header = (const ElfW(Ehdr) *)base;
    const ElfW(Phdr) *segments = (const ElfW(Phdr) *)(base + header->e_phoff);
    uintptr_t bias = 0;
    int loaded = 0;
    const ElfW(Dyn) *dynamic = NULL;
    for (int i = 0; i < header->e_phnum; i++) {
        if (segments[i].p_type == PT_LOAD && !loaded) {
            bias = base + segments[i].p_offset - segments[i].p_vaddr;
            loaded = 1;
        } else if (segments[i].p_type == PT_DYNAMIC) {
            dynamic = (const ElfW(Dyn) *)(base + segments[i].p_offset);
        }
    }
    if (!loaded || !dynamic) return NULL;
    const ElfW(Sym) *symbols = NULL;
    const char *names = NULL;
    const ElfW(Word) *hash = NULL;
    for (const ElfW(Dyn) *d = dynamic; d->d_tag != DT_NULL; d++) {
        if (d->d_tag == DT_SYMTAB) symbols = (const ElfW(Sym) *)(bias + d->d_un.d_ptr);
        else if (d->d_tag == DT_STRTAB) names = (const char *)(bias + d->d_un.d_ptr);
        else if (d->d_tag == DT_HASH) hash = (const ElfW(Word) *)(bias + d->d_un.d_ptr);
    }
    if (!symbols || !names || !hash) return NULL;
    // DT_HASH: nbucket, nchain, ...; nchain is the number of symbols.
    for (ElfW(Word) i = 0; i < hash[1]; i++) {
        const ElfW(Sym) *sym = &symbols[i];
        if (ELF64_ST_TYPE(sym->st_info) != STT_FUNC || sym->st_shndx == SHN_UNDEF) continue;
        if (text_equal(names + sym->st_name, name)) return (void *)(bias + sym->st_value);
    }
    return NULL;
}

void swmshim_set_errno(int value) { errno = value; }
int swmshim_get_errno(void) { return errno; }
/* The signal mask a fatal error's report found (`swmshim_fatal_signals_block`), and
 * whether it is saved. */
static __thread sigset_t fatal_saved_mask __attribute__((tls_model("initial-exec")));
static __thread int fatal_mask_saved __attribute__((tls_model("initial-exec")));

void swmshim_fatal_signals_block(void) {
    sigset_t all;
    sigfillset(&all);
    int saved = errno;
    if (fatal_mask_saved) {
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    } else {
        pthread_sigmask(SIG_BLOCK, &all, &fatal_saved_mask);
        fatal_mask_saved = 1;
    }
    errno = saved;
}

/* 1 while `swmshim_abort` puts the mask back: a handler that runs then (a signal that came
 * while it was blocked) is inside this thread's fatal report. */
static __thread int abort_unblocking __attribute__((tls_model("initial-exec")));

int swmshim_fatal_nested(void) { return abort_unblocking; }

_Noreturn void swmshim_abort(void) {
    if (fatal_mask_saved) {
        fatal_mask_saved = 0;
        abort_unblocking = 1;
        pthread_sigmask(SIG_SETMASK, &fatal_saved_mask, NULL);
        abort_unblocking = 0;
    }
    abort();
}

/* The environment the process started with (/proc/self/environ, read with raw system
 * calls), up to its first 256 KiB: an entry that does not fit whole is left out. */
static char start_environ[1 << 18];

/* `name`'s value in the environment the process started with, else NULL (also without
 * /proc). */
static const char *start_environ_value(const char *name, size_t length) {
    long got = read_proc_file("/proc/self/environ", start_environ, sizeof start_environ);
    if (got < 0) return NULL;
    size_t size = (size_t)got;
    for (size_t at = 0; at < size;) {
        size_t end = at + text_length(start_environ + at);
        if (end >= size) break;   /* cut at the buffer's end: not whole */
        const char *value = entry_value(start_environ + at, name, length);
        if (value) return value;
        at = end + 1;
    }
    return NULL;
}

/* glibc's count of its threads (`__nptl_nthreads`, the word libthread_db reads to list
 * threads; found by name, GLIBC_PRIVATE): the C library ends the process when it falls
 * to 0. Kernel counts include threads the C library does not wait for (io_uring's SQPOLL
 * thread, a thread made with a raw clone: review R98), so they are not used. Looked up
 * by the library's constructor (NULL: not found), not later: the main thread's end may
 * come in a fork child's handler (a fork made from a key destructor), where the loader's
 * lock that dlsym takes may be held for good by a thread the child does not have. */
static const unsigned int *glibc_threads;
/* The main thread's signal mask and name at its pthread_exit: the purger's, if it ends
 * as the last thread and the process's exit runs in it. */
static sigset_t main_mask;
static char main_name[16];

void swmshim_find_glibc_threads(void) {
    glibc_threads = dlsym(RTLD_DEFAULT, "__nptl_nthreads");
}

int swmshim_main_thread_ending(void) {
    if (!glibc_threads) return 0;
    pthread_sigmask(SIG_BLOCK, NULL, &main_mask);
    prctl(PR_GET_NAME, main_name, 0, 0, 0);
    return 1;
}

int swmshim_main_thread_unseen(void) {
    if (!glibc_threads) return 0;
    pthread_sigmask(SIG_BLOCK, NULL, &main_mask);
    char comm[sizeof main_name + 1];   /* up to 15 characters and a newline */
    long length = read_proc_file("/proc/self/comm", comm, sizeof comm);
    for (long i = 0; i < length && i < (long)sizeof main_name - 1 && comm[i] != '\n'; i++) main_name[i] = comm[i];
    return 1;
}

unsigned swmshim_glibc_threads(void) {
    /* Acquire: glibc's decrement is a read-modify-write with release order, so a thread's
     * own stores before it (swmalloc's count of its own threads) are seen after. */
    return glibc_threads ? __atomic_load_n(glibc_threads, __ATOMIC_ACQUIRE) : 0;
}

int swmshim_process_exiting(void) {
    return glibc_threads != NULL && __atomic_load_n(glibc_threads, __ATOMIC_ACQUIRE) == 0;
}

void swmshim_pause_100us(void) {
    struct timespec pause = {0, 100000};
    raw_syscall(SYS_nanosleep, (long)&pause, 0, 0, 0, 0, 0);
}

void swmshim_become_last_thread(void) {
    if (main_name[0]) prctl(PR_SET_NAME, main_name, 0, 0, 0);
    pthread_sigmask(SIG_SETMASK, &main_mask, NULL);
}

// As secure_getenv: a set-user-ID or set-group-ID program (AT_SECURE) ignores
// SWMALLOC_OPTIONS, as glibc ignores its own tunables and jemalloc MALLOC_CONF there (an
// unprivileged user could otherwise make it write reports to a descriptor, or install a
// signal handler). `environ` is read directly: this runs under the start-up lock, where a
// preloaded library's getenv that allocates would wait on that lock for ever.
//
// Before libc has set `environ` (a function of the program's `.preinit_array` runs ahead
// of libc's own initialisation, and its allocation is the first), the environment the
// process started with is read from /proc/self/environ: the options were lost for the
// whole run before (review R94: `verbose=1,stats_print=1` printed nothing).
const char *swmshim_getenv(const char *name) {
    if (auxv_secure) return NULL;
    size_t length = text_length(name);
    if (!environ) return start_environ_value(name, length);
    for (char **entry = environ; entry && *entry; entry++) {
        const char *value = entry_value(*entry, name, length);
        if (value) return value;
    }
    return NULL;
}

// A raw system call, as glibc's getpid is: an interposed getpid that allocates would
// wait on the start-up lock.
int swmshim_getpid(void) { return (int)raw_syscall(SYS_getpid, 0, 0, 0, 0, 0, 0); }

// 1 when vm.overcommit_memory is 2 (strict: every private writable mapping is charged
// to the system's CommitLimit, purged or not), read once at start-up.
static int strict_overcommit;

// Raw system calls, here and in swmshim_address_space_limited: both run under the
// allocator's locks (start-up's; a segment's retirement, under its heap's span lock),
// where a preloaded library's `open` or `getrlimit` that allocates would wait on that
// lock for ever (an outside review's `open` hook deadlocked `free`).
static void read_overcommit(void) {
    char text[4];
    strict_overcommit = read_proc_file("/proc/sys/vm/overcommit_memory", text, sizeof text) > 0 && text[0] == '2';
}

int swmshim_address_space_limited(void) {
    if (strict_overcommit) return 1;
    struct rlimit as, data;
    return (raw_syscall(SYS_prlimit64, 0, RLIMIT_AS, 0, (long)&as, 0, 0) == 0 && as.rlim_cur != RLIM_INFINITY)
        || (raw_syscall(SYS_prlimit64, 0, RLIMIT_DATA, 0, (long)&data, 0, 0) == 0 && data.rlim_cur != RLIM_INFINITY);
}

void swmshim_platform_init(void) {
    read_auxv();
    void *gettime = vdso_function("__vdso_clock_gettime");         /* x86-64 */
    if (!gettime) gettime = vdso_function("__kernel_clock_gettime"); /* arm64 */
    __atomic_store_n(&vdso_clock_gettime, (int (*)(clockid_t, struct timespec *))gettime, __ATOMIC_RELAXED);
    read_overcommit();
}

/* The thread-exit key, created at the first `swmshim_thread_key_set`, outside every
 * allocator lock (pthread_key_create is interposable, and start-up's lock is held while
 * options are read). One word says everything, so that a fork at any point leaves the
 * child a state it can read:
 *
 *     key_word = 0                     not created
 *              = key << 2 | 1          created (the key itself)
 *              = 2                     creation failed
 *              = (pid << 24 | tid) << 2 | 3   being created by that thread
 *
 * Only the thread whose token is in the word when pthread_key_create returns publishes
 * its key; a thread that finds the creator gone (another process's token: a fork child;
 * or a task that no longer exists) puts its own token in and creates one itself, and a
 * creator that lost its place deletes its key. So there is one key per process. Nobody
 * waits for a creator: a wrapped pthread_key_create may itself wait for a thread that
 * allocates (an outside review's wrapper joined one), so a thread whose heap is attached
 * while another creates the key goes on without registering it; if it ends, its heap is
 * given up by `reapDeadOwners` (at `swm_collect`, or when the live heaps pass the reaping
 * mark), as that of a thread that ended without its destructor. */
static void (*key_destructor)(void *);
enum { KEY_NONE = 0, KEY_FAILED = 2 };
static uint64_t key_word;

void swmshim_thread_key_init(void (*destructor)(void *)) { key_destructor = destructor; }

static inline int key_created(uint64_t word) { return (word & 3) == 1; }

/* The creator named by `word` is not there to finish: in another process, or gone. */
static int key_creator_gone(uint64_t word, int pid) {
    int creator_pid = (int)(word >> 26);
    int creator_tid = (int)(word >> 2 & 0xffffff);
    return creator_pid != pid || swmshim_task_gone(pid, creator_tid);
}

/* The creating thread's part (`token` was put in key_word): creates a key and publishes
 * it if the word still holds `token`; else deletes it. Returns the word. */
static uint64_t create_key(uint64_t token) {
    pthread_key_t key;
    int saved = errno;
    int ok = pthread_key_create(&key, key_destructor) == 0;
    uint64_t expected = token;
    uint64_t outcome = ok ? (uint64_t)key << 2 | 1 : KEY_FAILED;
    if (__atomic_compare_exchange_n(&key_word, &expected, outcome, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        errno = saved;
        return outcome;
    }
    if (ok) pthread_key_delete(key);
    errno = saved;
    return expected;
}

/* The key word when the key exists (or failed); KEY_NONE while a live thread creates it,
 * this one included (re-entered by a wrapped pthread_key_create that allocates). */
static uint64_t key_ready(void) {
    uint64_t word = __atomic_load_n(&key_word, __ATOMIC_ACQUIRE);
    if (key_created(word) || word == KEY_FAILED) return word;
    // pid and tid fit 24 bits each: the kernel's pid_max is at most 2^22.
    int pid = swmshim_getpid();
    uint64_t tid = (uint64_t)swmshim_gettid();
    uint64_t me = (((uint64_t)pid << 24 | tid) << 2) | 3;
    while (!key_created(word) && word != KEY_FAILED) {
        if (word != KEY_NONE && (word == me || !key_creator_gone(word, pid))) return KEY_NONE;
        if (__atomic_compare_exchange_n(&key_word, &word, me, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            word = create_key(me);
    }
    return word;
}

void swmshim_thread_key_set(void *heap) {
    uint64_t word = key_ready();
    if (!key_created(word)) return;
    int saved = errno;
    pthread_setspecific((pthread_key_t)(word >> 2), heap);
    errno = saved;
}

int swmshim_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
    int saved = errno;
    int r = pthread_atfork(prepare, parent, child);
    errno = saved;
    return r;
}

int swmshim_cancel_disable(void) {
    int saved = errno, old = PTHREAD_CANCEL_ENABLE;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    errno = saved;
    return old;
}

void swmshim_cancel_restore(int state) {
    int saved = errno;
    pthread_setcancelstate(state, NULL);
    errno = saved;
}

int swmshim_sigpipe_block(void) {
    int saved = errno;
    sigset_t pipe, old, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    sigpending(&pending);
    errno = saved;
    return (sigismember(&old, SIGPIPE) ? 1 : 0) | (sigismember(&pending, SIGPIPE) ? 2 : 0);
}

void swmshim_sigpipe_restore(int state) {
    int saved = errno;
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    if (!(state & 2) && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe, NULL, &zero);
    }
    if (!(state & 1)) pthread_sigmask(SIG_UNBLOCK, &pipe, NULL);
    errno = saved;
}

int swmshim_atexit(void (*fn)(void)) {
    int saved = errno;
    int r = atexit(fn);
    errno = saved;
    return r;
}

/// The duplicate of the reports' descriptor (-1: none) and the file it refers to.
static int report_fd = -1;
static int report_known;   /* the file stats_fd named at start-up: report_dev, report_ino */
static dev_t report_dev;
static ino_t report_ino;

void swmshim_report_fd_keep(int fd, unsigned long pipe_inode) {
    int saved = errno;
    struct stat st;
    // With `pipe_inode` (stats_fd_inode, which `swmalloc stats` sets): only that pipe. The
    // options reach the program's children too, and a child of a shell that opened a file
    // of its own on that number (`exec 4>>app.log`) wrote its report into that file.
    if (fstat(fd, &st) == 0 && (pipe_inode == 0 || (S_ISFIFO(st.st_mode) && st.st_ino == pipe_inode))) {
        report_dev = st.st_dev;
        report_ino = st.st_ino;
        report_known = 1;
        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 100);
        if (copy >= 0) report_fd = copy;
    }
    errno = saved;
}

/* True when `fd` is open on the file stats_fd named at start-up. */
static int report_file_is(int fd) {
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == report_dev && st.st_ino == report_ino;
}

int swmshim_report_fd(int fd) {
    int saved = errno;
    int out = -1;
    // Only the file stats_fd named at start-up: through its number while that still
    // names it, else through the duplicate. A program may close the number and open a
    // file of its own on it (or find it closed at start, and open one there): a report
    // written there went into that file.
    if (report_known) {
        if (report_file_is(fd)) out = fd;
        else if (report_file_is(report_fd)) out = report_fd;
    }
    errno = saved;
    return out;
}

int swmshim_report_lock(int fd) {
    int saved = errno;
    struct stat st;
    int locked = 0;
    // Only a pipe: processes that share it (`swmalloc stats -- make -j2`: every process
    // writes its report line at exit) exclude each other with a record lock, which is the
    // process's (children sharing the descriptor are excluded too, unlike flock). A file or
    // terminal is left alone: the program may lock it itself, and unlocking would drop that.
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
        struct flock lock = {0};
        lock.l_type = F_WRLCK;
        lock.l_whence = SEEK_SET;
        // At most about 2 s: a process stopped in its report must not hold the others.
        for (int i = 0; i < 2000 && !locked; i++) {
            if (fcntl(fd, F_SETLK, &lock) == 0) locked = 1;
            else if (errno != EAGAIN && errno != EACCES && errno != EINTR) break;
            else {
                struct timespec pause = {0, 1000000};
                nanosleep(&pause, NULL);
            }
        }
    }
    errno = saved;
    return locked;
}

void swmshim_report_unlock(int fd) {
    int saved = errno;
    struct flock lock = {0};
    lock.l_type = F_UNLCK;
    lock.l_whence = SEEK_SET;
    fcntl(fd, F_SETLK, &lock);
    errno = saved;
}

// A fork child lets the duplicate go: a daemon's child that points 0, 1 and 2 at
// /dev/null would otherwise keep its caller's pipe open through it, and whoever reads
// that pipe to its end (`out=$(daemon --fork)`) would wait for the daemon to exit.
void swmshim_report_fd_forget(void) {
    if (report_fd < 0) return;
    int saved = errno;
    close(report_fd);
    report_fd = -1;
    errno = saved;
}

int swmshim_signal_usable(int signo) {
    // SIGKILL and SIGSTOP cannot be caught; 32 and 33 (below SIGRTMIN) are glibc's own
    // (thread cancellation, set*id broadcast). A fault (SIGILL, SIGTRAP, SIGBUS, SIGFPE,
    // SIGSEGV, SIGSYS) is not a request: a handler that returns runs the faulting
    // instruction again, for ever, and a crash would become a loop of reports.
    if (signo < 1 || signo > 64 || signo == SIGKILL || signo == SIGSTOP) return 0;
    if (signo == SIGILL || signo == SIGTRAP || signo == SIGBUS || signo == SIGFPE || signo == SIGSEGV
        || signo == SIGSYS) return 0;
    // glibc's SIGRTMIN is 34, read through a libc call (this runs under the start-up lock).
    return signo < 32 || signo >= 34;
}

int swmshim_signal(int signo, void (*handler)(int)) {
    int saved = errno;
    struct sigaction sa = {0};
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    int r = sigaction(signo, &sa, NULL);
    errno = saved;
    return r;
}

/* A start of one of swmalloc's threads, one record per kind (`swm_thread_kind`): a
 * kind's state admits one start at a time (its compare-and-swap). */
struct own_start {
    void *(*body)(void *);
    unsigned long *counter;
    const unsigned long *epoch;   /* swmalloc's count of fork children (`Globals.forkEpoch`) */
};
static struct own_start own_starts[SWM_THREAD_KINDS];

/* Every thread of swmalloc's begins here. `arg` is its kind and the fork epoch its
 * creator read after claiming the kind's state, by value. A thread that finds another
 * epoch was made in a fork child that reset that state after the claim (a fork from a
 * signal handler in its creator, before the clone, whose copy of pthread_create made the
 * thread in the child: review R105). Its creator there does not count it, so it counts
 * itself, and its body is told (`body(1)`: it must claim the state itself, and end if
 * another start took it meanwhile). */
static void *own_thread_main(void *arg) {
    uintptr_t value = (uintptr_t)arg;
    struct own_start *start = &own_starts[value & 1];
    void *(*body)(void *) = start->body;
    int forked = (value >> 1) != (__atomic_load_n(start->epoch, __ATOMIC_SEQ_CST) & (UINTPTR_MAX >> 1));
    if (forked) __atomic_add_fetch(start->counter, 1, __ATOMIC_SEQ_CST);
    return body(forked ? (void *)1 : NULL);
}

/* 1 while this thread is inside swmshim_thread_start: a start from a signal handler
 * that interrupted it is refused (EAGAIN; the kind's start is tried again later). It
 * would wait for a lock of glibc's pthread_create that the interrupted start holds, for
 * good (R105's nested starts: 1 child in 300 hung so). */
static __thread int thread_start_depth __attribute__((tls_model("initial-exec")));

/* The attributes every thread of swmalloc's starts with (detached, every signal
 * blocked), set up once and kept: 0 not set up, 1 being set up, 2 ready. Their signal
 * mask lives in an extension glibc allocates; set up and destroyed at each start, that
 * was a malloc and a free of swmalloc's own that the statistics saw (`allocated` fell by
 * 160 bytes, once, in a program that frees nothing:
 * RegressionTests.statsCountExitingThreadsOnce). */
static pthread_attr_t start_attr;
static int start_attr_state;

static pthread_attr_t *thread_start_attr(void) {
    if (__atomic_load_n(&start_attr_state, __ATOMIC_ACQUIRE) == 2) return &start_attr;
    int expected = 0;
    // Another thread setting them up: this start fails, and is tried again later.
    if (!__atomic_compare_exchange_n(&start_attr_state, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return NULL;
    sigset_t all;
    sigfillset(&all);
    pthread_attr_init(&start_attr);
    pthread_attr_setdetachstate(&start_attr, PTHREAD_CREATE_DETACHED);
    // It allocates the attribute's extension: refused (ENOMEM), no thread, rather than
    // one that could run the program's handlers.
    if (pthread_attr_setsigmask_np(&start_attr, &all) != 0) {
        pthread_attr_destroy(&start_attr);
        __atomic_store_n(&start_attr_state, 0, __ATOMIC_RELEASE);
        return NULL;
    }
    __atomic_store_n(&start_attr_state, 2, __ATOMIC_RELEASE);
    return &start_attr;
}

int swmshim_thread_start(int kind, void *(*body)(void *), const char *name, unsigned long *counter,
                         const unsigned long *epoch_word, unsigned long epoch) {
    int saved = errno;
    // The thread starts with every signal blocked, so that it never runs a program's
    // handler, and is detached: nobody joins it. Its mask is set through the attributes,
    // not by blocking the caller's signals around pthread_create: a signal handler that
    // allocates while its thread is inside glibc's pthread_create, pthread_join or thread
    // exit (which hold the loader's stack-cache lock) waits here for that lock for good,
    // and with the caller's signals blocked not even SIGTERM or Ctrl-C ended the process
    // (review R80; docs/design.md, "The background purger").
    if (thread_start_depth) {
        errno = saved;
        return EAGAIN;
    }
    pthread_attr_t *attr = thread_start_attr();
    if (!attr) {
        errno = saved;
        return EAGAIN;
    }
    thread_start_depth = 1;
    struct own_start *start = &own_starts[kind & 1];
    start->body = body;
    start->counter = counter;
    start->epoch = epoch_word;
    // The default stack size: a smaller one fails (EINVAL) in a program whose static TLS
    // does not fit it, and untouched stack pages cost address space only.
    pthread_t thread;
    uintptr_t arg = ((uintptr_t)epoch << 1) | (uintptr_t)(kind & 1);
    int r = pthread_create(&thread, attr, own_thread_main, (void *)arg);
    if (r == 0) pthread_setname_np(thread, name);
    // Counted once pthread_create returned (glibc counted the thread inside it: review
    // R103, a last thread that had just started the purger must find it counted), unless
    // a fork came since the caller's claim (the epoch moved): this is then a fork child,
    // which has the thread only if the fork came before the clone, and then the thread
    // counts itself (`own_thread_main`; review R104: counted here, the thread absent,
    // every thread exit in the child waited 2 s). Every signal is blocked from the test
    // to the add, so that no fork from a handler comes between them. (No wait for the
    // thread: one whose start the program's own pthread_create wrapper delays, on a lock
    // the caller holds, would stall the caller: review R107.)
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (r == 0 && __atomic_load_n(epoch_word, __ATOMIC_SEQ_CST) == epoch) __atomic_add_fetch(counter, 1, __ATOMIC_SEQ_CST);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    thread_start_depth = 0;
    errno = saved;
    return r;
}

void swmshim_thread_start_forget(void) {
    // Forked while another thread set the attributes up: that thread is not here to end it.
    if (start_attr_state == 1) start_attr_state = 0;
}

int swmshim_gettid(void) { return (int)raw_syscall(SYS_gettid, 0, 0, 0, 0, 0, 0); }

int swmshim_task_gone(int pid, int tid) {
    if (raw_syscall(SYS_tgkill, pid, tid, 0, 0, 0, 0) != -ESRCH) return 0;
    /* A sandbox that answers every tgkill with ESRCH (a seccomp filter, an emulation
     * layer) would have every live thread taken for gone, and its heap given away while
     * it runs (an outside review, R35): the answer counts only when the calling thread,
     * which exists, is found. */
    return raw_syscall(SYS_tgkill, swmshim_getpid(), swmshim_gettid(), 0, 0, 0, 0) == 0;
}
