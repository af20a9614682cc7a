// Memory layer: where process-wide state lives.

import CSwmShim
import Synchronization

/// Fixed offsets of the process-wide state inside the shim's zero-filled static storage
/// (`swmshim_globals`). Static storage is valid before the first malloc, needs no
/// initialisation order and is never allocated.
enum Globals {
    @inline(__always) static var base: UnsafeMutableRawPointer { swmshim_globals() }

    /// 0 = not initialised, 1 = initialising, 2 = ready.
    static var initState: AtomicWord { AtomicWord(base) }
    // base + 16: handlers-registered flag (Process); base + 24: last aligned mapping (OSMemory).
    /// Raised by the `stats_signal` handler, cleared by the reporter thread (a futex word).
    static var reportRequested: UnsafeMutablePointer<UInt32> { (base + 32).assumingMemoryBound(to: UInt32.self) }
    /// 1 while the signal-report thread exists in this process.
    static var reporterRunning: AtomicWord { AtomicWord(base + 40) }
    /// Serialises process initialisation.
    static var initLock: FutexLock { FutexLock((base + 8).assumingMemoryBound(to: UInt32.self)) }
    /// Held for a whole purge pass (`Purger.pass`: the purger's, or `swm_collect`'s), and
    /// by a fork: the pass works on other threads' heaps (their span locks) and on heaps
    /// it took off the parked list without the registry lock, which a fork child must not
    /// inherit half-done. The outermost lock: taken while holding no other.
    static var passLock: FutexLock { FutexLock((base + 56).assumingMemoryBound(to: UInt32.self)) }
    /// Guards the list of abandoned segments.
    static var abandonedLock: FutexLock { FutexLock((base + 64).assumingMemoryBound(to: UInt32.self)) }
    /// Head of the abandoned-segment list (segments of exited threads with live blocks).
    static var abandonedHead: UnsafeMutablePointer<UnsafeMutablePointer<Segment>?> {
        (base + 72).assumingMemoryBound(to: UnsafeMutablePointer<Segment>?.self)
    }
    /// The cache of empty segments (purged, still mapped), shared by all threads; its
    /// lock, its list head (linked through `Segment.next`) and its length.
    static var segmentCacheLock: FutexLock { FutexLock((base + 80).assumingMemoryBound(to: UInt32.self)) }
    static var segmentCacheHead: UnsafeMutablePointer<UnsafeMutablePointer<Segment>?> {
        (base + 88).assumingMemoryBound(to: UnsafeMutablePointer<Segment>?.self)
    }
    static var segmentCacheCount: UnsafeMutablePointer<Int> { (base + 96).assumingMemoryBound(to: Int.self) }
    /// Retained segments (under `segmentCacheLock`): empty segments beyond the cache, whose
    /// memory went back to the OS but whose address range stays reserved (see
    /// `Segment.retireEmpty`); linked through `Segment.next`, and their number.
    static var retainedHead: UnsafeMutablePointer<UnsafeMutablePointer<Segment>?> {
        (base + 104).assumingMemoryBound(to: UnsafeMutablePointer<Segment>?.self)
    }
    static var retainedCount: UnsafeMutablePointer<Int> { (base + 112).assumingMemoryBound(to: Int.self) }
    /// Guards the heap registry (all heaps, and the pool of unused heap records).
    /// Serializes the statistics reports, so that two (a signal's and the one at exit, say)
    /// written to the same descriptor never interleave.
    static var reportLock: FutexLock { FutexLock((base + 120).assumingMemoryBound(to: UInt32.self)) }
    /// Nonzero once the report at exit is written (under `reportLock`).
    static var exitReported: UnsafeMutablePointer<UInt32> { (base + 124).assumingMemoryBound(to: UInt32.self) }
    static var heapsLock: FutexLock { FutexLock((base + 128).assumingMemoryBound(to: UInt32.self)) }
    /// Head of the list of live heaps (for statistics).
    static var liveHeaps: UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        (base + 136).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    }
    /// Head of the list of unused heap records (recycled when threads exit).
    static var freeHeaps: UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        (base + 144).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    }
    /// The fork guard: kernel id of the thread whose fork holds the allocator locks (0
    /// when none; a futex word). Nesting is counted per thread (`swmshim_fork_depth`).
    static var forkOwner: UnsafeMutablePointer<UInt32> { (base + 152).assumingMemoryBound(to: UInt32.self) }
    /// Guards the table and the cache of over-aligned huge blocks (alignment above 2 MiB,
    /// see OverAligned.swift).
    static var overAlignedLock: FutexLock { FutexLock((base + 168).assumingMemoryBound(to: UInt32.self)) }
    /// The live over-aligned blocks' table (`OverAlignedTable`): its slots, their number
    /// and the entries in use.
    static var overAlignedTable: UnsafeMutablePointer<UnsafeMutablePointer<UInt>?> {
        (base + 176).assumingMemoryBound(to: UnsafeMutablePointer<UInt>?.self)
    }
    static var overAlignedCapacity: UnsafeMutablePointer<Int> { (base + 1632).assumingMemoryBound(to: Int.self) }
    static var overAlignedCount: UnsafeMutablePointer<Int> { (base + 1640).assumingMemoryBound(to: Int.self) }
    /// The cache of freed over-aligned mappings (under `overAlignedLock`, newest first).
    static var overAlignedCacheHead: UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        (base + 1624).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    }
    /// Debug builds: a test hook called by a remote free right after the compare-and-swap
    /// that publishes its blocks (`swm_debug_set_remote_hook`), to hold that window open.
    static var remoteFreeHook: UnsafeMutablePointer<UnsafeRawPointer?> {
        (base + 184).assumingMemoryBound(to: UnsafeRawPointer?.self)
    }
    /// The background purger: 0 not started, 1 running, 2 off (`background=0`, or stopped
    /// for good at the main thread's `pthread_exit`). See `Purger`.
    static var purgerState: AtomicWord { AtomicWord(base + 48) }
    /// The purger's futex word: 1 when something was announced to wait for its purge
    /// delay since the purger last looked.
    static var purgerSignal: UnsafeMutablePointer<UInt32> { (base + 160).assumingMemoryBound(to: UInt32.self) }
    /// The cache of freed huge mappings (see `Huge`): its lock, its list (linked through
    /// `Segment.next`, newest first), and its mapped bytes and length.
    static var hugeCacheLock: FutexLock { FutexLock((base + 192).assumingMemoryBound(to: UInt32.self)) }
    static var hugeCacheHead: UnsafeMutablePointer<UnsafeMutablePointer<Segment>?> {
        (base + 200).assumingMemoryBound(to: UnsafeMutablePointer<Segment>?.self)
    }
    static var hugeCacheBytes: UnsafeMutablePointer<Int> { (base + 208).assumingMemoryBound(to: Int.self) }
    static var hugeCacheCount: UnsafeMutablePointer<Int> { (base + 216).assumingMemoryBound(to: Int.self) }
    /// In a fork child: 1 until the heaps of the threads that were not copied are let go
    /// (`Heap.reclaimForkOrphans`, under `heapsLock`).
    static var forkOrphans: UnsafeMutablePointer<Int> { (base + 224).assumingMemoryBound(to: Int.self) }
    /// Parked heaps (their threads exited; see `Heap.park`), newest first, linked through
    /// `HeapState.nextParked`, under `heapsLock`.
    static var parkedHeaps: UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        (base + 232).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    }
    /// 1 when another thread's free went to a page (its owner may not look at it soon)
    /// since the purger's last walk of the page lists: a pass walks them then, and a later
    /// one purges what that walk retired (see `Purger.noteOthersFree`).
    static var othersFreesNoted: AtomicWord { AtomicWord(base + 240) }
    /// Heaps on the parked list (under `heapsLock`; at most `Heap.parkedMax`).
    static var parkedCount: UnsafeMutablePointer<Int> { (base + 248).assumingMemoryBound(to: Int.self) }
    /// Options, parsed once at start-up.
    static var options: UnsafeMutablePointer<Options> { (base + 256).assumingMemoryBound(to: Options.self) }
    static let optionsBytes = 256
    /// Live heaps above which the next new heap first looks for heaps of threads that
    /// ended without giving theirs up (`Heap.reapDeadOwners`; under `heapsLock`).
    static var reapMark: UnsafeMutablePointer<UInt> { (base + 1536).assumingMemoryBound(to: UInt.self) }
    /// The last origin given to a huge mapping (`Huge.newOrigin`).
    static var hugeOrigins: AtomicWord { AtomicWord(base + 1544) }
    /// The process this memory belongs to (`getpid` at start-up and in a fork child): a
    /// vfork child shares the memory but has a pid of its own (see `Process.mayStartThread`).
    static var processId: UnsafeMutablePointer<Int32> { (base + 1552).assumingMemoryBound(to: Int32.self) }
    /// Debug builds: a test hook called by a heap's release after giving its segments up
    /// and before leaving the registry (`swm_debug_set_release_hook`).
    static var releaseHook: UnsafeMutablePointer<UnsafeRawPointer?> {
        (base + 1560).assumingMemoryBound(to: UnsafeRawPointer?.self)
    }
    /// In a fork child: until when (`OS.nowNanoseconds`; 0: no longer) heaps take the
    /// memory the threads that were not copied left before their own room
    /// (`Heap.hasRoom`): `Heap.forkReuseWindow` from the release of those threads' heaps.
    static var forkReuseUntil: UnsafeMutablePointer<UInt64> { (base + 1568).assumingMemoryBound(to: UInt64.self) }
    /// While no purger runs: when (`OS.nowNanoseconds`) a heap's `tidy` may next walk the
    /// abandoned segments in the purger's place (`Purger.claimAbandonedWalk`).
    static var nextAbandonedWalk: AtomicWord { AtomicWord(base + 1576) }
    /// When the purger's thread could not be created: the monotonic time (ns) before which
    /// no start is tried again (0: none failed). See `Purger.start`.
    static var purgerRetryAt: AtomicWord { AtomicWord(base + 1592) }
    /// Debug builds: segments visited by span requests (`Heap.takeOwnSpan`), read by
    /// `swm_debug_segment_visits`.
    static var segmentVisitCount: AtomicWord { AtomicWord(base + 1600) }
    /// The thread id of the thread reporting a fatal error (0: none). See `OS.beginFatal`.
    static var fatalThread: AtomicWord { AtomicWord(base + 1608) }
    /// When that thread called `abort` (`OS.abortFatal`, `OS.nowNanoseconds`; 0: not yet):
    /// its line is written (if the process goes on `OS.abortGrace` later, its SIGABRT
    /// handler jumped out).
    static var fatalAbortedAt: AtomicWord { AtomicWord(base + 1736) }
    /// Threads waiting in `OS.beginFatal` for that thread's abort, their own line unwritten.
    static var fatalWaiters: AtomicWord { AtomicWord(base + 1744) }
    /// The process that thread reports in (`getpid`): a child of `_Fork` (no fork handler)
    /// finds its parent's here.
    static var fatalProcess: AtomicWord { AtomicWord(base + 1752) }
    /// When the purger's next walk of the heaps' page lists is due for the thread-free
    /// lists the last walk left waiting (0: none waits), and when that walk was
    /// (`OS.nowNanoseconds`); under `passLock` (see `Purger.pass`).
    static var othersFreesDue: UnsafeMutablePointer<UInt64> { (base + 1648).assumingMemoryBound(to: UInt64.self) }
    static var othersWalkAt: UnsafeMutablePointer<UInt64> { (base + 1656).assumingMemoryBound(to: UInt64.self) }
    /// 1 once the main thread ended with `pthread_exit` and the purger stays, ending itself
    /// when it is the process's last thread (see `Purger.mainThreadGone`).
    static var mainThreadGone: AtomicWord { AtomicWord(base + 1664) }
    /// Set when the purger is to look soon whether it is the last thread (see
    /// `Purger.run`): `Purger.aloneHintMainGone` when the main thread's `pthread_exit` was
    /// announced, `Purger.aloneHintEnding` when threads are ending after it.
    static var purgerAloneHint: AtomicWord { AtomicWord(base + 1672) }
    /// 1 when a thread that is to be the process's last ends the purger
    /// (`Purger.endBeforeLastThread`): it returns without a last pass.
    static var purgerEndNow: AtomicWord { AtomicWord(base + 1680) }
    /// swmalloc's own threads (the purger, the signal reporter) that the C library may
    /// count, never more: the creator adds 1 once `pthread_create` returned (the C library
    /// counted the thread inside that call), unless a fork came since it claimed the
    /// thread's kind (`forkEpoch` moved: a fork child, where a thread made by that call
    /// adds 1 itself), so that each is counted in exactly the process it runs in (reviews
    /// R104, R105; `swmshim_thread_start`); the thread subtracts 1 just before it returns
    /// (it is counted until after). So it may fall short for a moment, never exceed. It is
    /// a signed count stored in a word (the thread's subtraction may come first). See
    /// `Purger.endBeforeLastThread`.
    static var ownThreads: AtomicWord { AtomicWord(base + 1688) }
    /// The same word, for `swmshim_thread_start`, which adds to it from C.
    static var ownThreadsWord: UnsafeMutablePointer<UInt> { (base + 1688).assumingMemoryBound(to: UInt.self) }
    /// Fork children this process's memory went through: +1 in each fork child
    /// (`Purger.forkChild`). A start of one of swmalloc's threads hands its thread the
    /// value it read after claiming its kind's state (`Purger.claimStart`); a thread
    /// that finds another value was made in a fork child whose reset of that state came
    /// after the claim (see `swmshim_thread_start`).
    static var forkEpoch: AtomicWord { AtomicWord(base + 1696) }
    /// The same word, for `swmshim_thread_start` and its threads, which read it from C.
    static var forkEpochWord: UnsafeMutablePointer<UInt> { (base + 1696).assumingMemoryBound(to: UInt.self) }
    /// When a forced pass (`swm_collect`, `malloc_trim`) last walked the page lists (under
    /// `passLock`; see `Purger.forcedWalkNeeded`).
    static var forcedWalkAt: UnsafeMutablePointer<UInt64> { (base + 1704).assumingMemoryBound(to: UInt64.self) }
    /// 1 when a forced pass skipped its walk and left it to the purger (under `passLock`;
    /// see `Purger.forcedWalkNeeded`).
    static var forcedWalkOwed: UnsafeMutablePointer<UInt64> { (base + 1712).assumingMemoryBound(to: UInt64.self) }
    /// After the main thread's end: the longest the purger sleeps before it looks again
    /// whether it is the last thread (its `poll`, nanoseconds; see `Purger.run`). A thread
    /// ending among the last ones hurries it only when that is long (see
    /// `Purger.endBeforeLastThread`).
    static var purgerAlonePoll: AtomicWord { AtomicWord(base + 1720) }
    /// When a thread ending among the last ones last asked the purger to look soon
    /// (`OS.nowNanoseconds`; see `Purger.endBeforeLastThread`).
    static var purgerEndingPokeAt: AtomicWord { AtomicWord(base + 1728) }
    /// Heaps that `Heap.reapDeadOwners` took and is still giving up (under `heapsLock`):
    /// the live heaps counter counts them until each is released.
    static var reapPending: UnsafeMutablePointer<Int> { (base + 1616).assumingMemoryBound(to: Int.self) }
    #if DEBUG
    /// Debug builds: a test hook called at each walk of the abandoned segments
    /// (`swm_debug_set_collect_hook`).
    static var collectHook: UnsafeMutablePointer<UnsafeRawPointer?> {
        (base + 1584).assumingMemoryBound(to: UnsafeRawPointer?.self)
    }
    #endif
    /// Process-wide counters.
    static var counters: UnsafeMutablePointer<Counters> { (base + 512).assumingMemoryBound(to: Counters.self) }
    static let countersBytes = 1024
    /// Counters folded in from exited threads: allocations and frees per size class,
    /// then large/huge bytes and counts (see `Stats`).
    static var exitedCounters: UnsafeMutablePointer<UInt> { (base + 4096).assumingMemoryBound(to: UInt.self) }
    static let exitedWords = 2 * SizeClass.count + 4
    /// Extension state (VOS module accounting) starts here.
    static let extensionOffset = 8192

    /// Checks that the Swift layouts fit their slots (run once at start-up).
    static func checkLayout() {
        if MemoryLayout<Options>.size > optionsBytes || MemoryLayout<Counters>.size > countersBytes
            || 4096 + exitedWords * 8 > extensionOffset {
            OS.fatal("internal error: global state layout does not fit its storage", pointer: nil)
        }
    }
}

/// Process-wide counters, updated with relaxed atomics on slow paths only.
struct Counters: ~Copyable {
    /// Bytes currently mapped from the OS (segments and huge blocks).
    let mapped: Atomic<UInt>
    /// Bytes ever returned to the OS with madvise (monotonic).
    let purgedTotal: Atomic<UInt>
    /// Bytes of free spans currently purged (not resident), within mapped segments.
    let purgedNow: Atomic<UInt>
    /// Normal segments currently mapped.
    let segments: Atomic<UInt>
    /// Bytes in live huge blocks (their mapped size).
    let hugeBytes: Atomic<UInt>
    /// The most `hugeBytes` has been (the huge cache's bound, see `Huge.cacheLimitBytes`).
    let hugePeak: Atomic<UInt>
    /// Huge blocks currently live, and their usable bytes.
    let hugeBlocks: Atomic<UInt>
    let hugeUsable: Atomic<UInt>
    /// Segments currently abandoned by exited threads.
    let abandoned: Atomic<UInt>
    /// Heaps currently attached to threads.
    let heaps: Atomic<UInt>
    /// Bytes of slices in small and large pages.
    let activeBytes: Atomic<UInt>
    /// Allocations refused for lack of memory (ENOMEM).
    let outOfMemory: Atomic<UInt>
    /// Times the background purger woke up (its whole CPU cost is these passes).
    let purgerWakeups: Atomic<UInt>
    /// Bytes of freed huge mappings kept for reuse (mapped, resident until purged).
    let hugeCached: Atomic<UInt>
    /// Small-block pages set up since start (`Page.format`): a count that keeps rising in
    /// a steady loop means pages are retired and set up again.
    let pagesFormatted: Atomic<UInt>

    /// The one instance, in the global storage.
    @inline(__always) static var shared: UnsafeMutablePointer<Counters> { Globals.counters }
}
