// Thread-heap layer: process start, thread start and exit, fork.
//
// A thread gets a heap on its first allocation (`attach`). When it exits, pthread calls
// `threadExited`: its empty pages go back, segments without live blocks are unmapped, and
// segments with live blocks are *abandoned* to a global list, from which any thread that
// needs memory reclaims them (`reclaimAbandoned`). So memory moves between threads, and
// blocks freed later by other threads are found by the reclaiming heap.

import CSwmShim
import Synchronization

extension Heap {
    /// Gives the calling thread a heap; nil when the OS has no memory for its record.
    /// With `registerExit` the thread-exit key holds it, so that its detach runs when the
    /// thread ends; without, the caller detaches it itself.
    @inline(never)
    static func attach(registerExit: Bool) -> Heap? {
        Process.initialize()
        guard let raw = takeRecord() else { return nil }
        let heap = Heap(raw)
        raw.initializeMemory(as: UnsafeMutablePointer<Page>.self, repeating: Heap.emptyPage,
                             count: SizeClass.directSlots)
        raw.advanced(by: stateOffset).initializeMemory(as: UInt8.self, repeating: 0, count: recordSize - stateOffset)
        Globals.heapsLock.lock()
        heap.state.pointee.nextLive = Globals.liveHeaps.pointee
        if let next = Globals.liveHeaps.pointee { Heap(next).state.pointee.prevLive = raw }
        Globals.liveHeaps.pointee = raw
        Globals.heapsLock.unlock()
        Counters.shared.pointee.heaps.wrappingAdd(1, ordering: .relaxed)
        swmshim_heap_set(raw)
        if registerExit { swmshim_thread_key_set(raw) }
        Process.registerHandlersOnce()
        return heap
    }

    /// A heap record from the pool (8 KiB each, carved from 64 KiB mappings, never unmapped).
    private static func takeRecord() -> UnsafeMutableRawPointer? {
        Globals.heapsLock.lock()
        defer { Globals.heapsLock.unlock() }
        if let record = Globals.freeHeaps.pointee {
            Globals.freeHeaps.pointee = record.load(as: UnsafeMutableRawPointer?.self)
            return record
        }
        let chunk = 64 * 1024
        guard let raw = OS.map(chunk) else { return nil }
        var offset = recordSize
        while offset < chunk {
            let record = raw + offset
            record.storeBytes(of: Globals.freeHeaps.pointee, as: UnsafeMutableRawPointer?.self)
            Globals.freeHeaps.pointee = record
            offset += recordSize
        }
        return raw
    }

    /// Detaches this heap from its thread: collects and returns what is free, abandons
    /// segments that still hold live blocks, folds its counters into the process totals and
    /// returns the record to the pool. The thread's TLS then points at the exited heap, so
    /// that a later call on this thread attaches nothing that would outlive it.
    func detach() {
        #if DEBUG
        if validate() != 0 { OS.fatal("heap invariants violated at thread exit", pointer: raw) }
        #endif
        sendRemoteBatch()
        swmshim_heap_set(swmshim_exited_heap_address())
        Extensions.heapDetaching(self)
        spanLock.lock()
        let purgeNow = releaseSegments()
        // Released before the registry lock below: no owner holds both (see `Purger`).
        spanLock.unlock()
        if !purgeNow { Purger.announce() }
        Stats.foldExited(self)
        Counters.shared.pointee.heaps.wrappingSubtract(1, ordering: .relaxed)
        Globals.heapsLock.lock()
        unregister()
        raw.storeBytes(of: Globals.freeHeaps.pointee, as: UnsafeMutableRawPointer?.self)
        Globals.freeHeaps.pointee = raw
        Globals.heapsLock.unlock()
    }

    /// Gives up every segment (span lock held): empty pages go back, segments without
    /// live blocks go to the segment cache, the others are abandoned for another thread
    /// to adopt. What comes free waits for the purge delay like any free memory (a new
    /// thread takes the cached segments first), unless no purger runs: then it is purged
    /// now, and the result says so.
    private func releaseSegments(forkOrphan: Bool = false) -> Bool {
        let purgeNow = Purger.isOff
        let now = OS.nowNanoseconds()
        let available = state.pointee.segments
        let full = state.pointee.fullSegments
        state.pointee.segments = nil
        state.pointee.fullSegments = nil
        for pass in 0..<2 {
            var seg = pass == 0 ? available : full
            while let s = seg {
                seg = s.pointee.next
                s.forEachPage { page in
                    page.collect()
                    if page.pointee.used == 0 {
                        s.returnSpan(page, now: now, purgeNow: purgeNow)
                    } else {
                        page.pointee.ownerTag.store(0, ordering: .relaxed)
                        // After this, remote frees tell no one; the adopter collects
                        // (see `Page.sendRemote`).
                        page.pointee.heap.store(0, ordering: .sequentiallyConsistent)
                        page.pointee.inFullList = false
                        page.pointee.forkOrphaned = page.pointee.forkOrphaned || forkOrphan
                        page.pointee.next = nil
                        page.pointee.prev = nil
                    }
                }
                if s.pointee.usedSlices == 0 {
                    s.retireEmpty(purgeNow: purgeNow)
                } else {
                    if purgeNow { s.purgeExpired(now: now, delay: 0) }
                    Heap.abandon(s)
                }
            }
        }
        return purgeNow
    }

    /// Takes this heap out of the registry (registry lock held).
    private func unregister() {
        let prevLive = state.pointee.prevLive
        let nextLive = state.pointee.nextLive
        if let prev = prevLive { Heap(prev).state.pointee.nextLive = nextLive }
        else { Globals.liveHeaps.pointee = nextLive }
        if let next = nextLive { Heap(next).state.pointee.prevLive = prevLive }
    }

    /// In a fork child, at its first allocation slow path (or `swm_collect`): the heaps
    /// of the threads that were not copied leave the registry (their counters folded into
    /// the totals), and each one's segments are given up as at a thread's exit, so the
    /// child adopts and reuses what it frees of their blocks. Deferred from the fork
    /// handler, so a child that only execs pays nothing.
    ///
    /// Why this is safe for a heap whose span lock was free at the fork: its owner was
    /// in no span operation, and whatever fast path it was in the middle of can only have
    /// left a block off its page's lists (a block lost to the child, or a page that never
    /// empties), never a block on a list twice: the walk below reads spans and pages'
    /// counts and rewrites the page links, not the class lists. A page's `used` may then
    /// be one off `capacity − |free|` (a pop cut between the list and the count): the
    /// page is marked `forkOrphaned` and the validator allows that one block. A heap whose span lock was
    /// held (its owner inside a slow path, or the purger) is left as it is: its memory
    /// stays out of reach, as a fork child of any allocator keeps its parent's other
    /// threads' caches.
    @inline(never)
    static func reclaimForkOrphans() {
        let me = Heap.current.raw
        Globals.heapsLock.lock()
        if Globals.forkOrphans.pointee != 0 {
            Globals.forkOrphans.pointee = 0
            var cursor = Globals.liveHeaps.pointee
            while let raw = cursor {
                let heap = Heap(raw)
                cursor = heap.state.pointee.nextLive
                if raw == me { continue }
                heap.unregister()
                Stats.foldExited(heap)
                Counters.shared.pointee.heaps.wrappingSubtract(1, ordering: .relaxed)
                if heap.spanLock.tryLock() {
                    _ = heap.releaseSegments(forkOrphan: true)
                    heap.spanLock.unlock()
                }
            }
        }
        Globals.heapsLock.unlock()
        Purger.announce()
    }

    /// Puts a segment with live blocks on the abandoned list.
    private static func abandon(_ seg: UnsafeMutablePointer<Segment>) {
        seg.pointee.heap = nil
        Globals.abandonedLock.lock()
        seg.pointee.prev = nil
        seg.pointee.next = Globals.abandonedHead.pointee
        Globals.abandonedHead.pointee = seg
        Globals.abandonedLock.unlock()
        Counters.shared.pointee.abandoned.wrappingAdd(1, ordering: .relaxed)
    }

    /// Adopts one abandoned segment: its pages join this heap's lists, blocks other threads
    /// freed meanwhile are collected, empty pages go back. Returns the segment (now this
    /// heap's; it may have been unmapped if it came out empty), or nil when none is left.
    func reclaimAbandoned() -> UnsafeMutablePointer<Segment>? {
        if Globals.abandonedHead.pointee == nil { return nil }
        Globals.abandonedLock.lock()
        let taken = Globals.abandonedHead.pointee
        if let seg = taken { Globals.abandonedHead.pointee = seg.pointee.next }
        Globals.abandonedLock.unlock()
        guard let seg = taken else { return nil }
        Counters.shared.pointee.abandoned.wrappingSubtract(1, ordering: .relaxed)
        seg.pointee.heap = raw
        seg.pointee.next = nil
        linkSegment(seg)
        let now = OS.nowNanoseconds()
        seg.forEachPage { page in
            page.pointee.heap.store(tag, ordering: .sequentiallyConsistent)
            page.collectThreadFree()
            if page.pointee.used == 0 {
                seg.returnSpan(page, now: now, purgeNow: false)
            } else if page.pointee.kind == .small && (page.pointee.free != nil || page.pointee.capacity < Int(page.pointee.reserved)) {
                pushClass(page)
            } else {
                pushFull(page)
            }
        }
        let st = state
        st.pointee.purgeWaiting = true
        Purger.announce()
        st.pointee.activeSlices += seg.pointee.usedSlices
        if st.pointee.activeSlices > st.pointee.activePeak { st.pointee.activePeak = st.pointee.activeSlices }
        return segmentChanged(seg) ? seg : nil
    }
}

/// Called by pthread when a thread that allocated exits.
private func threadExited(_ raw: UnsafeMutableRawPointer?) {
    guard let raw, raw != swmshim_empty_heap_address() else { return }
    Heap(raw).detach()
}

/// Process-wide start-up, exit and fork handling.
enum Process {
    /// Initialises options and the thread-exit key once; cheap after the first call.
    @inline(__always)
    static func initialize() {
        if Globals.initState.load() >= 2 { return }
        initializeSlow()
    }

    @inline(never)
    private static func initializeSlow() {
        Globals.initLock.lock()
        defer { Globals.initLock.unlock() }
        if Globals.initState.load() >= 2 { return }
        Globals.checkLayout()
        Segment.checkLayout()
        Heap.checkLayout()
        SizeClass.fillSlotTable()
        Options.load()
        Purger.configure()
        _ = swmshim_thread_key_create { threadExited($0) }
        Globals.initState.store(2)
    }

    /// Registers fork and exit handlers once, after the first heap exists: registering
    /// may itself call malloc, which then finds a ready heap.
    static func registerHandlersOnce() {
        let flag = AtomicWord(Globals.base + 16)
        if flag.load() != 0 { return }
        if !flag.compareExchange(expected: 0, desired: 1).exchanged { return }
        _ = swmshim_atfork({ Process.forkPrepare() }, { Process.forkParent() }, { Process.forkChild() })
        Extensions.processStarted()
    }

    /// The fork guard's word (the forking thread's kernel id, 0 when none) as an atomic.
    @inline(__always)
    private static var forkOwner: UnsafeMutablePointer<Atomic<UInt32>> {
        UnsafeMutableRawPointer(Globals.forkOwner).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Before fork: take every allocator lock, so the child never inherits one held by a
    /// thread that does not exist there.
    ///
    /// Reentrant: POSIX lets a signal handler call `fork`, and the signal may interrupt
    /// this very thread inside `fork` (in these handlers, or between them), or inside the
    /// allocator holding one of its locks. Each thread counts its forks in progress
    /// (thread-local, raised first, so a signal at any later point sees it). Only the
    /// outermost fork of a thread that holds no allocator lock takes the fork guard (a
    /// futex word holding the forking thread's kernel id, so forks of different threads
    /// take turns) and then every lock. A nested fork, or one that interrupted the
    /// allocator, takes nothing — this thread would wait for itself — and its child resets
    /// the locks; if the handler returns there, this one thread finishes what it
    /// interrupted.
    static func forkPrepare() {
        let depth = swmshim_fork_depth().unsafelyUnwrapped
        depth.pointee += 1
        if depth.pointee > 1 || swmshim_locks_held().pointee > 0 { return }
        let me = UInt32(bitPattern: swmshim_gettid())
        while true {
            let r = forkOwner.pointee.compareExchange(expected: 0, desired: me, ordering: .acquiring)
            // `original == me`: this thread's own guard, not yet cleared when a signal
            // interrupted its last `forkParent`.
            if r.exchanged || r.original == me { break }
            _ = swmshim_futex_wait(Globals.forkOwner, r.original)
        }
        Globals.initLock.lock()
        Globals.heapsLock.lock()
        Globals.abandonedLock.lock()
        Globals.segmentCacheLock.lock()
        Globals.overAlignedLock.lock()
        Globals.hugeCacheLock.lock()
        Extensions.forkPrepare()
        swmshim_fork_held().pointee = 1
    }

    /// After fork, in the parent: the outermost fork that took the locks releases them,
    /// then the guard.
    static func forkParent() {
        let depth = swmshim_fork_depth().unsafelyUnwrapped
        if depth.pointee > 1 || swmshim_fork_held().pointee == 0 {
            depth.pointee -= 1
            return
        }
        // `held` is cleared while the depth still says "inside fork", and the depth drops
        // while the locks are still counted as held: a signal at any point in between
        // sees a nested fork or a thread inside the allocator, and takes and releases
        // nothing.
        swmshim_fork_held().pointee = 0
        depth.pointee = 0
        Extensions.forkParent()
        Globals.hugeCacheLock.unlock()
        Globals.overAlignedLock.unlock()
        Globals.segmentCacheLock.unlock()
        Globals.abandonedLock.unlock()
        Globals.heapsLock.unlock()
        Globals.initLock.unlock()
        forkOwner.pointee.store(0, ordering: .releasing)
        _ = swmshim_futex_wake(Globals.forkOwner, Int32.max)
    }

    /// After fork, in the child: only the forking thread exists; every lock and the guard
    /// are reset. In the child of a nested fork the outer fork is still under way on this
    /// thread; its own after-fork handler runs later and finds them free.
    static func forkChild() {
        Extensions.forkChild()
        // The purger may have held this thread's span lock (it holds one without the
        // registry lock while it purges that heap); it does not exist here. The other
        // threads' heaps are let go at the first allocation slow path.
        let current = Heap.current
        if !current.isEmpty { current.spanLock.reset() }
        if Globals.liveHeaps.pointee != nil { Globals.forkOrphans.pointee = 1 }
        Purger.forkChild()
        Globals.hugeCacheLock.reset()
        Globals.overAlignedLock.reset()
        Globals.segmentCacheLock.reset()
        Globals.abandonedLock.reset()
        Globals.heapsLock.reset()
        Globals.initLock.reset()
        forkOwner.pointee.store(0, ordering: .relaxed)
        let depth = swmshim_fork_depth().unsafelyUnwrapped
        depth.pointee -= 1
        if depth.pointee == 0 { swmshim_fork_held().pointee = 0 }
    }
}
