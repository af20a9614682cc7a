// Platform layer: the only lock in swmalloc. Slow paths only (segment reclaim, heap
// registry, statistics merge); malloc's and free's fast paths never take it.

import CSwmShim
import Synchronization

/// What the kernel's answer to a futex call says about futex itself.
enum Futex {
    /// True for an error other than EAGAIN (the word was not the one expected), EINTR (a
    /// signal) and ETIMEDOUT (a timed wait ran out): the kernel refuses futex (a seccomp
    /// filter: EPERM, ENOSYS), and every wait would return at once, every wake wake no
    /// one. A thread that sleeps on a futex (the purger, the `stats_signal` reporter)
    /// stops for good then rather than loop without sleeping (reviews R93, R95).
    static func refused(_ result: Int) -> Bool {
        result < 0 && -result != SWM_EAGAIN && -result != SWM_EINTR && -result != SWM_ETIMEDOUT
    }
}

/// A thread that sleeps on a futex word for wake-ups (the purger, the `stats_signal`
/// reporter), and that must not turn into a loop without sleep where futex does not sleep.
///
/// Every wake-up of theirs changes the word before the wake, so a wait that returns with
/// the word still at the value it waited on, before its timeout ran out on the clock, was
/// woken by no one. A seccomp filter can answer every futex call with EAGAIN, EINTR,
/// ETIMEDOUT or 0 without a refusal `Futex.refused` sees: each wait then returns at once
/// (an outside review's note: the purger of a sleeping program took a whole CPU; review
/// R106: an ETIMEDOUT, taken for the timeout's end, still did). `earlyLimit` such
/// returns in a row (legitimately, only a ptrace stop or a spurious kernel wake-up gives
/// one) say that futex does not sleep here. A wake-up between them starts the count
/// again, so a sleeper whose futex lies can go round while wake-ups keep coming; it stops
/// once they pause.
struct FutexSleeper {
    /// Consecutive waits that returned with the word unchanged, before their timeout.
    private var early: UInt32 = 0

    /// How many such returns in a row mean that futex does not sleep.
    static let earlyLimit: UInt32 = 64

    /// Waits while `word` holds `expected`, for at most `timeout` nanoseconds (0: no
    /// timeout). False when futex does not work for this thread: refused, or returning
    /// early `earlyLimit` times in a row; the caller then stops for good.
    mutating func wait(_ word: UnsafeMutablePointer<UInt32>, _ expected: UInt32, timeout: UInt64) -> Bool {
        let start = timeout == 0 ? 0 : OS.nowNanoseconds()
        let result = timeout == 0 ? swmshim_futex_wait(word, expected) : swmshim_futex_wait_ns(word, expected, timeout)
        if Futex.refused(result) { return false }
        let current = UnsafeMutableRawPointer(word).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .sequentiallyConsistent)
        if current != expected || (timeout != 0 && OS.nowNanoseconds() &- start >= timeout) {
            early = 0
            return true
        }
        early &+= 1
        return early < Self.earlyLimit
    }
}

/// A futex-based mutex in a 32-bit word of raw memory (0 = free, 1 = held, 2 = held with
/// waiters). It spins a bounded 64 rounds, then sleeps in the kernel: it never spins
/// unbounded, the failure tcmalloc's central lock showed under contention.
struct FutexLock {
    let word: UnsafeMutablePointer<UInt32>

    @inline(__always) init(_ word: UnsafeMutablePointer<UInt32>) { self.word = word }

    @inline(__always) private var cell: UnsafeMutablePointer<Atomic<UInt32>> {
        UnsafeMutableRawPointer(word).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Acquires the lock. The thread's count of held allocator locks goes up first, so
    /// that a signal handler that forks meanwhile knows not to wait for this lock.
    @inline(__always) func lock() {
        swmshim_locks_held().pointee &+= 1
        if cell.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
        lockContended()
    }

    @inline(never) private func lockContended() {
        if heldByThisFork { return }
        for _ in 0..<64 {
            if cell.pointee.load(ordering: .relaxed) == 0,
               cell.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
                return
            }
        }
        while cell.pointee.exchange(2, ordering: .acquiring) != 0 {
            _ = swmshim_futex_wait(word, 2)
        }
    }

    /// Acquires the lock if it is free; never waits. True when it did.
    @inline(__always) func tryLock() -> Bool {
        swmshim_locks_held().pointee &+= 1
        if cell.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return true }
        swmshim_locks_held().pointee &-= 1
        return false
    }

    /// Acquires the lock unless it stays held for `timeout` nanoseconds; true when it did.
    /// For a caller that must not wait for ever on a holder that may be blocked outside
    /// the allocator (a report's `write` to a pipe nobody reads).
    func lock(timeout: UInt64) -> Bool {
        if tryLock() { return true }
        if heldByThisFork {
            swmshim_locks_held().pointee &+= 1
            return true
        }
        let deadline = OS.nowNanoseconds() &+ timeout
        while cell.pointee.exchange(2, ordering: .acquiring) != 0 {
            let now = OS.nowNanoseconds()
            if now >= deadline { return false }
            _ = swmshim_futex_wait_ns(word, 2, deadline &- now)
        }
        swmshim_locks_held().pointee &+= 1
        return true
    }

    /// Releases the lock, waking one sleeper if there is one.
    @inline(__always) func unlock() {
        if _slowPath(swmshim_fork_held().pointee != 0) && heldByThisFork {
            swmshim_locks_held().pointee &-= 1
            return
        }
        if cell.pointee.exchange(0, ordering: .releasing) == 2 {
            _ = swmshim_futex_wake(word, 1)
        }
        swmshim_locks_held().pointee &-= 1
    }

    /// Puts the lock back to free: only in a fork child, where the holder no longer exists.
    func reset() { cell.pointee.store(0, ordering: .relaxed) }

    /// Whether some thread holds the lock (a fork child's look at what its parent's
    /// other threads held).
    var isLocked: Bool { cell.pointee.load(ordering: .relaxed) != 0 }

    /// Acquires the lock for a fork (`Process.forkPrepare`) and records it in the fork's
    /// list (at most `SWM_FORK_LOCKS_MAX`).
    func lockForFork() {
        lock()
        let count = swmshim_fork_lock_counter().unsafelyUnwrapped
        if count.pointee >= Int(SWM_FORK_LOCKS_MAX) { OS.fatal("internal error: too many fork locks", pointer: nil) }
        swmshim_fork_lock_list().unsafelyUnwrapped[count.pointee] = UnsafeMutableRawPointer(word)
        count.pointee += 1
    }

    /// Empties the fork's list (after its locks were released or reset).
    static func forgetForkLocks() { swmshim_fork_lock_counter().unsafelyUnwrapped.pointee = 0 }

    /// True when this thread is between the fork handlers of a fork that holds this lock
    /// (`swmshim_fork_held`, thread-local, is set only on that thread once every lock is
    /// taken): the lock is its own, idle, and using it cannot wait for anyone. A fork
    /// handler registered before swmalloc's runs there (its prepare handler after
    /// swmalloc's, its parent and child handlers before), and one that allocated
    /// deadlocked on the fork's own locks; glibc takes its malloc locks after every
    /// prepare handler and lets them go before the others. A use that passes through
    /// neither waits nor releases: the fork's handler releases (or, in the child, resets)
    /// the lock.
    private var heldByThisFork: Bool {
        if swmshim_fork_held().pointee == 0 { return false }
        let list = swmshim_fork_lock_list().unsafelyUnwrapped
        for i in 0..<swmshim_fork_lock_counter().unsafelyUnwrapped.pointee where list[i] == UnsafeMutableRawPointer(word) { return true }
        return false
    }
}
