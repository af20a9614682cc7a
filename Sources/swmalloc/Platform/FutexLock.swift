// Platform layer: the only lock in swmalloc. Slow paths only (segment reclaim, heap
// registry, statistics merge); malloc's and free's fast paths never take it.

import CSwmShim
import Synchronization

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

    /// Releases the lock, waking one sleeper if there is one.
    @inline(__always) func unlock() {
        if cell.pointee.exchange(0, ordering: .releasing) == 2 {
            _ = swmshim_futex_wake(word, 1)
        }
        swmshim_locks_held().pointee &-= 1
    }

    /// Puts the lock back to free: only in a fork child, where the holder no longer exists.
    func reset() { cell.pointee.store(0, ordering: .relaxed) }
}
