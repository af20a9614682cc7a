/// swm_shim.h — the only C in swmalloc's core: thread-local storage, raw system calls,
/// pthread registration and constants. All allocator logic lives in Swift.
///
/// Every name is prefixed `swmshim_`/`SWM_` so that nothing collides with a host program.
#ifndef SWM_SHIM_H
#define SWM_SHIM_H

#include <stddef.h>
#include <stdint.h>

/// Number of small size classes; the Swift size-class table is checked against it.
#define SWM_CLASS_COUNT 88
/// Direct page slots in a heap (see the Swift `SizeClass.slot`): 65 by size up to 1 KiB,
/// 56 for the classes above, one that is always empty.
#define SWM_DIRECT_SLOTS 122

/// Direct slots of sizes 1025 … 128 KiB by (size − 1) / 128 (filled in at start-up by the
/// Swift `SizeClass.fillSlotTable`; before that every entry is 0, a slot that is empty in
/// the only heap a thread can have then).
#define SWM_SLOT_TABLE_ROWS 1024
extern uint8_t swmshim_slot_table[SWM_SLOT_TABLE_ROWS] __attribute__((visibility("hidden")));
static inline uint8_t *swmshim_slot_table_base(void) { return swmshim_slot_table; }

/// The heap every thread starts with: `SWM_DIRECT_SLOTS` pointers, all to one empty page
/// whose free list is NULL. Reading a size class's page from it always finds "no free
/// block", so "thread has no heap yet" and "page is empty" are the same single test on
/// malloc's fast path.
extern void *swmshim_empty_heap[SWM_DIRECT_SLOTS] __attribute__((visibility("hidden")));

/// The current thread's heap, initial-exec TLS: one %fs-relative load.
/// It initially points at `swmshim_empty_heap`.
extern __thread void *swmshim_tls_heap __attribute__((tls_model("initial-exec"), visibility("hidden")));

/// The heap of a thread whose heap was detached at its exit (pthread key destructors ran):
/// the same empty direct table as `swmshim_empty_heap` at another address, so that a late
/// call (glibc's `__libc_thread_freeres`, a destructor of the last round) takes the slow
/// path and is served without attaching a heap that nothing would ever detach.
extern void *swmshim_exited_heap[SWM_DIRECT_SLOTS] __attribute__((visibility("hidden")));

/// Per-thread fork state (initial-exec TLS, like the heap slot): allocator locks the
/// thread holds, forks of the thread in progress (more than one when a signal handler
/// forked inside a fork), and whether the outermost one holds the fork guard and every
/// allocator lock. See `Process.forkPrepare`.
extern __thread long swmshim_tls_locks __attribute__((tls_model("initial-exec"), visibility("hidden")));
extern __thread long swmshim_tls_fork_depth __attribute__((tls_model("initial-exec"), visibility("hidden")));
extern __thread long swmshim_tls_fork_held __attribute__((tls_model("initial-exec"), visibility("hidden")));
static inline long *swmshim_locks_held(void) { return &swmshim_tls_locks; }
static inline long *swmshim_fork_depth(void) { return &swmshim_tls_fork_depth; }
static inline long *swmshim_fork_held(void) { return &swmshim_tls_fork_held; }

/// Per-thread: nonzero while the thread gives up dead threads' heaps (`Heap.reapDeadOwners`),
/// so that a fork child knows whether the reaper it inherited goes on in it.
extern __thread long swmshim_tls_reaping __attribute__((tls_model("initial-exec"), visibility("hidden")));
static inline long *swmshim_reaping(void) { return &swmshim_tls_reaping; }

/// The lock words the fork in progress holds (`FutexLock.lockForFork`), written only by
/// the thread that holds the fork guard. While that thread is between the fork handlers,
/// its own use of one of these locks (a fork handler registered before swmalloc's that
/// allocates) passes through instead of waiting for itself.
#define SWM_FORK_LOCKS_MAX 16
extern void *swmshim_fork_locks[SWM_FORK_LOCKS_MAX] __attribute__((visibility("hidden")));
extern long swmshim_fork_lock_count __attribute__((visibility("hidden")));
static inline void **swmshim_fork_lock_list(void) { return swmshim_fork_locks; }
static inline long *swmshim_fork_lock_counter(void) { return &swmshim_fork_lock_count; }

static inline void *swmshim_heap_get(void) { return swmshim_tls_heap; }
static inline void swmshim_heap_set(void *heap) { swmshim_tls_heap = heap; }
static inline void *swmshim_empty_heap_address(void) { return (void *)swmshim_empty_heap; }
static inline void *swmshim_exited_heap_address(void) { return (void *)swmshim_exited_heap; }

/// Asks the CPU to bring the cache line at `p` in (one instruction, never faults, NULL
/// included): malloc's pop prefetches the block it will hand out next.
static inline void swmshim_prefetch(const void *p) { __builtin_prefetch(p); }

/// The address `bits`, known not to be NULL: a non-optional pointer in Swift, whose
/// optional initialiser from a bit pattern makes free's fast path test the value for zero.
__attribute__((returns_nonnull)) static inline void *swmshim_address(uintptr_t bits) { return (void *)bits; }

/// One byte per 4 MiB of the 47-bit user address space: non-zero where a swmalloc segment
/// starts. 2^25 bytes (32 MiB) of zero-filled .bss: address space only, the pages free
/// reads are the kernel's shared zero page until a segment is mapped in their range.
#define SWM_SEGMENT_MAP_BYTES (1u << 25)
extern uint8_t swmshim_segment_map[SWM_SEGMENT_MAP_BYTES] __attribute__((visibility("hidden")));
static inline uint8_t *swmshim_segment_map_base(void) { return swmshim_segment_map; }

/// Zero-filled, 64-byte aligned storage for the allocator's process-wide state (the
/// Swift `Globals` layout lives in it; its size is checked at start-up). Static storage
/// needs no initialisation order: it is valid before the first malloc.
#define SWM_GLOBALS_BYTES 16384
extern unsigned char swmshim_globals_storage[SWM_GLOBALS_BYTES] __attribute__((visibility("hidden")));
/// Its address: inline, so that reaching a global costs an address computation, not a call.
static inline void *swmshim_globals(void) { return swmshim_globals_storage; }

// ---- system calls (raw, no errno side effects: the result is -errno on failure) ----
// Every function of this shim leaves errno as it found it unless its comment says so: a
// successful malloc must not change errno.
long swmshim_mmap(void *addr, size_t len, int prot, int flags, void **out);
long swmshim_munmap(void *addr, size_t len);
/// Moves the mapping at `old` (`old_len` bytes) to `target`, replacing what is mapped
/// there, and resizes it to `new_len`: its pages move without being copied or faulted.
long swmshim_mremap_fixed(void *old, size_t old_len, size_t new_len, void *target);
/// After `swmshim_mremap_fixed` to `target` (`len` bytes, inside a range the caller
/// mapped to reserve it) failed: 1 when `[target, target + len)` is still the caller's,
/// to unmap; 0 when it is not all mapped (the kernel unmapped it before failing, and
/// another thread's mapping may lie there now), to leave alone. Linux before 6.16
/// unmaps an `MREMAP_FIXED` target before its last checks (`RLIMIT_AS` lowered
/// meanwhile, `vm.max_map_count`, kernel memory), so unmapping the whole reservation
/// after a failure could unmap another thread's mapping (review R75).
int swmshim_move_target_kept(void *target, size_t len);
/// Grows the mapping at `old` (`old_len` bytes) to `new_len` where it is; fails (ENOMEM)
/// when the range after it is not free.
long swmshim_mremap_inplace(void *old, size_t old_len, size_t new_len);
long swmshim_madvise(void *addr, size_t len, int advice);
long swmshim_futex_wait(uint32_t *addr, uint32_t expected);
/// Like `swmshim_futex_wait`, but returns -ETIMEDOUT after `timeout_ns` (relative).
long swmshim_futex_wait_ns(uint32_t *addr, uint32_t expected, uint64_t timeout_ns);
long swmshim_futex_wake(uint32_t *addr, int count);
long swmshim_write(int fd, const void *buf, size_t len);
/// From now on, this thread's `swmshim_write` waits at most `nanoseconds` for a
/// descriptor to take bytes (a pipe nobody reads: the report at exit would wait for ever),
/// writes at most 4 KiB at a time, and once a wait ran out fails at once (EAGAIN) for that
/// descriptor; 0: no limit again.
void swmshim_write_patience(uint64_t nanoseconds);
/// How this thread's `swmshim_write` treats a non-blocking descriptor that is full
/// (EAGAIN), set by `swmshim_report_writes`.
enum {
    /// Not in a report: the write fails (EAGAIN).
    SWMSHIM_REPORT_OFF = 0,
    /// In a report (`Stats.serialized`): it waits for the descriptor to take bytes, at most
    /// a second a write, instead of failing; once a wait ran out, every later write of the
    /// report to that descriptor fails at once, so the report is cut short, never left with
    /// a hole.
    SWMSHIM_REPORT_WAITS = 1,
    /// In a report that does not wait (`malloc_stats`, as glibc's): the first write that
    /// finds it full fails, and every later write of the report to it fails at once.
    SWMSHIM_REPORT_CUT = 2,
};
/// Sets this thread's `SWMSHIM_REPORT_…` mode; also forgets the descriptors given up on.
void swmshim_report_writes(int mode);
/// For a fatal error's line: this thread's writes keep waiting for room when the error
/// came inside its own report that waits (`SWMSHIM_REPORT_WAITS`: a signal handler's
/// misuse) and is not `nested` in another fatal error's report; else they do not wait.
/// Also forgets the descriptors given up on.
void swmshim_fatal_line_mode(int nested);
/// The errno of the calling thread's last `swmshim_write` that failed (EIO for a write
/// of nothing; 0: none did since `swmshim_clear_write_error`).
int swmshim_last_write_error(void);
void swmshim_clear_write_error(void);
/// Monotonic clock in nanoseconds: the vDSO's function, called directly (no system call
/// on x86-64), never the C library's interposable clock_gettime: slow paths read it under
/// the allocator's locks.
uint64_t swmshim_now_ns(void);
/// Sets errno for the caller (ENOMEM/EINVAL on the C API's error paths).
void swmshim_set_errno(int value);
int swmshim_get_errno(void);
/// Blocks every signal the calling thread may block, for a fatal error's report: a
/// handler that interrupted the report (a timer's) and misused again nested reports
/// without bound, or cut the line's wait for room short (reviews R120, R124). The first
/// call of a report saves the mask that `swmshim_abort` puts back.
void swmshim_fatal_signals_block(void);
/// Puts back the signal mask `swmshim_fatal_signals_block` saved, if any (a signal that
/// came meanwhile is then handled), and calls `abort`.
_Noreturn void swmshim_abort(void);
/// Nonzero in a signal handler that `swmshim_abort`'s unblocking let run: a misuse there
/// is nested in this thread's fatal report.
int swmshim_fatal_nested(void);
/// C++ `operator new` after malloc's fast path missed (`swmimpl_cxx_new`, CAPI.swift):
/// malloc's slow path, then, when memory is out, the C++ rules (exports.c).
void *swmshim_cxx_new_slow(intptr_t size);
/// The environment variable `name` (NULL in a set-user-ID program), read from `environ`
/// itself: no interposable call under the start-up lock.
const char *swmshim_getenv(const char *name);
/// The process id (a raw system call).
int swmshim_getpid(void);
/// 1 when the process's mappings are limited (RLIMIT_AS, `ulimit -v`, or RLIMIT_DATA,
/// `ulimit -d`, which counts private writable mappings, finite), or the system's are
/// (`vm.overcommit_memory` = 2: mapped private memory is charged against the system's
/// CommitLimit even once purged; read at start-up by `swmshim_platform_init`), else 0.
/// Raw system calls: safe under the allocator's locks.
int swmshim_address_space_limited(void);
/// Once, at start-up: reads the auxiliary vector (AT_SECURE for `swmshim_getenv`, the
/// vDSO), finds the vDSO's clock for `swmshim_now_ns` and reads `vm.overcommit_memory`
/// for `swmshim_address_space_limited`. Calls nothing a preloaded library can wrap (it
/// runs under the start-up lock).
void swmshim_platform_init(void);

// ---- process and thread registration ----
/// Sets the thread-exit key's destructor, called with the heap when a thread ends. The
/// key itself is created at the first `swmshim_thread_key_set`, outside the start-up lock.
void swmshim_thread_key_init(void (*destructor)(void *));
/// Associates the heap with the calling thread so that the destructor runs at its exit;
/// creates the key first if nobody has. While another live thread creates it, does
/// nothing (see shim.c: nobody waits for the creator).
void swmshim_thread_key_set(void *heap);
/// Registers fork handlers (prepare / parent / child).
int swmshim_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
/// Turns the calling thread's cancellation off and returns the state to restore: a report
/// written under a lock must not be cut short by `pthread_cancel` (`write` is a
/// cancellation point), which would leave the lock held for good.
int swmshim_cancel_disable(void);
void swmshim_cancel_restore(int state);
/// Blocks SIGPIPE for the calling thread while it writes a report (a reader that went away
/// must not kill the program for a report); returns the state for `swmshim_sigpipe_restore`,
/// which discards a SIGPIPE the report's writes raised and unblocks it if it was not blocked.
int swmshim_sigpipe_block(void);
void swmshim_sigpipe_restore(int state);
/// Registers a function to run at process exit.
int swmshim_atexit(void (*fn)(void));
/// Keeps a duplicate of `fd` (close-on-exec, numbered 100 or above) for the reports, so
/// that they still reach it after the program closed `fd` itself (coreutils close
/// stderr in their own exit handler, which runs before swmalloc's). Once, at start-up.
/// With `pipe_inode` nonzero, only when `fd` is the pipe with that inode number
/// (otherwise no report is written).
void swmshim_report_fd_keep(int fd, unsigned long pipe_inode);
/// The descriptor a report for `fd` goes to: `fd` while it refers to the file it named at
/// start-up; else the duplicate kept then, if it still does; else -1 (no report: `fd` was
/// closed at start-up, or the program put a file of its own on it).
int swmshim_report_fd(int fd);
/// Takes a record lock on `fd` when it is a pipe (waiting at most about 2 s), so that
/// the reports of processes sharing it do not interleave; 1 when it holds it, to be given
/// back with `swmshim_report_unlock`.
int swmshim_report_lock(int fd);
void swmshim_report_unlock(int fd);
/// In a fork child: closes the duplicate (see shim.c).
void swmshim_report_fd_forget(void);
/// 1 when `signo` can carry the statistics report: a signal a handler can catch that the C
/// library does not reserve (not SIGKILL, SIGSTOP, or glibc's 32 and 33).
int swmshim_signal_usable(int signo);
/// Installs `handler` for signal `signo` (SA_RESTART); returns 0 on success.
int swmshim_signal(int signo, void (*handler)(int));
/// The kinds of swmalloc's own threads: at most one start of each is under way.
enum { SWM_THREAD_PURGER = 0, SWM_THREAD_REPORTER = 1, SWM_THREAD_KINDS = 2 };
/// Starts a detached thread of `kind` named `name` (at most 15 characters, as `top -H`
/// shows it) running `body` with every signal blocked; 0 on success, and then `*counter`
/// (swmalloc's count of its own threads) got 1 more. `epoch` is the value of `*epoch_word`
/// (swmalloc's count of fork children) the caller read after claiming the kind's state:
/// in a fork child made since (from a signal handler during this call) the caller adds
/// nothing, and a thread made there finds the other value, adds 1 itself and gets 1 as
/// `body`'s argument (it must claim the state itself); `body` gets NULL otherwise.
int swmshim_thread_start(int kind, void *(*body)(void *), const char *name, unsigned long *counter,
                         const unsigned long *epoch_word, unsigned long epoch);
/// In a fork child: attributes another thread was setting up are set up again.
void swmshim_thread_start_forget(void);
/// The calling thread's kernel thread id (a system call; async-signal-safe).
int swmshim_gettid(void);
/// At load (the library's constructor): looks up glibc's count of its threads.
void swmshim_find_glibc_threads(void);
/// At the main thread's pthread_exit: saves its signal mask and name; 0 when glibc's count
/// of its threads was not found (not glibc).
int swmshim_main_thread_ending(void);
/// At load from a thread other than the main one (dlopen): saves that thread's signal
/// mask and the main thread's name (/proc/self/comm), for the exit the purger may run;
/// 0 when glibc's count of its threads was not found.
int swmshim_main_thread_unseen(void);
/// glibc's count of its threads, swmalloc's own included (0 when not found): the C library
/// ends the process when it falls to 0.
unsigned swmshim_glibc_threads(void);
/// 1 when glibc's count of its threads fell to 0: its last thread called `exit` (the main
/// thread having ended with `pthread_exit`), and the process is running its exit.
int swmshim_process_exiting(void);
/// Sleeps 100 µs (a raw system call: no cancellation point, errno kept).
void swmshim_pause_100us(void);
/// The purger, now the process's last thread, takes the main thread's signal mask and name
/// (the loading thread's mask and the main thread's name, after `swmshim_main_thread_unseen`):
/// the process's exit (atexit handlers, destructors) runs in it.
void swmshim_become_last_thread(void);
/// 1 when thread `tid` of process `pid` no longer exists (tgkill with signal 0 answers
/// ESRCH, and finds the calling thread); 0 when it exists, or may (a reused id, no
/// permission, a tgkill that answers ESRCH for every thread).
int swmshim_task_gone(int pid, int tid);

// ---- constants ----
enum {
    SWM_PROT_NONE = 0, SWM_PROT_RW = 3,
    SWM_MAP_PRIVATE_ANON = 0x22,           // MAP_PRIVATE | MAP_ANONYMOUS
    SWM_MAP_NORESERVE = 0x4000,
    SWM_MAP_FIXED_NOREPLACE = 0x100000,    // Linux 4.17; older kernels take it for a hint
    SWM_MADV_DONTNEED = 4, SWM_MADV_HUGEPAGE = 14, SWM_MADV_NOHUGEPAGE = 15,
    SWM_ENOMEM = 12, SWM_EINVAL = 22, SWM_EINTR = 4, SWM_EAGAIN = 11, SWM_EEXIST = 17,
    SWM_ETIMEDOUT = 110,
};

#endif
