// Platform layer: every system call the allocator makes goes through this file.
// The C shim performs the raw calls; this file gives them Swift types and one place
// for error handling.

import CSwmShim

/// Thin, typed wrappers over the shim's system calls.
enum OS {
    /// The system page size the allocator assumes (x86-64 and arm64 Linux defaults).
    static let pageSize = 4096

    /// `size` rounded up to whole pages, at least one.
    @inline(__always)
    static func wholePages(_ size: Int) -> Int {
        size <= pageSize ? pageSize : (size + pageSize - 1) & ~(pageSize - 1)
    }

    /// Maps `size` bytes of fresh, zeroed, read-write anonymous memory; nil when the kernel refuses.
    @inline(__always)
    static func map(_ size: Int, hint: UnsafeMutableRawPointer? = nil) -> UnsafeMutableRawPointer? {
        var out: UnsafeMutableRawPointer? = nil
        let r = swmshim_mmap(hint, size, Int32(SWM_PROT_RW), Int32(SWM_MAP_PRIVATE_ANON), &out)
        return r == 0 ? out : nil
    }

    /// What `map(exactlyAt:)` did.
    enum ExactMapping {
        /// Mapped at the address asked for.
        case mapped
        /// Something else is mapped in the range (EEXIST, or an old kernel mapped elsewhere).
        case taken
        /// The kernel refused for another reason: a limit (ENOMEM: `ulimit -v`,
        /// `vm.max_map_count`) that may pass.
        case refused
    }

    /// Maps `size` bytes exactly at `p`, where nothing may be mapped.
    static func map(exactlyAt p: UnsafeMutableRawPointer, _ size: Int) -> ExactMapping {
        var out: UnsafeMutableRawPointer? = nil
        let flags = Int32(SWM_MAP_PRIVATE_ANON | SWM_MAP_FIXED_NOREPLACE)
        let error = swmshim_mmap(p, size, Int32(SWM_PROT_RW), flags, &out)
        if error != 0 { return error == -Int(SWM_EEXIST) ? .taken : .refused }
        if out == p { return .mapped }
        if let out { unmap(out, size) }   // a kernel before 4.17 took the flag for a hint
        return .taken
    }

    /// Returns a mapping (or part of one) to the kernel.
    @inline(__always)
    ///
    /// The kernel may refuse: unmapping a range from the middle of one of its mappings
    /// splits it in two, and at `vm.max_map_count` that extra mapping is refused
    /// (ENOMEM; huge mappings lie side by side and merge, so their frees do that). The
    /// range then stays mapped but its pages go back (`purge`: no split needed), so the
    /// memory is returned even though the address range is not (`.purged`); where that is
    /// refused too (a sandbox's seccomp filter), it stays resident (`.kept`).
    @discardableResult
    static func unmap(_ p: UnsafeMutableRawPointer, _ size: Int) -> Unmapped {
        if swmshim_munmap(p, size) == 0 { return .unmapped }
        return purge(p, size) ? .purged : .kept
    }

    /// What `unmap` did with a range.
    enum Unmapped { case unmapped, purged, kept }

    /// Whether an address-space limit is in force: `RLIMIT_AS` or `RLIMIT_DATA` below
    /// infinity, or strict overcommit (two `prlimit64` calls).
    static var addressSpaceLimited: Bool { swmshim_address_space_limited() != 0 }

    /// Unmaps a range, or leaves it as it is when the kernel refuses (no purge): for a
    /// caller that keeps the range in use then.
    @inline(__always)
    static func unmapOnly(_ p: UnsafeMutableRawPointer, _ size: Int) -> Bool {
        swmshim_munmap(p, size) == 0
    }

    /// Moves a mapping to `target` (replacing the mapping there) with a new size; its
    /// pages move with it. False when the kernel refuses.
    @inline(__always)
    static func remap(_ p: UnsafeMutableRawPointer, _ size: Int, to target: UnsafeMutableRawPointer, newSize: Int) -> Bool {
        swmshim_mremap_fixed(p, size, newSize, target) == 0
    }

    /// After `remap` to `target` failed: whether `[target, target + size)` is still the
    /// range the caller mapped there (see `swmshim_move_target_kept`).
    static func moveTargetKept(_ target: UnsafeMutableRawPointer, _ size: Int) -> Bool {
        swmshim_move_target_kept(target, size) != 0
    }

    /// Grows the mapping at `p` from `size` to `newSize` bytes where it is; false when
    /// the range after it is not free (or a limit refuses).
    @inline(__always)
    static func growInPlace(_ p: UnsafeMutableRawPointer, _ size: Int, to newSize: Int) -> Bool {
        swmshim_mremap_inplace(p, size, newSize) == 0
    }

    /// Tells the kernel the range's contents are no longer needed: RSS falls, later
    /// touches fault in zero pages. False when the kernel refused (locked memory,
    /// `mlock`/`mlockall`: the bytes stay as they were).
    @inline(__always) @discardableResult
    static func purge(_ p: UnsafeMutableRawPointer, _ size: Int) -> Bool {
        swmshim_madvise(p, size, Int32(SWM_MADV_DONTNEED)) == 0
    }

    /// Applies a transparent-huge-page hint to a range.
    @inline(__always)
    static func adviseHugePages(_ p: UnsafeMutableRawPointer, _ size: Int, enable: Bool) {
        let advice = enable ? SWM_MADV_HUGEPAGE : SWM_MADV_NOHUGEPAGE
        _ = swmshim_madvise(p, size, Int32(advice))
    }

    /// Monotonic time in nanoseconds.
    @inline(__always)
    static func nowNanoseconds() -> UInt64 { swmshim_now_ns() }

    /// Sets the caller's errno.
    @inline(__always)
    static func setErrno(_ value: Int32) { swmshim_set_errno(value) }

    /// The caller's errno.
    @inline(__always)
    static func errno() -> Int32 { swmshim_get_errno() }

    /// Writes bytes to a file descriptor, retrying short writes; never allocates.
    @discardableResult
    static func write(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        var done = 0
        while done < count {
            let r = swmshim_write(fd, bytes + done, count - done)
            if r <= 0 { return false }
            done += r
        }
        return true
    }

    /// Writes one line to stderr: `swmalloc: `, `prefix`, `message`, and when `value` is
    /// given ` (label 0x…)`. Never allocates.
    static func reportLine(_ prefix: StaticString, _ message: StaticString, label: StaticString, value: UnsafeRawPointer?) {
        var line = LineBuffer()
        line.append("swmalloc: ")
        line.append(prefix)
        line.append(message)
        if let value {
            line.append(" (")
            line.append(label)
            line.append(" ")
            line.appendHex(UInt(bitPattern: value))
            line.append(")")
        }
        line.append("\n")
        line.write(to: 2)
    }

    /// Writes `swmalloc: message (pointer 0x…)` to stderr and aborts: the one exit for
    /// detected misuse (invalid free, double free) and broken invariants.
    static func fatal(_ message: StaticString, pointer: UnsafeRawPointer?) -> Never {
        beginFatal()
        reportLine("", message, label: "pointer", value: pointer)
        abortFatal()
    }

    /// Lets one thread report a fatal error at a time: the first to come returns at once,
    /// and so does that thread again (a signal handler's free inside its report); another
    /// waits for the abort, which ends the process. So a misuse reports one line even when
    /// it makes another thread fail too (review R16: an invalid free of a pointer inside a
    /// huge block claims the mapping for a moment, and a valid free of the block at that
    /// moment reported a double free as well).
    ///
    /// The wait is bounded: when the reporter is gone (a `vfork` child that shared this
    /// memory and died, a thread of the parent seen from a child of `_Fork`), 50 ms after
    /// it called `abort` (a program whose SIGABRT handler `longjmp`s out goes on), or
    /// after 1 s, the waiting thread takes the report over and reports itself. Waiting for
    /// ever hung those programs at their next misuse (review R18). Polled every 10 ms.
    ///
    /// From here to the abort the thread's signals are blocked (`swmshim_abort` unblocks
    /// them): a timer's handler that misused again at every tick nested one wait in
    /// another until the stack overflowed (reviews R120, R124: SIGSEGV instead of
    /// SIGABRT), and one that misused once, in the middle of the line's wait for room,
    /// left the process without either line (R124).
    static func beginFatal() {
        swmshim_fatal_signals_block()
        // The report is not cut short by `pthread_cancel` (`write` is a cancellation
        // point): before, a thread with a cancellation pending lost its line and ended
        // without aborting. Not restored: the report ends in abort (a program whose
        // SIGABRT handler `siglongjmp`s out keeps the thread's cancellation off).
        _ = swmshim_cancel_disable()
        let me = UInt(swmshim_gettid())
        let r = Globals.fatalThread.compareExchange(expected: 0, desired: me)
        // Nested: a handler's misuse between this thread's line and its abort (the signals
        // it blocked came in as `swmshim_abort` unblocked them), so this thread holds the
        // report. A thread that jumped out of an earlier abort starts a report of its own
        // (review R127: taken for nested, its handler's line inside its report did not wait
        // for room).
        let nested = swmshim_fatal_nested() != 0
        let waits = !r.exchanged && r.original != me
        if waits {
            // Counted as waiting until it holds the report, so that the exit waits for it
            // (`awaitFatalAtExit`).
            Globals.fatalWaiters.add(1)
            awaitOthersFatal(me)
            Globals.fatalThread.store(me)
        }
        if !nested {
            Globals.fatalAbortedAt.store(0)
            Globals.fatalProcess.store(UInt(UInt32(bitPattern: swmshim_getpid())))
        }
        if waits { Globals.fatalWaiters.subtract(1) }
        // The line is tried on every descriptor, those a report gave up on too (review
        // R118: a handler's misuse that interrupted a report lost its line once the report
        // had given up on stderr). Inside the thread's own report that waits for room (a
        // handler's misuse during it) the line waits as the report's writes do, at most a
        // second a write (review R119: a slow non-blocking stderr, the line was lost; the
        // process's exit meanwhile waits for the abort: `awaitFatalAtExit`). Elsewhere it
        // does not wait, as glibc's does not, also while another thread's report keeps
        // stderr full (its line may then be lost, but the abort comes at once): waiting
        // there, an `_exit`, `quick_exit` or signal that ended the process meanwhile, which
        // no destructor sees, lost the abort itself (reviews R120, R125, R126). Nor does a
        // misuse in a handler that ran between the first one's line and its abort.
        swmshim_fatal_line_mode(nested ? 1 : 0)
    }

    /// Ends a fatal error's report, its line written: notes that it aborts (see
    /// `awaitFatalAtExit`) and aborts.
    static func abortFatal() -> Never {
        Globals.fatalAbortedAt.store(UInt(max(OS.nowNanoseconds(), 1)))
        swmshim_abort()
    }

    /// Whether thread `holder` (a fatal error's reporter, not 0) is gone from this process.
    private static func gone(_ holder: UInt) -> Bool {
        swmshim_task_gone(swmshim_getpid(), Int32(truncatingIfNeeded: holder)) != 0
    }

    /// One 10 ms poll of the fatal error's reporter word, which holds `holder`.
    private static func pollFatal(_ holder: UInt) {
        let word = Globals.fatalThread.address.assumingMemoryBound(to: UInt32.self)
        _ = swmshim_futex_wait_ns(word, UInt32(truncatingIfNeeded: holder), 10_000_000)
    }

    /// How long after a reporter's `abort` its SIGABRT may still be on its way (50 ms):
    /// others wait that long at most for it (review R16: a thread that failed because of
    /// the reporter's misuse reported a second line); a reporter that aborted longer ago
    /// jumped out of its abort and the program goes on (review R18).
    static let abortGrace: UInt64 = 50_000_000

    /// Whether thread `me` should keep waiting for the fatal error `holder` reports, which
    /// it has waited for with `grace` polls left for an abort on its way: its thread is
    /// here and it has not called `abort` yet, or did so less than `abortGrace` ago and
    /// `grace` is not spent (one that keeps aborting and jumping out, a death-test loop,
    /// made others wait a second, and the exit 3 s: review R128; waiting for one that
    /// aborted long ago let an `_exit` end the process without this thread's abort: R127).
    private static func othersFatalPending(_ me: UInt, _ holder: UInt, _ grace: inout Int) -> Bool {
        if holder == 0 || holder == me || gone(holder) { return false }
        let at = UInt64(Globals.fatalAbortedAt.load())
        if at == 0 { return true }
        if OS.nowNanoseconds() &- at >= abortGrace || grace == 0 { return false }
        grace -= 1
        return true
    }

    /// Waits while a thread other than `me` reports a fatal error (its abort ends the
    /// process): at most 1 s (waiting for ever hung a program at its next misuse, review
    /// R18), and at most 50 ms for an abort on its way (`othersFatalPending`).
    private static func awaitOthersFatal(_ me: UInt) {
        var grace = Int(abortGrace / 10_000_000)
        for _ in 0..<100 {
            let holder = Globals.fatalThread.load()
            if !othersFatalPending(me, holder, &grace) { return }
            pollFatal(holder)
        }
    }

    /// At the process's exit (the library's destructor): while another thread has a
    /// fatal error's line to write (the reporter before its `abort`, or a thread waiting
    /// for the reporter in `beginFatal`), waits, at most 3 s, so that the process ends
    /// with SIGABRT. Before, a main thread that returned from `main` while a misuse's line
    /// waited for room (a handler's misuse inside its thread's report to a full stderr)
    /// ended the process with status 0 (review R124), and so did one whose own earlier
    /// misuse it had recovered from while another thread's misuse waited for it (R125).
    /// A reporter that called `abort` is waited for 50 ms at most, and not at all once
    /// that is past: it jumped out of it (review R18; R125, R128: 3 s at every exit).
    ///
    /// Only in the process the report is made in: a child of `_Fork` (no fork handler ran)
    /// finds its parent's state (R126: it waited 3 s for a thread that was waiting in the
    /// parent; R127: comparing with the pid recorded at start-up skipped the wait in every
    /// `_Fork` child, and a handler's misuse there ended with status 0).
    static func awaitFatalAtExit() {
        if Globals.fatalThread.load() == 0 || Globals.fatalProcess.load() != UInt(UInt32(bitPattern: swmshim_getpid())) {
            return
        }
        let me = UInt(swmshim_gettid())
        var grace = Int(abortGrace / 10_000_000)
        for _ in 0..<300 {
            let holder = Globals.fatalThread.load()
            if Globals.fatalWaiters.load() == 0 && !othersFatalPending(me, holder, &grace) { return }
            pollFatal(holder)
        }
    }
}
