// shim.c — storage for the TLS slot, the empty heap and the segment map, and the raw
// system calls. No allocator logic: see swm_shim.h.
#define _GNU_SOURCE
#include "swm_shim.h"
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <link.h>
#include <string.h>
#include <sys/auxv.h>
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
void *swmshim_fork_locks[SWM_FORK_LOCKS_MAX];
long swmshim_fork_lock_count;

uint8_t swmshim_segment_map[SWM_SEGMENT_MAP_BYTES];
uint8_t swmshim_slot_table[SWM_SLOT_TABLE_ROWS];

static pthread_key_t swmshim_key;

_Alignas(64) unsigned char swmshim_globals_storage[SWM_GLOBALS_BYTES];

long swmshim_mmap(void *addr, size_t len, int prot, int flags, void **out) {
    // syscall() is variadic: every argument is passed as a long, so the descriptor and
    // the offset must be longs too (an int would leave the upper half undefined).
    int saved = errno;
    long r = syscall(SYS_mmap, addr, len, (long)prot, (long)flags, (long)-1, (long)0);
    if (r < 0) { r = -errno; errno = saved; *out = NULL; return r; }
    *out = (void *)r;
    return 0;
}

long swmshim_mremap_fixed(void *old, size_t old_len, size_t new_len, void *target) {
    int saved = errno;
    long r = syscall(SYS_mremap, old, old_len, new_len, (long)(MREMAP_MAYMOVE | MREMAP_FIXED), target);
    r = r < 0 ? -errno : 0;
    errno = saved;
    return r;
}

long swmshim_mremap_inplace(void *old, size_t old_len, size_t new_len) {
    int saved = errno;
    long r = syscall(SYS_mremap, old, old_len, new_len, 0L);
    r = r < 0 ? -errno : 0;
    errno = saved;
    return r;
}

long swmshim_munmap(void *addr, size_t len) {
    int saved = errno;
    long r = syscall(SYS_munmap, addr, len) < 0 ? -errno : 0;
    errno = saved;
    return r;
}

long swmshim_madvise(void *addr, size_t len, int advice) {
    int saved = errno;
    long r = syscall(SYS_madvise, addr, len, (long)advice) < 0 ? -errno : 0;
    errno = saved;
    return r;
}

long swmshim_futex_wait(uint32_t *addr, uint32_t expected) {
    int saved = errno;
    long r = syscall(SYS_futex, addr, (long)FUTEX_WAIT_PRIVATE, (long)expected, NULL, NULL, (long)0) < 0 ? -errno : 0;
    errno = saved;
    return r;
}

long swmshim_futex_wait_ns(uint32_t *addr, uint32_t expected, uint64_t timeout_ns) {
    int saved = errno;
    struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
    long r = syscall(SYS_futex, addr, (long)FUTEX_WAIT_PRIVATE, (long)expected, &ts, NULL, (long)0) < 0 ? -errno : 0;
    errno = saved;
    return r;
}

long swmshim_futex_wake(uint32_t *addr, int count) {
    int saved = errno;
    long r = syscall(SYS_futex, addr, (long)FUTEX_WAKE_PRIVATE, (long)count, NULL, NULL, (long)0);
    errno = saved;
    return r;
}

// The errno of this thread's last `swmshim_write` that failed (which keeps errno itself).
static __thread int last_write_error __attribute__((tls_model("initial-exec")));

long swmshim_write(int fd, const void *buf, size_t len) {
    int saved = errno;
    long r;
    /* A signal handler installed without SA_RESTART interrupts a write to a slow reader
     * (a pipe): the report must go on, not lose that chunk. */
    do r = write(fd, buf, len);
    while (r < 0 && errno == EINTR);
    if (r < 0) last_write_error = errno;
    else if (r == 0 && len > 0) last_write_error = EIO;
    errno = saved;
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
    if (!gettime || gettime(CLOCK_MONOTONIC, &ts) != 0) syscall(SYS_clock_gettime, (long)CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The address of the vDSO's function `name` (a defined function, by its ELF dynamic
 * symbol table, counted by DT_HASH), or NULL. The vDSO is the kernel's own shared object,
 * mapped into every process; the C library's clock_gettime calls the same function. */
static void *vdso_function(const char *name) {
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
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
        if (strcmp(names + sym->st_name, name) == 0) return (void *)(bias + sym->st_value);
    }
    return NULL;
}

void swmshim_set_errno(int value) { errno = value; }
int swmshim_get_errno(void) { return errno; }
_Noreturn void swmshim_abort(void) { abort(); }
// As secure_getenv: a set-user-ID or set-group-ID program (AT_SECURE) ignores
// SWMALLOC_OPTIONS, as glibc ignores its own tunables and jemalloc MALLOC_CONF there (an
// unprivileged user could otherwise make it write reports to a descriptor, or install a
// signal handler). `environ` is read directly: this runs under the start-up lock, where a
// preloaded library's getenv that allocates would wait on that lock for ever.
const char *swmshim_getenv(const char *name) {
    if (getauxval(AT_SECURE)) return NULL;
    size_t length = strlen(name);
    for (char **entry = environ; entry && *entry; entry++) {
        if (strncmp(*entry, name, length) == 0 && (*entry)[length] == '=') return *entry + length + 1;
    }
    return NULL;
}

// A raw system call, as glibc's getpid is: an interposed getpid that allocates would
// wait on the start-up lock.
int swmshim_getpid(void) { return (int)syscall(SYS_getpid); }

// 1 when vm.overcommit_memory is 2 (strict: every private writable mapping is charged
// to the system's CommitLimit, purged or not), read once at start-up.
static int strict_overcommit;

// Raw system calls, here and in swmshim_address_space_limited: both run under the
// allocator's locks (start-up's; a segment's retirement, under its heap's span lock),
// where a preloaded library's `open` or `getrlimit` that allocates would wait on that
// lock for ever (an outside review's `open` hook deadlocked `free`).
static void read_overcommit(void) {
    int strict = 0;
    long fd = syscall(SYS_openat, AT_FDCWD, "/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char c = 0;
        if (syscall(SYS_read, fd, &c, 1) == 1 && c == '2') strict = 1;
        syscall(SYS_close, fd);
    }
    strict_overcommit = strict;
}

int swmshim_address_space_limited(void) {
    if (strict_overcommit) return 1;
    int saved = errno;
    struct rlimit as, data;
    int limited = (syscall(SYS_prlimit64, 0, RLIMIT_AS, NULL, &as) == 0 && as.rlim_cur != RLIM_INFINITY)
        || (syscall(SYS_prlimit64, 0, RLIMIT_DATA, NULL, &data) == 0 && data.rlim_cur != RLIM_INFINITY);
    errno = saved;
    return limited;
}

void swmshim_platform_init(void) {
    int saved = errno;
    void *gettime = vdso_function("__vdso_clock_gettime");         /* x86-64 */
    if (!gettime) gettime = vdso_function("__kernel_clock_gettime"); /* arm64 */
    __atomic_store_n(&vdso_clock_gettime, (int (*)(clockid_t, struct timespec *))gettime, __ATOMIC_RELAXED);
    read_overcommit();
    errno = saved;
}

int swmshim_thread_key_create(void (*destructor)(void *)) {
    int saved = errno;
    int r = pthread_key_create(&swmshim_key, destructor);
    errno = saved;
    return r;
}

void swmshim_thread_key_set(void *heap) {
    int saved = errno;
    pthread_setspecific(swmshim_key, heap);
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
    return signo < 32 || signo >= SIGRTMIN;
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

int swmshim_thread_start(void *(*body)(void *), const char *name) {
    int saved = errno;
    // The thread blocks every signal, so that it never runs a program's handler, and is
    // detached: nobody joins it.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // The default stack size: a smaller one fails (EINVAL) in a program whose static TLS
    // does not fit it, and untouched stack pages cost address space only.
    pthread_t thread;
    int r = pthread_create(&thread, &attr, body, NULL);
    if (r == 0) pthread_setname_np(thread, name);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return r;
}

int swmshim_gettid(void) { return (int)syscall(SYS_gettid); }

int swmshim_task_gone(int pid, int tid) {
    int saved = errno;
    int gone = syscall(SYS_tgkill, pid, tid, 0) != 0 && errno == ESRCH;
    errno = saved;
    return gone;
}
