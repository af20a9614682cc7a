// Thread-heap layer: the background purger, and the process-wide collect.
//
// Purge policy: memory that is freed is reused at once and goes back to the OS (madvise,
// or munmap for the huge cache) only once it stayed unused for `purge_delay_ms`: every
// free span carries the time it was freed, and a span is purged when it is older than
// the delay. A free-then-reallocate cycle shorter than the delay reuses memory resident.
//
// Owners purge their own expired spans on their slow paths (`Heap.tidy`). The purger
// makes the delay true when threads stop calling the allocator: one thread, started at
// an allocation slow path where 4 MiB of freed memory wait for their purge or the process
// has mapped 32 MiB (it could free that much and then sleep), that sleeps on a futex
// until the oldest waiting memory expires, or without a timeout when nothing waits.
// Until it runs, owners purge synchronously (see `isRunning`).
// Each pass releases the heaps of exited threads parked for the delay (`Heap.park`), then,
// in turn: every heap whose span lock it can take at once (its full pages that other
// threads emptied are retired, its free spans purged; an owner busy in its slow path is
// skipped: it purges its own), the abandoned segments (collecting
// the blocks other threads freed into them and retiring pages and segments that came out
// empty), the segment cache and the huge cache. It holds a lock `malloc` needs only for
// one heap's, list's or cache's step.
//
// Why it is not started from `free`: creating a thread calls into glibc, and glibc frees
// memory while holding its own locks (the thread-stack cache lock when it releases a
// thread's TLS), which `pthread_create` takes again. Allocation slow paths are safe.

import CSwmShim
import Synchronization

enum Purger {
    /// The thread's name, as `top -H` and /proc/PID/task/TID/comm show it.
    static let threadName: StaticString = "swm-purger"

    /// The purger starts at an allocation slow path once this much freed memory waits
    /// for its purge (resident, in no block; checked every 16th slow path), or once the
    /// process has mapped `startMapped` (checked after every one: it could free that much
    /// and go to sleep before it allocates again).
    /// Below both, a process never gets the thread (it stays single-threaded, which some
    /// programs rely on: see the README).
    static let startWaiting: UInt = 4 << 20
    static let startMapped: UInt = 32 << 20

    @inline(__always) private static var signal: UnsafeMutablePointer<Atomic<UInt32>> {
        UnsafeMutableRawPointer(Globals.purgerSignal).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// True when the purger runs. Until then (it is not wanted yet, or it is off:
    /// `background=0`, or its thread could not be created yet) owners
    /// purge synchronously, as a fallback: nothing else would purge what a thread frees
    /// before it goes to sleep.
    @inline(__always) static var isRunning: Bool { Globals.purgerState.loadRelaxed() == 1 }

    /// True when the purger runs, or is started at the end of the current allocation slow
    /// path (`startIfMapped`: not started yet, the process has mapped `startMapped`). A
    /// fork child, whose purger was not copied, lets go of its parent's other threads'
    /// memory without purging it then, so that what it allocates again reuses it resident
    /// (`retention-fork`: purging at once took 0.103 → 0.163 s); the purger started
    /// right after gives back what stays free.
    static var willRun: Bool {
        let state = Globals.purgerState.loadRelaxed()
        return state == 1 || isDueByMapping(state)
    }

    /// Not started (`state` 0) and the process has mapped `startMapped`: the purger is to
    /// start at the end of the current allocation slow path.
    @inline(__always)
    private static func isDueByMapping(_ state: UInt) -> Bool {
        state == 0 && Counters.shared.pointee.mapped.load(ordering: .relaxed) >= startMapped
    }

    /// Resident bytes in no block, which wait for their purge: mapped, less purged, less
    /// pages and huge blocks in use, less the segments' headers (relaxed reads: an
    /// estimate is enough).
    static func waitingBytes() -> UInt {
        let c = Counters.shared
        let mapped = c.pointee.mapped.load(ordering: .relaxed)
        let inUse = c.pointee.purgedNow.load(ordering: .relaxed) &+ c.pointee.activeBytes.load(ordering: .relaxed)
            &+ c.pointee.hugeBytes.load(ordering: .relaxed)
            &+ c.pointee.segments.load(ordering: .relaxed) &* UInt(Geometry.sliceSize)
        return mapped > inUse ? mapped &- inUse : 0
    }

    /// Times the purger woke up (its passes).
    static var wakeups: UInt { Counters.shared.pointee.purgerWakeups.load(ordering: .relaxed) }

    /// At start-up, after the options: the purger is off when they say so (`background=0`).
    /// With `purge_delay_ms=0` it still runs: owners purge what they free at once, but
    /// memory other threads free into a sleeping thread's full pages has no one else to
    /// give it back (256 MiB of it stayed resident for good when the purger was off there).
    static func configure() {
        if !Options.current.pointee.background { Globals.purgerState.store(2) }
    }

    /// Something now waits for its purge delay: wakes the purger if it sleeps without a
    /// timeout. Cost when already announced since its last pass: one load.
    @inline(__always)
    static func announce() {
        // Sequentially consistent (a plain load on x86), after the caller's sequentially
        // consistent write of what waits (`noteOthersFree`): either it sees the purger's
        // clearing of the signal word and wakes it, or the purger's pass, which comes after
        // that clearing, sees what waits (review R73).
        if signal.pointee.load(ordering: .sequentiallyConsistent) != 0 { return }
        announceSlow()
    }

    @inline(never)
    private static func announceSlow() {
        if signal.pointee.exchange(1, ordering: .sequentiallyConsistent) == 0 && Globals.purgerState.loadRelaxed() == 1 {
            stopIfRefused(swmshim_futex_wake(Globals.purgerSignal, 1))
        }
    }

    /// Another thread's free went to a page (any page, abandoned ones too): its owner may
    /// sleep, or allocate on fast paths only or from other classes, and never look at
    /// it, so the purger's passes do (`Heap.releaseOthersFrees`, `collectAbandoned`). The
    /// first such free since the last walk of the page lists wakes a purger that sleeps
    /// without a timeout; that pass then plans the next one a purge delay later (and
    /// walks at most once per `othersWalkGap`), which finds what came free meanwhile (a
    /// stream of such frees costs a pass per delay). Noted whether a purger runs or not:
    /// a forced pass skips the walk when nothing was (`forcedWalkNeeded`). Cost once
    /// noted: one load.
    ///
    /// Sequentially consistent, as the push before it and the pass's clearing and reading
    /// of the note are: either this load sees the cleared note and notes again, or the
    /// walk after the clearing sees the push (a plain `mov` on x86); and the note is set
    /// with an exchange, which orders it before `announce`'s load of the signal word
    /// (with a plain store, a purger going to sleep without a timeout could miss both the
    /// note and the wake, and later frees, finding the note set, would not wake it either:
    /// review R73).
    @inline(__always)
    static func noteOthersFree() {
        if Globals.othersFreesNoted.loadSequentiallyConsistent() == 0 {
            _ = Globals.othersFreesNoted.exchange(1)
            announce()
        }
    }

    /// On allocation slow paths, where the thread holds no allocator lock: starts the
    /// purger when it is wanted and does not run. Cost once it runs (or is off): one load.
    @inline(__always)
    static func startIfWanted() {
        if _slowPath(Globals.purgerState.loadRelaxed() == 0) { startSlow() }
    }

    /// After an allocation slow path, where the thread holds no allocator lock: starts the
    /// purger as soon as the process has mapped `startMapped`, not only at the next
    /// periodic check: a program that maps a lot in a few calls, frees it and sleeps must
    /// have its purger by then (one that freed 150 of its 350 MiB kept them resident).
    /// Cost once it runs (or is off): one load.
    @inline(__always)
    static func startIfMapped() {
        if _slowPath(isDueByMapping(Globals.purgerState.loadRelaxed())) { startSlow() }
    }

    @inline(never)
    private static func startSlow() {
        let mapped = Counters.shared.pointee.mapped.load(ordering: .relaxed)
        if waitingBytes() < startWaiting && mapped < startMapped { return }
        start()
    }

    /// Starts the purger now, however little the process holds, unless it runs or is off
    /// (`background=0`): for a program that asked for memory to go back at once
    /// (`mallopt(M_TRIM_THRESHOLD, 0)`), whose freed memory must not wait for an
    /// allocation slow path to start one. It sleeps without a timeout while nothing waits.
    ///
    /// When its thread cannot be created (a limit on threads or on address space for its
    /// stack, which may pass), it stays not started and no start is tried for
    /// `retryNanoseconds`; owners purge synchronously meanwhile. Before, one refusal
    /// turned it off for good (an outside review: a brief `pids.max` of 1 left freed
    /// memory resident for the rest of the run; `retention purger_retries_start`).
    static func start() {
        if Globals.purgerState.loadRelaxed() != 0 { return }
        if !Process.mayStartThread() { return }
        let retryAt = Globals.purgerRetryAt.loadRelaxed()
        if retryAt != 0 && UInt(OS.nowNanoseconds()) < retryAt { return }
        guard let epoch = claimStart(Globals.purgerState) else { return }
        if swmshim_thread_start(Int32(SWM_THREAD_PURGER), { forked in Purger.run(forkedStart: forked != nil) },
                                UnsafeRawPointer(threadName.utf8Start).assumingMemoryBound(to: CChar.self),
                                Globals.ownThreadsWord, Globals.forkEpochWord, epoch) != 0 {
            Globals.purgerRetryAt.store(UInt(OS.nowNanoseconds()) &+ retryNanoseconds)
            // Back to "not started" only from "running": a `stopForGood` meanwhile (the main
            // thread's `pthread_exit`) set 2, which must stay, or a purger started a second
            // later would keep the process alive (it blocks every signal; review R12).
            _ = Globals.purgerState.compareExchange(expected: 1, desired: 0)
        }
    }

    /// How long after a failed start of the purger's thread the next start is tried.
    static var retryNanoseconds: UInt { 1_000_000_000 }

    /// Stops the purger for good (`Process.mainThreadExiting`): state 2, as with
    /// `background=0`; a running purger makes one last pass that gives back everything
    /// free (the parked heaps included) and returns, which ends its thread.
    ///
    /// The purger tests the state after its last store to the signal word and before
    /// each wait; here the state is set before the signal word gets 2, a value neither
    /// wait expects: so a purger that missed the state returns from its wait at once, or
    /// is woken in it.
    ///
    /// It wakes the purger from "off" too: a purger turned off by another thread's refused
    /// wake (`stopIfRefused`: a futex filter on that thread alone) still sleeps, and this
    /// thread's wake is the one that ends it (review R96: waking only a running purger
    /// left that one asleep, and the process could not end; only SIGKILL ended it).
    static func stopForGood() {
        if Globals.purgerState.exchange(2) != 0 {
            signal.pointee.store(2, ordering: .sequentiallyConsistent)
            _ = swmshim_futex_wake(Globals.purgerSignal, 1)
        }
    }

    /// The purger was stopped for good (see `stopForGood`).
    @inline(__always)
    private static var stopped: Bool { Globals.purgerState.loadSequentiallyConsistent() == 2 }

    /// After fork, in the child: the purger thread was not copied; the next allocation
    /// slow path that wants one starts it again.
    ///
    /// One stopped for good (its parent's main thread ended with `pthread_exit`) may run
    /// again: the child's main thread is the forking one.
    static func forkChild() {
        let state = Globals.purgerState.loadRelaxed()
        if state == 1 || (state == 2 && Options.current.pointee.background) { Globals.purgerState.store(0) }
        Globals.mainThreadGone.store(0)
        Globals.purgerAloneHint.store(0)
        Globals.purgerAlonePoll.store(0)
        Globals.purgerEndingPokeAt.store(0)
        Globals.purgerEndNow.store(0)
        Globals.ownThreads.store(0)   // the purger and the reporter were not copied
        Globals.forkEpoch.add(1)
        swmshim_thread_start_forget()
    }

    /// The main thread ends with `pthread_exit` (`Process.mainThreadExiting`): the C library
    /// ends the process when its last thread ends, and counts the purger like any other,
    /// so the purger must not outlive the others. A thread that ends through swmalloc's
    /// key destructor while the C library counts only it and swmalloc's own threads ends
    /// those first (`endBeforeLastThread`), so that the process's exit
    /// runs in that thread as without swmalloc. For the threads that end otherwise (they
    /// never allocated; a key destructor of the program's ran after swmalloc's second
    /// call; two ended at once), the purger from now on looks at least every
    /// `alonePollMax` (1 ms after this call, doubling) whether the C library's count of
    /// its threads (`swmshim_glibc_threads`) is 1, and then ends with the main thread's
    /// signal mask and name (`swmshim_become_last_thread`): its thread's end ends the
    /// process with status 0, the program's `atexit` handlers running in it.
    ///
    /// Returns false where that count was not found (not glibc): the caller then stops
    /// the purger for good, as it did everywhere before. Stopping it everywhere turned it
    /// off in every program whose main thread ends early, and so in every Swift program
    /// with an `async` main, whose main thread libdispatch ends at start-up (review R97:
    /// 12 MB a thread freed before going idle stayed resident, 33.9 MB against 20.1 MB with
    /// a synchronous main). The kernel's count of threads, tried first, counts threads the
    /// C library does not wait for (io_uring's SQPOLL thread, one made with a raw `clone`):
    /// with one of them the process never ended (review R98).
    static func mainThreadGone() -> Bool {
        if swmshim_main_thread_ending() == 0 { return false }
        _ = Globals.mainThreadGone.exchange(1)
        pokeAlone(aloneHintMainGone)
        return true
    }

    /// At load by a thread other than the main one (`dlopen` from a worker), and in a fork
    /// child whose forking thread has no heap: the main thread has no heap, so its end
    /// may never reach swmalloc's key destructor, and neither may the end of a last
    /// thread that never allocated through swmalloc; the purger then kept the process
    /// alive until SIGKILL. The purger looks from the start as after the main thread's
    /// end (`mainThreadGone`), with the loading (forking) thread's signal mask and the
    /// main thread's name for an exit it runs. Its cost: an idle purger wakes once a
    /// second.
    static func mainThreadUnseen() {
        if swmshim_main_thread_unseen() != 0 { Globals.mainThreadGone.store(1) }
    }

    /// swmalloc's own threads the C library counts, at most (`Globals.ownThreads`, read
    /// as 0 should it ever be below).
    private static var ownThreads: UInt {
        let n = Int(bitPattern: Globals.ownThreads.loadSequentiallyConsistent())
        return n > 0 ? UInt(n) : 0
    }

    /// True when the C library counts only swmalloc's own threads (glibc's count read
    /// first: see `mayEndBeforeThisThread`): after the main thread's end, they must end.
    static func onlyOwnThreadsLeft() -> Bool {
        let threads = UInt(swmshim_glibc_threads())
        return threads != 0 && threads <= ownThreads
    }

    /// One of swmalloc's own threads is returning from its body (its creator counted it,
    /// or it counted itself: `swmshim_thread_start`): see `Globals.ownThreads`.
    static func ownThreadEnding() { Globals.ownThreads.subtract(1) }

    /// At a thread's exit, after its heap was given up: true when one of swmalloc's own
    /// threads runs and the C library counts at most `endingTogether` more threads (this
    /// one, and others that may end at the same time). swmalloc's key destructor is then
    /// called once more, in the next round, after the program's key destructors of this
    /// one (`endBeforeLastThread`); a main thread that one of them keeps for good
    /// (libdispatch's) never gets there.
    ///
    /// The C library's count is read first: a thread of ours that left it subtracted
    /// itself from `ownThreads` before (see `swmshim_glibc_threads`), so the two never
    /// count it once each way.
    static func mayEndBeforeThisThread() -> Bool {
        let threads = UInt(swmshim_glibc_threads())
        let own = ownThreads
        return own != 0 && threads != 0 && threads <= own &+ endingTogether
    }

    /// Threads ending at the same time, at most, whose ends hurry the purger's look at the
    /// thread count (`endBeforeLastThread`). Its cost: a thread ending while at most this
    /// many threads run goes through one more round of key destructors.
    static let endingTogether: UInt = 64

    /// swmalloc's key destructor's second call (`mayEndBeforeThisThread`): when every other
    /// thread the C library counts is one of swmalloc's own (the purger, the reporter:
    /// `ownThreads` never counts one the C library does not, so a thread being started by
    /// another thread keeps the C library's count above), they end first:
    /// the purger without a last pass (the process is ending) but releasing the heaps
    /// parked with it, the reporter for good; and this thread waits until the C library
    /// counts only itself (at most `endWaitNanoseconds`). The process's exit then runs in
    /// this thread, the last, as without swmalloc: with its thread-local data, its signal
    /// mask and name (review R100: when the purger ended last, it ran the exit with the
    /// main thread's mask, which delivered a signal the last thread had blocked and glibc
    /// never delivers, and without the last thread's thread-local data; before, with every
    /// signal blocked, R98). Review R102: tested on the purger's state alone, a thread
    /// ending while the only other one was starting the purger (state 1, not yet counted)
    /// stopped it and waited 4 s for a count that never came, in a program whose main
    /// thread lived; and the heaps parked when it ended stayed for good (106 MB) in a
    /// process that went on.
    ///
    /// Where other threads still count, after the main thread's end, the purger is asked
    /// to look soon (`pokeEnding`): threads that end together (in the same key destructor
    /// round of each, say) all find the others still counted, and the last of them to end
    /// left the exit to the purger's next look, up to `alonePollMax` (1 s) later.
    static func endBeforeLastThread() {
        let threads = UInt(swmshim_glibc_threads())   // first: see `mayEndBeforeThisThread`
        let own = ownThreads
        if own == 0 || threads != own &+ 1 {
            if own != 0 && threads > own &+ 1 && Globals.mainThreadGone.loadSequentiallyConsistent() != 0 {
                pokeEnding()
            }
            return
        }
        SignalReport.stopForGood()
        _ = Globals.purgerEndNow.exchange(1)
        if Globals.purgerState.exchange(2) != 0 {
            signal.pointee.store(2, ordering: .sequentiallyConsistent)
            _ = swmshim_futex_wake(Globals.purgerSignal, 1)
        }
        let deadline = OS.nowNanoseconds() &+ endWaitNanoseconds
        while swmshim_glibc_threads() > 1 && OS.nowNanoseconds() < deadline { swmshim_pause_100us() }
    }

    /// The longest a thread waits for the purger to end (`endBeforeLastThread`): a pass
    /// under way ends first.
    static let endWaitNanoseconds: UInt64 = 2_000_000_000

    /// Asks the purger to look at once whether it is the last thread, and then after
    /// `alonePollFirst`, doubling (`hint`: see `run` for what each asks). The signal word
    /// gets 2, a value neither of its waits expects, after the hint: a purger that read
    /// the hint before it was set cleared the word before that read (sequentially
    /// consistent, see `run`), so its untimed wait returns at once, or is woken; before a
    /// timed wait, whose store of 1 may overwrite the 2, it reads the hint again. A purger
    /// that is off and asleep (`stopIfRefused`) is woken too, and ends.
    private static func pokeAlone(_ hint: UInt) {
        Globals.purgerAloneHint.orSequentiallyConsistent(hint)
        if Globals.purgerState.loadRelaxed() == 0 { return }
        signal.pointee.store(2, ordering: .sequentiallyConsistent)
        _ = swmshim_futex_wake(Globals.purgerSignal, 1)
    }

    /// `pokeAlone` for a thread ending among the last ones (`endBeforeLastThread`): only
    /// when the purger's looks are more than `alonePokePoll` apart (its `poll`, as it
    /// published it) and no such poke came in the last `alonePokeGap`, one thread of those
    /// ending at once winning. The purger then looks at `alonePollFirst`, doubling, while
    /// each look finds fewer threads than the one before (they are ending) or the
    /// interval is under `aloneFollowQuiet`, and goes back to the interval it had at the
    /// first look after that which finds none fewer (see `run`). So a
    /// thread that starts and ends short threads for good costs at most a few wake-ups
    /// per `alonePokeGap` (review R111: reset to 1 ms at every such end, the poll woke the
    /// purger 20 times a second where it had woken 5). A look that doubled its interval
    /// past the bound just after this thread read it, or a thread whose end comes later
    /// than the looks (a long key destructor of the program's after this call), leaves
    /// the exit to the look after, as before.
    private static func pokeEnding() {
        if Globals.purgerAlonePoll.loadSequentiallyConsistent() <= alonePokePoll { return }
        let now = UInt(OS.nowNanoseconds())
        let last = Globals.purgerEndingPokeAt.loadRelaxed()
        if last != 0 && now < last &+ UInt(alonePokeGap) { return }
        if Globals.purgerEndingPokeAt.compareExchange(expected: last, desired: now).exchanged {
            pokeAlone(aloneHintEnding)
        }
    }

    /// `Globals.purgerAloneHint`'s bits: the main thread ended (`mainThreadGone`);
    /// threads are ending after it (`pokeEnding`).
    static let aloneHintMainGone: UInt = 1
    static let aloneHintEnding: UInt = 2

    /// After the main thread's `pthread_exit`: the first wait before the purger looks again
    /// whether it is the last thread, and the longest. The longest is how late the process
    /// may end after a last thread that did not end the purger (see `mainThreadGone`), and
    /// how often an idle purger wakes meanwhile (once a second: a Swift program with an
    /// `async` main, whose main thread libdispatch keeps asleep for good).
    static let alonePollFirst: UInt64 = 1_000_000
    static let alonePollMax: UInt64 = 1_000_000_000
    /// The interval between the purger's looks above which a thread ending among the last
    /// ones asks it to look soon, and the shortest time between two such requests
    /// (`pokeEnding`).
    static let alonePokePoll: UInt = 256_000_000
    static let alonePokeGap: UInt64 = 1_000_000_000
    /// After `pokeEnding`: the interval from which a look that finds no fewer threads
    /// than the one before ends the quick looks (before it, threads still ending may just
    /// not have got there: a loaded machine).
    static let aloneFollowQuiet: UInt64 = 8_000_000

    /// The purger's loop: a pass, then sleep until the oldest waiting memory expires (at
    /// least an eighth of the delay, so a steady stream of frees costs at most eight
    /// passes per delay), or until something is announced when nothing waits.
    ///
    /// The signal word is 0 during a pass, so an announcement made meanwhile is not lost:
    /// it sets 1, and the untimed wait below returns at once. Before a timed sleep it is
    /// set to 1, which silences announcements: memory freed from then on expires after
    /// the planned wake (`due` ≤ now + delay), so the wake finds it anyway.
    ///
    /// After the main thread's `pthread_exit` (`mainThreadGone`) no wait is longer than
    /// `poll`: the purger looks before each pass whether it is the last thread, at `poll`
    /// intervals that double from `alonePollFirst` after the hint of the main thread's end
    /// (`pokeAlone`), and ends when it is (when the C library counts only swmalloc's own
    /// threads, it stops the reporter for good first). It reads the hint after clearing the signal word, and again after setting it to 1
    /// before a timed wait (all sequentially consistent): a hint it misses at the first
    /// read is set after it, and either the word's 2 that follows makes the untimed wait
    /// return, or the second read sees it (review R98: without that read, a hint between
    /// the pass and the store of 1 was overwritten, and the purger slept the whole purge
    /// delay, up to 1,000 s, keeping the process alive). It makes no last pass then: the
    /// process ends with it.
    private static func run(forkedStart: Bool) -> UnsafeMutableRawPointer? {
        if forkedStart && !claimForkedStart(Globals.purgerState) {
            ownThreadEnding()
            return nil
        }
        var poll = alonePollFirst
        // After a thread's `pokeEnding`: the C library's thread count at the last look
        // (0: no such poke is being followed), the poll to go back to, and the look that
        // was planned before the poke, which the purger keeps (`resumeAt`, once).
        var endingThreads: UInt32 = 0
        var pollBeforeEnding = alonePollFirst
        var plannedLook: UInt64 = 0
        var lookBeforeEnding: UInt64 = 0
        var resumeAt: UInt64 = 0
        var sleeper = FutexSleeper()
        while true {
            if stopped {
                if Globals.purgerEndNow.loadSequentiallyConsistent() == 0 {
                    pass(now: OS.nowNanoseconds(), delay: 0, force: false, last: true)
                } else {
                    releaseParkedNow()
                }
                ownThreadEnding()
                return nil
            }
            signal.pointee.store(0, ordering: .sequentiallyConsistent)
            let gone = Globals.mainThreadGone.loadSequentiallyConsistent() != 0
            if gone {
                let hint = Globals.purgerAloneHint.exchange(0)
                if hint & aloneHintMainGone != 0 {
                    endingThreads = 0
                } else if hint & aloneHintEnding != 0 && endingThreads == 0 {
                    endingThreads = swmshim_glibc_threads() &+ 1   // the first look counts as fewer
                    pollBeforeEnding = poll
                    lookBeforeEnding = plannedLook
                }
                if hint != 0 {
                    poll = alonePollFirst
                    Globals.purgerAlonePoll.store(UInt(poll))
                }
                let threads = swmshim_glibc_threads()
                if endingThreads != 0 {
                    if threads < endingThreads {
                        endingThreads = threads
                    } else if poll >= aloneFollowQuiet {
                        endingThreads = 0
                        poll = pollBeforeEnding
                        resumeAt = lookBeforeEnding
                        Globals.purgerAlonePoll.store(UInt(poll))
                    }
                }
                if threads <= 1 {
                    _ = Globals.purgerState.compareExchange(expected: 1, desired: 2)
                    swmshim_become_last_thread()
                    ownThreadEnding()
                    return nil
                }
                // Looks again soon after stopping a running reporter, once: one blocked in a
                // `write` stays (review R106: a poll reset at every turn woke the purger
                // 900 times a second meanwhile).
                if onlyOwnThreadsLeft() && SignalReport.stopForGood() { poll = alonePollFirst }
            }
            Counters.shared.pointee.purgerWakeups.wrappingAdd(1, ordering: .relaxed)
            let delay = Options.current.pointee.purgeDelayNanoseconds
            let now = OS.nowNanoseconds()
            let oldest = pass(now: now, delay: delay, force: false)
            // After the main thread's end, the longest wait: `poll`, or less, once, to keep
            // the look planned before quick looks that found no thread ending (review R112:
            // counted from their end, the exit came up to a second later than without them).
            var aloneWait = poll
            if resumeAt != 0 {
                aloneWait = resumeAt > now &+ alonePollFirst ? min(poll, resumeAt - now) : alonePollFirst
                resumeAt = 0
            }
            if oldest == .max {
                plannedLook = now &+ aloneWait
                if !stopped && !sleeper.wait(Globals.purgerSignal, 0, timeout: gone ? aloneWait : 0) { stopSleeping() }
            } else {
                let due = oldest &+ delay
                let floor = delay / 8 > 1_000_000 ? delay / 8 : 1_000_000
                var wait = due > now &+ floor ? due - now : floor
                if gone && wait > aloneWait { wait = aloneWait }
                plannedLook = now &+ wait
                signal.pointee.store(1, ordering: .sequentiallyConsistent)
                if !stopped && Globals.purgerAloneHint.loadSequentiallyConsistent() == 0 {
                    if !sleeper.wait(Globals.purgerSignal, 1, timeout: wait) { stopSleeping() }
                }
            }
            if gone {
                poll = poll < alonePollMax / 2 ? poll &* 2 : alonePollMax
                Globals.purgerAlonePoll.store(UInt(poll))
            }
        }
    }

    /// Claims the state of one of swmalloc's thread kinds (the purger's, the reporter's:
    /// 0 not started, 1 running, 2 stopped for good) for a start from this thread, 0 → 1,
    /// and returns the fork epoch to hand the thread (`Globals.forkEpoch`, read after the
    /// claim); nil when another start took it or it was stopped for good. A fork (from a
    /// signal handler) between the claim and the read resets the state in the child
    /// (`forkChild`), where the claim is made again.
    static func claimStart(_ state: AtomicWord) -> UInt? {
        while state.compareExchange(expected: 0, desired: 1).exchanged {
            let epoch = Globals.forkEpoch.loadSequentiallyConsistent()
            if state.loadSequentiallyConsistent() == 1 { return epoch }
        }
        return nil
    }

    /// A thread whose start's fork epoch is not its process's (`swmshim_thread_start`): a
    /// fork child reset the kind's state after its creator claimed it (the fork came from
    /// a signal handler in the creator, after the claim and before the clone, whose copy in
    /// the child made the thread there). It runs if it claims the state (0 → 1), or to its
    /// end if the state is 2 (stopped for good); where another start took the state
    /// meanwhile, that thread runs and this one ends (review R105: two purgers, one of them
    /// counted, and a process that never ended; and a purger that ran with the state at 0,
    /// which the main thread's end then did not wake).
    static func claimForkedStart(_ state: AtomicWord) -> Bool {
        state.compareExchange(expected: 0, desired: 1).exchanged || state.loadSequentiallyConsistent() == 2
    }

    /// After an announcement's wake: where the kernel refuses it (`Futex.refused`: a
    /// filter installed while the purger slept without a timeout), the purger is off for
    /// good (`stopSleeping`).
    private static func stopIfRefused(_ result: Int) {
        if Futex.refused(result) { stopSleeping() }
    }

    /// Where futex does not work, the purger is off for good, as with `background=0`, and
    /// owners purge on their own slow paths. Where its wait is refused or returns at once
    /// (`FutexSleeper`: a filter answering EPERM, ENOSYS, EAGAIN, EINTR, ETIMEDOUT or 0), the purger
    /// makes its last pass and its thread ends (before, it went round its loop without
    /// sleeping: review R93, 0.65 … 0.98 s of CPU in every second the program slept);
    /// where a wake is refused, the purger sleeps on, never woken, and the owners' own
    /// purges take over (before, what was freed from then on stayed resident: review R95,
    /// 265 MB).
    private static func stopSleeping() {
        _ = Globals.purgerState.compareExchange(expected: 1, desired: 2)
    }

    /// The purger's end before the process's last thread (`endBeforeLastThread`): no pass
    /// (the process is ending), but the heaps parked with it are released, since nothing
    /// else would release them if the program went on (a key destructor of the last
    /// thread's that starts a thread: review R102, 106 MB kept).
    private static func releaseParkedNow() {
        Globals.passLock.lock()
        _ = Heap.releaseParked(now: OS.nowNanoseconds(), delay: 0)
        Globals.passLock.unlock()
    }

    /// One pass over everything that may hold memory waiting for its purge; returns when
    /// the oldest memory still waiting was freed (`UInt64.max`: nothing waits). With
    /// `force` (`swm_collect`) everything free is purged and every other heap is asked to
    /// retire its empty class pages at its next slow path. `last`: the stopped purger's
    /// last pass, which walks the page lists whenever a free was noted or lists wait
    /// (review R73: skipped within 10 ms of the previous walk, it left 64 MiB that other
    /// threads freed into a sleeping thread's pages resident for good after the main
    /// thread's `pthread_exit`).
    ///
    /// Under the pass lock, which a fork takes first: a fork never comes in the middle of
    /// a pass, whose steps leave a heap half-changed while they hold its span lock but not
    /// the registry lock (a child that inherited such a heap as its own broke its lists).
    @discardableResult
    static func pass(now: UInt64, delay: UInt64, force: Bool, last: Bool = false) -> UInt64 {
        Globals.passLock.lock()
        defer { Globals.passLock.unlock() }
        let d = force ? 0 : delay
        // The heaps' page lists are walked for other threads' frees (`Heap.releaseOthersFrees`)
        // when one was noted since the last walk, at most once per `othersWalkGap` (a busy
        // program notes them all the time; the note stays until its walk), or when lists
        // the last walk left waiting are due. Frees noted before a walk are seen by it (the
        // note is cleared first); the pages it retires wait for the delay, so the next pass
        // is due then at the latest. A forced pass (`swm_collect`, `malloc_trim`) walks
        // too, unless nothing can have come free since another forced pass walked less
        // than `othersWalkGap` ago (`forcedWalkNeeded`).
        let noted = Globals.othersFreesNoted.loadSequentiallyConsistent() != 0
        let gapEnd = Globals.othersWalkAt.pointee &+ othersWalkGap
        let carried = Globals.othersFreesDue.pointee
        let forcedGapEnd = Globals.forcedWalkAt.pointee &+ othersWalkGap
        // Lists left waiting by a walk, not the walk a skipped forced pass left due.
        let waiting = carried != 0 && Globals.forcedWalkOwed.pointee == 0
        let forcedWalk = force && forcedWalkNeeded(noted: noted || waiting, now: now, gapEnd: forcedGapEnd)
        let walk = forcedWalk || (noted && (last || now >= gapEnd)) || (carried != 0 && (last || now >= carried))
        var oldest = UInt64.max
        if walk && noted {
            _ = Globals.othersFreesNoted.exchange(0)   // sequentially consistent: see `noteOthersFree`
            oldest = now
        } else if noted {
            oldest = gapEnd > d ? gapEnd &- d : 0
        }
        oldest = min(oldest, Heap.releaseParked(now: now, delay: d))
        // A walk owed to a skipped forced pass is made as that pass would have made it.
        let owed = walk && Globals.forcedWalkOwed.pointee != 0
        let heaps = purgeHeaps(now: now, delay: d, requestCollect: force, othersFrees: walk,
                               othersDelay: force || last || owed ? 0 : max(delay, remoteFreesDelay))
        oldest = min(oldest, heaps.spans)
        if walk {
            Globals.othersWalkAt.pointee = now
            Globals.othersFreesDue.pointee = heaps.othersFrees == .max ? 0 : heaps.othersFrees
            if forcedWalk || owed {
                Globals.forcedWalkAt.pointee = now
                Globals.forcedWalkOwed.pointee = 0
            }
        } else if force {
            // A skipped forced walk: the purger makes it when the gap ends.
            Globals.othersFreesDue.pointee = forcedGapEnd
            Globals.forcedWalkOwed.pointee = 1
            announce()
        }
        // Lists waiting: the pass due when they are (a pass is due `d` after the oldest
        // time it is given) walks the page lists again.
        let due = Globals.othersFreesDue.pointee
        if due != 0 { oldest = min(oldest, due > d ? due &- d : 0) }
        oldest = min(oldest, collectAbandoned(now: now, delay: d))
        oldest = min(oldest, UnsafeMutablePointer<Segment>.purgeCache(now: now, delay: d))
        oldest = min(oldest, Huge.purgeCache(now: now, delay: d))
        return oldest
    }

    /// Whether a forced pass walks every heap's page lists: always, unless nothing was
    /// noted or left waiting since the last walk (`pending`: every free into another
    /// thread's page is noted, `noteOthersFree`) and another forced pass walked less than
    /// `othersWalkGap` ago (`gapEnd`). What the walk would find then came from the
    /// owners' own frees into pages others had freed into (their last block freed by the
    /// owner): the pass leaves the walk due at the gap's end, when the purger makes it as
    /// a forced pass would (every thread-free list purged; the pages it retires wait for
    /// the purge delay). Where no purger runs (not started yet, `background=0`), every
    /// forced pass walks (review R108: what a skipped one left stayed for good). A
    /// program that calls `malloc_trim` thousands of times a second (stress-ng's `malloc`
    /// stressor: 64 % of its time walked page lists, one trim ~1 ms) walks at most once
    /// per gap. Only forced walks count: after the purger's walk, an owner's last frees
    /// that no note announced were left by the program's only trim, and stayed for good
    /// (review R107).
    private static func forcedWalkNeeded(noted pending: Bool, now: UInt64, gapEnd: UInt64) -> Bool {
        pending || !isRunning || now >= gapEnd
    }

    /// Purges the free spans of every live heap whose span lock is free.
    ///
    /// The walk hands over between the registry lock and a heap's span lock: with the
    /// heap's span lock held, the registry lock is dropped during the purge, so threads
    /// can start and exit meanwhile. The heap cannot leave the registry while its span
    /// lock is held (`detach` takes it first), so its `nextLive` is read again, under the
    /// registry lock, before the span lock is released (a heap being released holds its
    /// span lock until it has left the registry, see `Heap.release`). Lock order: registry,
    /// then a span lock only by `tryLock` (never waits); the registry lock is taken while
    /// a span lock is held here and by a heap's release, and no one waits for a span lock
    /// while holding the registry lock, so the two orders cannot deadlock.
    ///
    /// With `othersFrees` (a walk of the page lists is due: see `pass`) it first gives back
    /// what other threads freed into each heap's pages (`Heap.releaseOthersFrees`); a
    /// thread-free list is purged once it stayed the same for `othersDelay`. A heap whose
    /// lock it cannot take makes the next pass walk again (its lists are due now). Returns when the
    /// oldest free span still waiting was freed, and when the first thread-free list still
    /// waiting is due (`UInt64.max`: none).
    private static func purgeHeaps(now: UInt64, delay: UInt64, requestCollect: Bool, othersFrees: Bool,
                                   othersDelay: UInt64) -> (spans: UInt64, othersFrees: UInt64) {
        var oldest = UInt64.max
        var remoteWaiting = UInt64.max
        let me = Heap.current.raw
        Globals.heapsLock.lock()
        var cursor = Globals.liveHeaps.pointee
        while let raw = cursor {
            let heap = Heap(raw)
            if requestCollect && raw != me { heap.state.pointee.collectRequested.store(1, ordering: .relaxed) }
            if !heap.spanLock.tryLock() {
                // Its owner is inside a slow path and purges its own spans; its pages wait
                // for the next pass.
                oldest = min(oldest, now)
                if othersFrees { remoteWaiting = min(remoteWaiting, now &+ delay) }
                cursor = heap.state.pointee.nextLive
                continue
            }
            Globals.heapsLock.unlock()
            if othersFrees { remoteWaiting = min(remoteWaiting, heap.releaseOthersFrees(now: now, delay: othersDelay)) }
            // Only a heap where some free span may wait: `purgeWaiting` is set under this
            // lock by every `retire` (a walk of every segment's spans for nothing cost
            // `malloc_trim` as much as the page lists).
            if heap.state.pointee.purgeWaiting { oldest = min(oldest, heap.purgeSegments(now: now, delay: delay)) }
            Globals.heapsLock.lock()
            cursor = heap.state.pointee.nextLive
            heap.spanLock.unlock()
        }
        Globals.heapsLock.unlock()
        return (oldest, remoteWaiting)
    }

    /// The shortest time between two walks of the heaps' page lists that noted frees ask
    /// for: each walk visits every page of every heap (`releaseOthersFrees`), and with
    /// every remote free noted, a busy program with a purge delay of 0 or 1 ms would ask
    /// for one at every pass (review R72: 1,300 … 1,900 wakeups in 2 s).
    static let othersWalkGap: UInt64 = 10_000_000

    /// The shortest time a thread-free list stays the same before the purger purges its
    /// blocks, whatever the purge delay (`swm_collect` does not wait): each block costs a
    /// `madvise` and, when its owner hands it out again, page faults, and a busy owner
    /// collects such lists within milliseconds. With the delay's 0 or 1 ms, 4 threads
    /// that exchanged 4 … 128 KiB blocks with short pauses verified 0.42 M blocks in 6 s
    /// instead of 0.7 … 1.2 M (review R70).
    static let remoteFreesDelay: UInt64 = 50_000_000

    /// True for one caller per half purge delay (at least 1 ms), process-wide: the heap
    /// whose `tidy` walks the abandoned segments in the purger's place while none runs.
    /// Without it every new heap's first periodic slow path walked the whole list under
    /// `abandonedLock`: with `background=0`, threads that allocate in their key
    /// destructors (a heap attached for each call) queued on that lock, 5 of 8 in one
    /// stack sample, and finished 2,328 threads in 10 s against 8,048 with the purger (an
    /// outside review). The purger and `swm_collect` walk without it.
    static func claimAbandonedWalk(now: UInt64) -> Bool {
        let gate = Globals.nextAbandonedWalk
        let next = gate.loadRelaxed()
        if now < UInt64(next) { return false }
        let half = Options.current.pointee.purgeDelayNanoseconds / 2
        let following = now &+ (half > 1_000_000 ? half : 1_000_000)
        return gate.compareExchange(expected: next, desired: UInt(following)).exchanged
    }

    /// Collects the blocks other threads freed into abandoned segments, returns their
    /// empty pages to the free spans, purges the expired ones, and retires segments that
    /// came out empty (to the segment cache). Exited threads' memory thus goes back even
    /// when no live thread adopts it.
    ///
    /// Safe without an owner: under the abandoned list's lock no adopter can take these
    /// segments, their pages' `heap` is 0 so remote frees only push to `threadFree`
    /// (collected by an atomic exchange), and nothing else touches their spans or their
    /// pages' free lists. The OS pages inside the free blocks of pages that live blocks
    /// keep go back too (`Page.purgeFreeBlocks`): exited threads' memory that no thread
    /// adopted; at once with `delay` 0 (`swm_collect`, or a zero purge delay), else once
    /// the page's free list stayed the same for the delay (`purgeStaleFreeBlocks`). The
    /// purger's passes call it, and while no purger runs, owners' `Heap.tidy` (under
    /// their span lock, which comes before the abandoned list's in the lock order, as in
    /// `acquireSpan`).
    static func collectAbandoned(now: UInt64, delay: UInt64) -> UInt64 {
        if Globals.abandonedHead.pointee == nil { return .max }
        #if DEBUG
        runCollectHook()
        #endif
        var oldest = UInt64.max
        Globals.abandonedLock.lock()
        var previous: UnsafeMutablePointer<Segment>? = nil   // the list is linked through `next` only
        var cursor = Globals.abandonedHead.pointee
        while let seg = cursor {
            cursor = seg.pointee.next
            seg.forEachPage { page in
                page.collectThreadFree()
                if page.pointee.used == 0 {
                    seg.returnSpan(page, now: now, purgeNow: false)
                } else if delay == 0 {
                    // `swm_collect` (or a zero purge delay): the free blocks of a page kept
                    // by live ones too; no one takes them while the lock is held.
                    page.purgeFreeBlocks()
                } else {
                    oldest = min(oldest, purgeStaleFreeBlocks(page, now: now, delay: delay))
                }
            }
            if seg.pointee.usedSlices == 0 {
                // Retired under the lock (then the cache's): a `swm_collect` that takes
                // this lock after us finds the segment in the cache, and purges it.
                if let previous { previous.pointee.next = cursor } else { Globals.abandonedHead.pointee = cursor }
                seg.pointee.next = nil
                Counters.shared.pointee.abandoned.wrappingSubtract(1, ordering: .relaxed)
                seg.retireEmpty(purgeNow: delay == 0)
            } else {
                oldest = min(oldest, seg.purgeExpired(now: now, delay: delay))
                previous = seg
            }
        }
        Globals.abandonedLock.unlock()
        return oldest
    }

    /// The decay for the free blocks of an abandoned page that live blocks keep: once its
    /// free list stayed the same for `delay`, the OS pages inside its blocks go back
    /// (`Page.purgeFreeBlocks`, blocks above 4 KiB + 16 bytes), once. The list is known
    /// by its first block and the page's blocks in use (`used`, in the top bits, as a
    /// thread-free word carries its count): a free comes first, a collect of other
    /// threads' frees lowers `used` (it may append them behind the first block: review
    /// R113 found 42 MB freed into a page purged before never purged). The page's
    /// `remoteSeen` fields, the purger's for a thread-free list while the page has an
    /// owner, remember it here (`remotePurged` once purged); they are cleared when the
    /// page is abandoned and when it is adopted. Returns when the list was first seen as
    /// it is while it still waits (it is due `delay` later; `UInt64.max`: nothing waits).
    ///
    /// Before, only `swm_collect` and a zero purge delay purged them: an exited thread's
    /// blocks freed around the ones it left live stayed resident for good where a
    /// sleeping thread's went back (review R110: 144 MB for 26 MB live; 35 MB after a trim).
    private static func purgeStaleFreeBlocks(_ page: UnsafeMutablePointer<Page>, now: UInt64, delay: UInt64) -> UInt64 {
        if page.pointee.kind != .small || Int(page.pointee.blockSize) <= Page.smallestPurgedBlock { return .max }
        guard let head = page.pointee.free else { return .max }
        let word = UInt(bitPattern: head) | UInt(page.pointee.used) << UnsafeMutablePointer<Page>.threadFreeCountShift
        if page.pointee.remoteSeen == word | Page.remotePurged { return .max }
        let due = Heap.remoteDue(page, word, now: now, delay: delay)
        if due > now { return due &- delay }
        page.purgeFreeBlocks()
        page.pointee.remoteSeen = word | Page.remotePurged
        return .max
    }

    #if DEBUG
    /// Debug builds: calls the test hook set with `swm_debug_set_collect_hook`, if any.
    @inline(never)
    private static func runCollectHook() {
        guard let hook = Globals.collectHook.pointee else { return }
        typealias Hook = @convention(c) () -> Void
        unsafeBitCast(hook, to: Hook.self)()
    }
    #endif

    /// `swm_collect` / `malloc_trim`: the calling thread's own heap first (its remote
    /// batches, its empty class pages, the OS pages inside free blocks of its pages that
    /// still hold live ones, every free span), then a forced pass over the whole
    /// process (which also retires every heap's full pages that other threads emptied,
    /// this thread's included), and last, under an address-space or data limit (`ulimit -v`,
    /// `ulimit -d`), the
    /// address space of the empty segments (all but each one's header slice,
    /// `releaseAddressSpace`), so that the program's own `mmap` can use it, as after
    /// glibc's `malloc_trim` (an outside review: Python freed 600 MB under `ulimit -v`,
    /// called `malloc_trim(0)`, and its 600 MB `mmap` still failed). Only under a limit:
    /// a segment whose released slices the program's own mappings took meanwhile cannot
    /// be mapped whole again and is dropped, its header slice kept mapped for good (see
    /// `Segment.create`), so a program that trims often and maps memory itself lost 64
    /// KiB of address space and a kernel mapping per segment and trim (another review).
    /// Returns the bytes given back to the OS (purged or unmapped) meanwhile; the address
    /// space is not counted.
    static func collectAll() -> UInt {
        if Globals.forkOrphans.pointee != 0 { Heap.reclaimForkOrphans() }
        Heap.reapDeadOwners()
        let counters = Counters.shared
        let purgedBefore = counters.pointee.purgedTotal.load(ordering: .relaxed)
        let cachedBefore = counters.pointee.hugeCached.load(ordering: .relaxed)
        let current = Heap.current
        if !current.isEmpty {
            current.sendRemoteBatches()
            current.spanLock.lock()
            current.retireEmptyClassPages()
            current.purgeFreeBlocks()
            current.tidy(force: true)
            current.spanLock.unlock()
        }
        pass(now: OS.nowNanoseconds(), delay: 0, force: true)
        if OS.addressSpaceLimited { _ = UnsafeMutablePointer<Segment>.releaseAddressSpace() }
        // Bytes purged, plus huge-cache bytes unmapped (the cache only shrinks in a pass;
        // another thread's free may grow it meanwhile, which this does not count).
        let purged = counters.pointee.purgedTotal.load(ordering: .relaxed) &- purgedBefore
        let cachedAfter = counters.pointee.hugeCached.load(ordering: .relaxed)
        return purged &+ (cachedBefore > cachedAfter ? cachedBefore &- cachedAfter : 0)
    }
}
