// Extensions layer: the statistics report on a signal (`stats_signal=N`).
//
// A signal can arrive while the interrupted thread holds an allocator lock (the heap
// registry's, taken when threads start and exit; the VOS tables'), so the report must
// never run inside the handler. The handler only raises a flag and wakes a reporter
// thread with a futex (both async-signal-safe); the reporter, an ordinary thread that
// sleeps on the flag, writes the report. In a fork child the reporter does not exist: the
// next allocation slow path after a signal starts a new one there.

import CSwmShim
import Synchronization

/// The signal handler, the reporter thread and its restart after fork.
enum SignalReport {
    /// The reporter thread's name, as `top -H` and /proc/PID/task/TID/comm show it.
    static let threadName: StaticString = "swm-reporter"

    @inline(__always) private static var requested: UnsafeMutablePointer<UInt32> { Globals.reportRequested }
    @inline(__always) private static var running: AtomicWord { Globals.reporterRunning }

    @inline(__always) private static var flag: UnsafeMutablePointer<Atomic<UInt32>> {
        UnsafeMutableRawPointer(requested).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Installs the handler for `signo` and starts the reporter.
    static func install(_ signo: Int32) {
        _ = swmshim_signal(signo) { _ in SignalReport.signalled() }
        start()
    }

    /// The handler: a store and a futex wake, nothing that can block.
    private static func signalled() {
        flag.pointee.store(1, ordering: .releasing)
        _ = swmshim_futex_wake(requested, 1)
    }

    /// Starts the reporter thread unless one runs (or it was stopped for good).
    private static func start() {
        if !Process.mayStartThread() { return }
        guard let epoch = Purger.claimStart(running) else { return }
        if swmshim_thread_start(Int32(SWM_THREAD_REPORTER), { forked in SignalReport.reporter(forkedStart: forked != nil) },
                                UnsafeRawPointer(threadName.utf8Start).assumingMemoryBound(to: CChar.self),
                                Globals.ownThreadsWord, Globals.forkEpochWord, epoch) != 0 {
            _ = running.compareExchange(expected: 1, desired: 0)   // not over a stop for good
        }
    }

    /// Stops the reporter for good (`Process.mainThreadExiting`): `running` = 2, which
    /// `start` never takes; then the flag is raised, so that a reporter that missed the
    /// state returns from its wait at once (or is woken in it), finds the state and
    /// returns without writing a report. Returns true when a reporter was running (the
    /// purger then looks again soon whether it ended: `Purger.run`).
    @discardableResult
    static func stopForGood() -> Bool {
        if running.exchange(2) != 1 { return false }
        flag.pointee.store(2, ordering: .sequentiallyConsistent)
        _ = swmshim_futex_wake(requested, 1)
        return true
    }

    /// The reporter's loop: sleep until the flag is raised, clear it, write the report;
    /// return once stopped for good, or when the kernel refuses its futex wait
    /// (`Futex.refused`: a seccomp filter), which would return at once every time (review
    /// R95: the reporter took 100 % of a CPU), or answers without sleeping
    /// (`FutexSleeper`). Signals then write no report: the handler's wake is refused too.
    /// It leaves `Globals.ownThreads` as it returns (see `Purger.endBeforeLastThread`).
    ///
    /// Where the main thread's end cannot be seen (`Purger.mainThreadUnseen`: swmalloc
    /// loaded by `dlopen` from another thread), no wait is longer than `alonePollMax`, and
    /// it ends for good when the C library counts only swmalloc's threads, taking the
    /// main thread's mask and name if it is the last (review R106: with no purger started,
    /// the reporter kept such a process alive for ever).
    private static func reporter(forkedStart: Bool) -> UnsafeMutableRawPointer? {
        // Made in a fork child after its creator's claim (`Purger.claimForkedStart`).
        if forkedStart && !Purger.claimForkedStart(running) {
            Purger.ownThreadEnding()
            return nil
        }
        var sleeper = FutexSleeper()
        while true {
            let raised = flag.pointee.exchange(0, ordering: .sequentiallyConsistent) != 0
            if running.loadSequentiallyConsistent() == 2 { break }
            let watching = Globals.mainThreadGone.loadSequentiallyConsistent() != 0
            if raised {
                Stats.printReport(atExit: false)
            } else if watching && Purger.onlyOwnThreadsLeft() {
                _ = running.compareExchange(expected: 1, desired: 2)
                if swmshim_glibc_threads() <= 1 { swmshim_become_last_thread() }
                break
            } else if !sleeper.wait(requested, 0, timeout: watching ? Purger.alonePollMax : 0) {
                _ = running.compareExchange(expected: 1, desired: 2)
                break
            }
        }
        Purger.ownThreadEnding()
        return nil
    }

    /// Called on allocation slow paths: in a fork child, where no reporter runs, a raised
    /// flag starts one. Cost when nothing is pending: one load.
    @inline(__always)
    static func poll() {
        if _slowPath(flag.pointee.load(ordering: .relaxed) != 0) && running.loadRelaxed() == 0 { start() }
    }

    /// After fork, in the child: the reporter thread was not copied, nor any thread that
    /// was writing a report under the report lock. A raised flag is the parent's: its
    /// signal arrived before the fork (a child inherits no pending signal), and the
    /// parent's reporter answers it; a stop's (`stopForGood`) is no request either. So the
    /// child starts with none. Before, a request the parent's reporter had not taken yet
    /// (it waited for a report under way) started a reporter in the child at its first
    /// slow path, which wrote a second report, interleaved with the parent's in a shared
    /// file (review R45).
    static func forkChild() {
        running.store(0)
        flag.pointee.store(0, ordering: .relaxed)
        Globals.reportLock.reset()
    }
}
