// Thread-heap layer: process start, thread start and exit, fork.
//
// A thread gets a heap on its first allocation (`attach`). When it exits, pthread calls
// `threadExited`, and the heap is *parked* whole while the background purger runs: the
// next thread that allocates takes it over as it is (pages, lists, segments), so a
// program that replaces threads pays nothing per page for it. A heap parked for the purge
// delay is released: its empty pages go back, segments without live blocks go to the
// segment cache, and segments with live blocks are *abandoned* to a global list, from
// which any thread that needs memory reclaims them (`reclaimAbandoned`). Without a purger
// the release happens at the exit. So memory moves between threads, and blocks freed
// later by other threads are found by the heap that took them over.

import CSwmShim
import Synchronization

extension Heap {
    /// Which parked heap a thread without a heap takes (see `attach`).
    enum ParkedChoice {
        /// Its first call allocates: the most recently parked heap.
        case newest
        /// Its first call frees this block of a small or large page: the heap that owns
        /// the page, if it is parked.
        case owner(UnsafeMutableRawPointer)
        /// None, a new heap (its first call frees a huge block).
        case fresh
    }

    /// Gives the calling thread a heap: a parked one, if one fits, else a new one; nil
    /// when the OS has no memory for its record. A thread whose first call allocates takes
    /// the most recently parked heap. A thread whose first call frees a block takes the
    /// heap that owns the block's page if that heap is parked (the thread inherited the
    /// exited thread's blocks, and frees them locally from now on), and no other: a new
    /// thread that frees blocks of a heap still alive (larson's successor threads start
    /// before their predecessor exits) would otherwise take an unrelated parked heap, and
    /// free all its inherited blocks remotely instead of adopting their segments once the
    /// predecessor's heap is released (larson: 31 M ops/s taking any parked heap, 39 M
    /// taking only the owner, 40 M without parking).
    ///
    /// With `registerExit` the thread-exit key holds it, so that its detach runs when the
    /// thread ends; without, the caller detaches it itself.
    @inline(never)
    static func attach(registerExit: Bool, parked: ParkedChoice = .newest) -> Heap? {
        Process.initialize()
        let owner = registerExit ? currentTask() : 0
        if let heap = unpark(parked, owner: owner) {
            swmshim_heap_set(heap.raw)
            if registerExit { swmshim_thread_key_set(heap.raw) }
            return heap
        }
        guard let raw = takeRecord() else { return nil }
        let heap = Heap(raw)
        raw.initializeMemory(as: UnsafeMutablePointer<Page>.self, repeating: Heap.emptyPage,
                             count: SizeClass.directSlots)
        raw.advanced(by: stateOffset).initializeMemory(as: UInt8.self, repeating: 0, count: recordSize - stateOffset)
        Globals.heapsLock.lock()
        heap.state.pointee.ownerTask = owner
        heap.state.pointee.nextLive = Globals.liveHeaps.pointee
        if let next = Globals.liveHeaps.pointee { Heap(next).state.pointee.prevLive = raw }
        Globals.liveHeaps.pointee = raw
        let live = Counters.shared.pointee.heaps.wrappingAdd(1, ordering: .relaxed).newValue
        let reap = Int(bitPattern: live) &- Globals.reapPending.pointee
            > Int(bitPattern: max(Globals.reapMark.pointee, Heap.reapMinimum))
        Globals.heapsLock.unlock()
        swmshim_heap_set(raw)
        if registerExit { swmshim_thread_key_set(raw) }
        Process.registerHandlersOnce()
        if reap { reapDeadOwners() }
        return heap
    }

    /// The calling thread as `HeapState.ownerTask` records it.
    static func currentTask() -> UInt64 {
        UInt64(UInt32(bitPattern: swmshim_getpid())) << 32 | UInt64(UInt32(bitPattern: swmshim_gettid()))
    }

    /// Live heaps below which no new heap looks for dead owners (see `reapDeadOwners`).
    static let reapMinimum: UInt = 64

    /// Gives up the heaps of threads that ended without their exit handler running. A
    /// thread whose first allocator call comes in the last round of pthread's key
    /// destructors (a destructor that re-arms its key until then, or one of a key created
    /// after swmalloc's) gets a heap and sets swmalloc's key, but pthread runs no further
    /// round: before this, every such thread left its heap attached for good (4,000 of
    /// them: 4,000 heaps, 16 GB mapped, 66 MB resident).
    ///
    /// A heap's owner is gone when the kernel has no such thread any more (`tgkill` with
    /// signal 0 answers ESRCH): a gone thread runs no code, so its heap is given up here
    /// as its exit would have (`detach`). An id reused by a new thread only delays that.
    /// Only heaps recorded in this process are looked at: the recorded task is not always
    /// the heap's user. A vfork child's first malloc records the child but attaches the
    /// heap to the parent's thread (they share its memory and TLS); in a child of a fork
    /// that ran no handlers (`_Fork`, a raw `fork` system call) the forking thread's heap
    /// still names the parent (an outside review gave both heaps up while in use).
    /// Called by a thread that attaches a new heap once the live heaps, less those a
    /// reaper is giving up, outnumber twice those a thread owned at the last look (so
    /// the cost, a system call per live heap, stays constant per thread), by the purger
    /// and by `swm_collect`.
    ///
    /// The mark counts the heaps the walk found owned and alive, not the live heaps at
    /// its end: giving heaps up takes time (with `background=0` each release purges),
    /// threads kept starting meanwhile, and the mark counted them and those another
    /// reaper was giving up, so it grew with every look and the heaps with it (review
    /// R39: two threads starting threads whose first malloc came in the last destructor
    /// round, `background=0`: 300 … 1,738 heaps at once, 7.7 GB mapped, for 4,000
    /// threads; 5,354 heaps for 16,000).
    static func reapDeadOwners() {
        var dead: UnsafeMutableRawPointer? = nil   // linked through `nextParked`
        var taken = 0, owned = 0
        // Raised before any heap is taken (a fork from a signal handler in between must
        // see it: review R43), lowered once every heap taken is given up.
        let reaping = swmshim_reaping().unsafelyUnwrapped
        reaping.pointee += 1
        defer { reaping.pointee -= 1 }
        let me = Heap.current.raw
        let pid = UInt64(UInt32(bitPattern: swmshim_getpid()))
        Globals.heapsLock.lock()
        var cursor = Globals.liveHeaps.pointee
        while let raw = cursor {
            let s = Heap(raw).state
            cursor = s.pointee.nextLive
            let task = s.pointee.ownerTask
            if task == 0 { continue }
            if raw == me || s.pointee.parked || s.pointee.forkOrphan || task >> 32 != pid
                || swmshim_task_gone(Int32(truncatingIfNeeded: task >> 32), Int32(truncatingIfNeeded: task)) == 0 {
                owned += 1
                continue
            }
            s.pointee.ownerTask = 0
            s.pointee.nextParked = dead
            dead = raw
            taken += 1
        }
        Globals.reapPending.pointee += taken
        Globals.reapMark.pointee = 2 &* UInt(owned)
        Globals.heapsLock.unlock()
        while let raw = dead {
            let heap = Heap(raw)
            dead = heap.state.pointee.nextParked
            heap.state.pointee.nextParked = nil
            heap.validateAtExit()
            heap.sendRemoteBatches()
            heap.giveUp()
            Globals.heapsLock.lock()
            Globals.reapPending.pointee -= 1
            Globals.heapsLock.unlock()
        }
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
        guard let raw = OSMemory.mapRecords(chunk) else { return nil }
        var offset = recordSize
        while offset < chunk {
            let record = raw + offset
            record.storeBytes(of: Globals.freeHeaps.pointee, as: UnsafeMutableRawPointer?.self)
            Globals.freeHeaps.pointee = record
            offset += recordSize
        }
        return raw
    }

    /// Detaches this heap from its thread. While the purger runs, the heap is parked for
    /// the next thread that allocates (`park`); otherwise, and when a parked heap is
    /// released, `release` gives its memory up. The thread's TLS then points at the exited
    /// heap, so that a later call on this thread attaches nothing that would outlive it.
    func detach() {
        validateAtExit()
        sendRemoteBatches()
        swmshim_heap_set(swmshim_exited_heap_address())
        giveUp()
    }

    /// Debug builds: checks the heap's invariants when its thread is gone.
    private func validateAtExit() {
        #if DEBUG
        spanLock.lock()
        let violations = validate()
        spanLock.unlock()
        if violations != 0 { OS.fatal("heap invariants violated at thread exit", pointer: raw) }
        #endif
    }

    /// Gives up this heap, whose thread is gone and whose remote batches were sent:
    /// parked while the purger runs, else released. By its thread's exit handler
    /// (`detach`), or for a thread that ended without it, by `reapDeadOwners`.
    private func giveUp() {
        Extensions.heapDetaching(self)
        if Globals.purgerState.loadRelaxed() == 1 && park() { return }
        spanLock.lock()
        release()
    }

    /// Most heaps parked at once. A parked heap keeps what its thread left (pages with
    /// blocks others still free, kept empty pages, its spare segment) for the purge delay,
    /// so without a bound the memory parked grows with the rate at which threads exit:
    /// short-lived producers and consumers (1,000 threads a second) kept 200–280 MB of
    /// pages holding a few KB of blocks, 8 MB with `background=0`.
    static let parkedMax = 8

    /// Parks this heap, whose thread is gone, as it is: its counters go to the process
    /// totals (it counts from zero for its next thread), and it joins the parked list
    /// (it stays in the registry, so the purger keeps purging its free spans).
    ///
    /// Who touches a parked heap: other threads' frees (remote pushes onto its pages'
    /// lists and its `remotePending` hint, as for a live heap whose thread is busy
    /// elsewhere), the purger and `swm_collect` (its free spans, under its span lock),
    /// and, under the registry lock, the one thread that takes it off the list: `unpark`
    /// or `releaseParked`. Its pages, lists and direct table wait unchanged, so the thread
    /// that takes it over allocates from them at once.
    ///
    /// Returns false, having done nothing, when `parkedMax` heaps are parked already: the
    /// caller releases this one.
    private func park() -> Bool {
        let now = OS.nowNanoseconds()
        Globals.heapsLock.lock()
        // The purger may have been stopped for good since the caller looked
        // (`Purger.stopForGood`): its last pass releases what is parked before, under
        // this lock; nothing would release a heap parked after.
        if Globals.parkedCount.pointee >= Heap.parkedMax || Globals.purgerState.load() != 1 {
            Globals.heapsLock.unlock()
            return false
        }
        Globals.parkedCount.pointee += 1
        Stats.foldParked(self)
        state.pointee.ownerTask = 0
        state.pointee.parked = true
        state.pointee.parkedAt = now
        state.pointee.nextParked = Globals.parkedHeaps.pointee
        Globals.parkedHeaps.pointee = raw
        // Under the registry lock, as in `unpark`: a fork child sees the heap parked and
        // counted, or live and counted (an orphan, which its reclaim subtracts).
        Counters.shared.pointee.heaps.wrappingSubtract(1, ordering: .relaxed)
        Globals.heapsLock.unlock()
        Purger.announce()
        return true
    }

    /// Takes the parked heap that follows `previous` (the list's head when nil) off the
    /// parked list and returns the heap after it (registry lock held, or a fork child).
    fileprivate static func unlinkParked(after previous: Heap?) -> UnsafeMutableRawPointer? {
        let raw = previous?.state.pointee.nextParked ?? Globals.parkedHeaps.pointee
        let s = Heap(raw.unsafelyUnwrapped).state
        let following = s.pointee.nextParked
        if let previous { previous.state.pointee.nextParked = following } else { Globals.parkedHeaps.pointee = following }
        Globals.parkedCount.pointee -= 1
        s.pointee.nextParked = nil
        s.pointee.parked = false
        return following
    }

    /// A parked heap taken off the parked list (nil when none fits `choice`): the calling
    /// thread's from now on. For `.owner`, the block lies in a normal segment (the caller
    /// checked the segment map and the segment's kind), so its page's owner can be read.
    private static func unpark(_ choice: ParkedChoice, owner: UInt64) -> Heap? {
        if Globals.parkedHeaps.pointee == nil { return nil }
        var wanted: UnsafeMutableRawPointer? = nil
        switch choice {
        case .newest: break
        case .fresh: return nil
        case .owner(let block):
            let p = UInt(bitPattern: block)
            let page = UnsafeMutablePointer<Segment>.of(p).page(containing: p)
            wanted = UnsafeMutableRawPointer(bitPattern: page.pointee.heap.load(ordering: .relaxed))
            if wanted == nil { return nil }
        }
        Globals.heapsLock.lock()
        var previous: Heap? = nil
        var taken = Globals.parkedHeaps.pointee
        while let raw = taken, wanted != nil && raw != wanted {
            previous = Heap(raw)
            taken = Heap(raw).state.pointee.nextParked
        }
        if let raw = taken {
            _ = unlinkParked(after: previous)
            Heap(raw).state.pointee.ownerTask = owner
            Counters.shared.pointee.heaps.wrappingAdd(1, ordering: .relaxed)
        }
        Globals.heapsLock.unlock()
        guard let raw = taken else { return nil }
        return Heap(raw)
    }

    /// Releases the heaps parked at least `delay` before `now` (all with 0): each gives
    /// its memory up as at a thread's exit (`release`), its free memory purged at once (it
    /// stayed unused for the delay). Returns when the oldest heap still parked was parked
    /// (`UInt64.max`: none). Called by the purger and `swm_collect`, holding no lock.
    static func releaseParked(now: UInt64, delay: UInt64) -> UInt64 {
        if Globals.parkedHeaps.pointee == nil { return .max }
        var oldest = UInt64.max
        var expired: UnsafeMutableRawPointer? = nil
        Globals.heapsLock.lock()
        var previous: Heap? = nil
        var cursor = Globals.parkedHeaps.pointee
        while let raw = cursor {
            let s = Heap(raw).state
            if hasExpired(freedAt: s.pointee.parkedAt, now: now, delay: delay) {
                cursor = unlinkParked(after: previous)
                s.pointee.nextParked = expired   // the local list of expired heaps
                expired = raw
            } else {
                oldest = min(oldest, s.pointee.parkedAt)
                previous = Heap(raw)
                cursor = s.pointee.nextParked
            }
        }
        Globals.heapsLock.unlock()
        while let raw = expired {
            let heap = Heap(raw)
            expired = heap.state.pointee.nextParked
            heap.state.pointee.nextParked = nil
            // Waits for the purger or another `swm_collect` that holds it for a purge step;
            // no registry lock is held here (see `Purger.purgeHeaps` for the lock order).
            heap.spanLock.lock()
            heap.release(purgeNow: true, counted: false)
        }
        return oldest
    }

    /// Gives this heap's memory up (span lock held; released here): what is free returns
    /// (purged now with `purgeNow`; else after the delay), segments that still hold live
    /// blocks are abandoned, its counters go to the process totals unless `counted` is
    /// false (a parked heap's went at its park), and the record returns to the pool.
    ///
    /// While no purger runs (not started yet, or `background=0`), what this thread leaves
    /// is purged now once it and what the process has waiting for a purge already reach
    /// `Purger.startWaiting` (4 MiB; `exitPurgesNow`); below that it stays resident for
    /// the threads that come next, and the owners' `tidy` purges the segment cache after
    /// the delay. (Threads that exit at the same moment each count before the others gave
    /// up theirs: the bound may be passed by what they leave.) Before,
    /// every exit without a purger purged at once: a program that starts short threads
    /// one after another, each touching 31 size classes (64 blocks of 16 … 1,528 bytes),
    /// made 32 `madvise` calls per thread and faulted the same 2 MiB in again in the next
    /// one (20,000 such threads: 720,121 page faults, 195 now, glibc 94;
    /// `thread_churn_resident` in Tests/programs/retention.c).
    ///
    /// The span lock is held until the heap is out of the registry: a purger pass finds
    /// heaps only there and takes a span lock only by trying it, so once the lock is
    /// dropped no pass holds it or can take it, and the record may go back to the pool.
    /// (It was dropped before the heap left the registry: a pass could take it in
    /// between, still hold it when the record was handed to a new thread, which zeroes
    /// the lock word, and then work on the new heap's lists beside it and unlock its
    /// lock — an outside review, read in the code.) Taking the registry lock while holding
    /// a span lock cannot deadlock: no one waits for a span lock while holding the
    /// registry lock (the purger and a fork child's reclaim only try one; a fork takes
    /// none).
    private func release(purgeNow: Bool = false, counted: Bool = true) {
        let purged = releaseSegments(purgeNow: purgeNow || exitPurgesNow())
        #if DEBUG
        runReleaseHook()
        #endif
        Globals.heapsLock.lock()
        if counted {
            Stats.foldExited(self)
            Counters.shared.pointee.heaps.wrappingSubtract(1, ordering: .relaxed)
        }
        unregister()
        Globals.heapsLock.unlock()
        spanLock.unlock()
        if !purged { Purger.announce() }
        Globals.heapsLock.lock()
        raw.storeBytes(of: Globals.freeHeaps.pointee, as: UnsafeMutableRawPointer?.self)
        Globals.freeHeaps.pointee = raw
        Globals.heapsLock.unlock()
    }

    /// Whether this heap, given up now, purges what it frees at once (see `release`): no
    /// purger runs and the memory waiting for a purge, with what this heap's pages that
    /// hold no block once other threads' frees are collected may hold resident
    /// (`keptResidentBytes`: the part blocks ever touched of a page set up on a purged or
    /// fresh span, the whole span of one set up on resident slices), reaches
    /// `Purger.startWaiting`, the amount that no process keeps without a purger. Those pages still count as in use in the process's
    /// counters; they come free only in `releaseSegments`, and counting the counters alone
    /// left a thread's 200 MiB that another thread had freed into its pages resident for
    /// good (an outside review of this rule). Counting their whole spans instead sent a
    /// thread that kept an empty page of each of its classes (up to 1 MiB of span for a
    /// few KiB touched) past the line at every exit, and its successor faulted the same
    /// pages in again (the review after: 133,230 page faults for 300 threads, 479 now);
    /// counting only the touched part of pages set up on resident slices left 16 MiB
    /// resident for good (the review after that).
    /// Span lock held.
    private func exitPurgesNow() -> Bool {
        if Purger.isRunning { return false }
        var freeing = Purger.waitingBytes()
        for pass in 0..<2 {
            var seg = pass == 0 ? state.pointee.fullSegments : state.pointee.segments
            while let s = seg, freeing < Purger.startWaiting {
                seg = s.pointee.next
                s.forEachPage { page in
                    page.collect()
                    if page.pointee.used == 0 { freeing &+= UInt(keptResidentBytes(page)) }
                }
            }
        }
        return freeing >= Purger.startWaiting
    }

    /// Gives up every segment (span lock held): empty pages go back, segments without
    /// live blocks go to the segment cache, the others are abandoned for another thread
    /// to adopt. What comes free waits for the purge delay like any free memory (a new
    /// thread takes the cached segments first), unless `purgeNow`; returns `purgeNow`.
    ///
    /// Full segments are abandoned first, those with free slices last, so that the latter
    /// lie on top of the abandoned list (it is last in, first out), where the next span
    /// request finds them among the segments it adopts (at most `adoptLimit`). The other
    /// way round, a thread allocating in pthread key destructors after its exit handler
    /// (each call served by a heap attached for that call, `withHeap`) adopted only full
    /// segments once 16 lay on top, and mapped a fresh segment on nearly every call with
    /// `background=0` (an outside review: 100,000 calls, 40,208 segments, 157 GB mapped).
    ///
    /// The heap's lists are emptied first, all of them: the record goes back to the pool
    /// naming nothing it gave up. What keeps a purger pass off a heap being released is
    /// `release` holding the span lock until the heap has left the registry; the emptied
    /// lists are the second guard, for a record reached some other way (a fork child's
    /// orphan, the debug validator). Before both, `release` dropped the span lock first,
    /// and a pass that took it in between (`Purger.purgeHeaps`) walked the full list as it
    /// was: it retired an abandoned page that other threads had just emptied and filed
    /// its segment into this heap again — to the segment cache while it was still on the
    /// abandoned list, so two heaps came to own it (an outside review: live blocks freed
    /// as invalid pointers, their bytes overwritten by free-list links, a page's
    /// descriptor zeroed while its heap allocated from it; 2–3 % of 5 s runs of threads
    /// allocating in key destructors, with `purge_delay_ms=2`).
    private func releaseSegments(purgeNow: Bool, forkOrphan: Bool = false) -> Bool {
        let now = OS.nowNanoseconds()
        let available = state.pointee.segments
        let full = state.pointee.fullSegments
        state.pointee.segments = nil
        state.pointee.fullSegments = nil
        state.pointee.segmentCount = 0
        state.pointee.segmentCursor = nil
        state.pointee.fullPages = nil
        state.pointee.spare = nil
        for c in 0..<SizeClass.count {
            setPage(class: c, Heap.emptyPage)
            state.pointee.classTails[c] = nil
        }
        for pass in 0..<2 {
            var seg = pass == 0 ? full : available
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
                        // The abandoned page's free list is looked at afresh
                        // (`Purger.purgeStaleFreeBlocks`).
                        page.pointee.remoteSeen = 0
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

    #if DEBUG
    /// Debug builds: calls the test hook set with `swm_debug_set_release_hook`, if any,
    /// with this heap, which has given its segments up and is still in the registry.
    @inline(never)
    private func runReleaseHook() {
        guard let hook = Globals.releaseHook.pointee else { return }
        typealias Hook = @convention(c) (UnsafeMutableRawPointer?) -> Void
        unsafeBitCast(hook, to: Hook.self)(raw)
    }
    #endif

    /// Takes this heap out of the registry (registry lock held).
    fileprivate func unregister() {
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
    ///
    /// Which heaps are orphans was decided in `Process.forkChild` (`forkOrphan`), while
    /// the child had one thread: the forking thread's heap, parked heaps and heaps the
    /// child's threads attached since are not, whichever thread gets here first (a new
    /// thread's first slow path gave up the forking thread's live heap when this step
    /// chose by "not the caller's").
    @inline(never)
    static func reclaimForkOrphans() {
        Globals.heapsLock.lock()
        if Globals.forkOrphans.pointee != 0 {
            Globals.forkOrphans.pointee = 0
            var cursor = Globals.liveHeaps.pointee
            while let raw = cursor {
                let heap = Heap(raw)
                cursor = heap.state.pointee.nextLive
                if !heap.state.pointee.forkOrphan { continue }
                heap.state.pointee.forkOrphan = false
                heap.unregister()
                Stats.foldExited(heap)
                Counters.shared.pointee.heaps.wrappingSubtract(1, ordering: .relaxed)
                if heap.spanLock.tryLock() {
                    _ = heap.releaseSegments(purgeNow: !Purger.willRun, forkOrphan: true)
                    heap.spanLock.unlock()
                }
            }
            if Purger.willRun { Globals.forkReuseUntil.pointee = OS.nowNanoseconds() &+ Heap.forkReuseWindow }
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
        // Counted under the lock, as every taking off the list is: counted after it, a
        // collector or an adopter that took the segment meanwhile subtracted first, and
        // `abandoned_segments` read 2^64 − 1 (review R39, with `background=0` and
        // `swm_collect` in a loop: in 5 of 5 runs).
        Counters.shared.pointee.abandoned.wrappingAdd(1, ordering: .relaxed)
        Globals.abandonedLock.unlock()
    }

    /// Adopts one abandoned segment: its pages join this heap's lists, blocks other threads
    /// freed meanwhile are collected, empty pages go back. Returns the segment (now this
    /// heap's; it may have been unmapped if it came out empty), or nil when none is left.
    func reclaimAbandoned() -> UnsafeMutablePointer<Segment>? {
        if Globals.abandonedHead.pointee == nil { return nil }
        Globals.abandonedLock.lock()
        let taken = Globals.abandonedHead.pointee
        if let seg = taken {
            Globals.abandonedHead.pointee = seg.pointee.next
            Counters.shared.pointee.abandoned.wrappingSubtract(1, ordering: .relaxed)
        }
        Globals.abandonedLock.unlock()
        guard let seg = taken else { return nil }
        seg.pointee.heap = raw
        seg.pointee.next = nil
        linkSegment(seg)
        let now = OS.nowNanoseconds()
        seg.forEachPage { page in
            page.pointee.heap.store(tag, ordering: .sequentiallyConsistent)
            // Kept by the heap that gave it up, in rings that are gone: not kept here (a
            // class's only page marked kept is never retired when it empties).
            page.pointee.keptEmpty = false
            page.pointee.remoteSeen = 0   // the purger's word for its free list while abandoned
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

/// Called by pthread when a thread that allocated exits; and once more, in the next round
/// of key destructors, with the exited-heap address as the key's value, when the thread may
/// be the last but for the purger (`Purger.mayEndBeforeThisThread`).
private func threadExited(_ raw: UnsafeMutableRawPointer?) {
    guard let raw, raw != swmshim_empty_heap_address() else { return }
    if raw == swmshim_exited_heap_address() { return Purger.endBeforeLastThread() }
    if swmshim_gettid() == swmshim_getpid() { Process.mainThreadExiting() }
    Heap(raw).detach()
    if Purger.mayEndBeforeThisThread() { swmshim_thread_key_set(swmshim_exited_heap_address()) }
}

/// Process-wide start-up, exit and fork handling.
enum Process {
    /// Whether swmalloc may start a thread of its own (the purger, the signal reporter)
    /// from the calling thread: not in a vfork child, which shares this memory but lives
    /// only until it execs or exits, and takes its threads with it (an outside review: a
    /// purger started there died holding a heap's span lock, and the parent hung at its
    /// next free; or the purger was marked running with no thread behind it, for good).
    /// Nor while the process runs its exit in the last thread after the main thread's
    /// `pthread_exit` (glibc's count of its threads is 0): a thread started there counts
    /// 1, and its end brought the count to 0 again, so glibc ran `exit` a second time in
    /// it, and the program's `atexit` handler that had allocated was cut short (review
    /// R112: a handler that freed 16 MiB and then printed never got to print).
    static func mayStartThread() -> Bool {
        swmshim_getpid() == Globals.processId.pointee && swmshim_process_exiting() == 0
    }

    /// The main thread ends with `pthread_exit` (its key destructors run): the process
    /// must end when the last of its threads does, and the C library counts swmalloc's
    /// own threads like any other, so a purger or a reporter would keep it alive for ever
    /// (an outside review: a program whose main thread called `pthread_exit` after 40 MB
    /// of allocations never exited, SIGTERM included). The purger stays and ends itself
    /// when it is the last thread (`Purger.mainThreadGone`), or, where the threads cannot
    /// be counted, is stopped for good (the rest of the process runs as with
    /// `background=0`); the reporter is stopped for good (`stats_signal` reports no more).
    static func mainThreadExiting() {
        if !Purger.mainThreadGone() { Purger.stopForGood() }
        SignalReport.stopForGood()
    }

    /// At load (the library's constructor, exports.c): the options are read and the
    /// loading thread gets its heap, which registers the exit, fork and signal handlers.
    /// So a program that never allocates still gets its `verbose` line, its `stats_print`
    /// report and its `stats_signal` handler (without one the signal killed it). Loaded by
    /// another thread than the main one (`dlopen` from a worker), it may never see the
    /// main thread's end (`Purger.mainThreadUnseen`).
    static func start() {
        // First: the reporter the attach may start reads it.
        if swmshim_gettid() != swmshim_getpid() { Purger.mainThreadUnseen() }
        let current = Heap.current
        if current.isEmpty && !current.isExited { _ = Heap.attach(registerExit: true) }
    }

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
        swmshim_platform_init()
        Options.load()
        Globals.processId.pointee = swmshim_getpid()
        Purger.configure()
        swmshim_thread_key_init { threadExited($0) }
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
        // The list is this fork's from here: a fork of a signal handler that interrupted
        // the last fork's parent handler may find it not yet emptied.
        FutexLock.forgetForkLocks()
        Globals.passLock.lockForFork()
        Globals.initLock.lockForFork()
        Globals.heapsLock.lockForFork()
        Globals.abandonedLock.lockForFork()
        Globals.segmentCacheLock.lockForFork()
        Globals.overAlignedLock.lockForFork()
        Globals.hugeCacheLock.lockForFork()
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
        FutexLock.forgetForkLocks()
        depth.pointee = 0
        Extensions.forkParent()
        Globals.hugeCacheLock.unlock()
        Globals.overAlignedLock.unlock()
        Globals.segmentCacheLock.unlock()
        Globals.abandonedLock.unlock()
        Globals.heapsLock.unlock()
        Globals.initLock.unlock()
        Globals.passLock.unlock()
        forkOwner.pointee.store(0, ordering: .releasing)
        _ = swmshim_futex_wake(Globals.forkOwner, Int32.max)
    }

    /// In a fork child, while it has one thread: marks the heaps of the threads that were
    /// not copied (every live heap but the forking thread's and the parked ones) for
    /// `Heap.reclaimForkOrphans`.
    private static func markForkOrphans(except current: Heap) {
        var orphans = false
        // This fork took every lock: the forking thread held none (it is in no span
        // operation and reaps nothing under a lock), and no purger pass runs.
        let tookLocks = swmshim_fork_held().pointee != 0
        let reaperForked = swmshim_reaping().pointee != 0
        var cursor = Globals.liveHeaps.pointee
        while let raw = cursor {
            let heap = Heap(raw)
            // A heap whose owner task is 0 and not parked is one a reaper (or the
            // purger, releasing a parked heap) was giving up, or one attached for a
            // single call. The thread doing that is not in the child, unless it is
            // this one (a fork from a signal handler that interrupted its reap): then
            // the heap is left alone, so that the reaper, going on in the child, does
            // not give it up twice. Otherwise it is an orphan like the others, since
            // nothing else would give it up (an outside review: heaps a reaper had taken
            // and not yet given up stayed in the child for good, 62 of 63 after three
            // `swm_collect`s, with their segments; and one whose span lock a thread
            // not copied held kept the child's purger waking once per purge delay).
            let ownerless = heap.state.pointee.ownerTask == 0
            let orphan = raw != current.raw && !heap.state.pointee.parked
                && (!ownerless || !reaperForked || (tookLocks && heap.spanLock.isLocked))
            heap.state.pointee.forkOrphan = orphan
            orphans = orphans || orphan
            cursor = heap.state.pointee.nextLive
        }
        if orphans { Globals.forkOrphans.pointee = 1 }
    }

    /// After fork, in the child: only the forking thread exists; every lock and the guard
    /// are reset. In the child of a nested fork the outer fork is still under way on this
    /// thread; its own after-fork handler runs later and finds them free.
    static func forkChild() {
        Globals.processId.pointee = swmshim_getpid()
        // A thread reporting a fatal error in the parent is not in the child. Nor is a
        // reaper, unless this thread is one (`markForkOrphans`): the heaps another
        // reaper was giving up are orphans now, counted as live until reclaimed.
        Globals.fatalThread.store(0)
        Globals.fatalAbortedAt.store(0)
        Globals.fatalWaiters.store(0)
        if swmshim_reaping().pointee == 0 { Globals.reapPending.pointee = 0 }
        Extensions.forkChild()
        // A fork that interrupted this thread inside the allocator (a signal handler's)
        // took no lock, and this thread's span lock may be held by the code it
        // interrupted, which does not go on here. (A fork that took the locks excluded
        // the purger's passes, which hold other threads' span locks.) The other threads'
        // heaps are let go at the first allocation slow path.
        let current = Heap.current
        if !current.isEmpty {
            current.spanLock.reset()
            current.state.pointee.ownerTask = Heap.currentTask()
        }
        // The parked list is whole only if this fork held the registry and pass locks
        // (parking, unparking and releasing parked heaps happen under them); a nested
        // fork, or one that interrupted the allocator, may have cut a change to it short:
        // its parked heaps are left out of reach.
        if swmshim_fork_held().pointee == 0 {
            Globals.parkedHeaps.pointee = nil
            Globals.parkedCount.pointee = 0
        }
        markForkOrphans(except: current)
        Purger.forkChild()
        // A thread that forks from its exit after swmalloc's destructor ran for it (a key
        // destructor of the program's, whose key came later) is the child's main thread,
        // and swmalloc's destructor does not run for it again: the child must end when
        // that thread and the others do, so it gets no purger or reporter, as after the
        // main thread's pthread_exit (review R14: the child's purger kept it alive for
        // ever; lifecycle.c `fork_from_exit_destructor`).
        if current.isExited { Process.mainThreadExiting() }
        // A forking thread without a heap (one that never allocated through swmalloc, as
        // a thread of a program that loaded it with `dlopen`) is the child's main thread:
        // its end never reaches swmalloc's key destructor (review R106: the child of such
        // a process never ended after its main thread's pthread_exit).
        if current.isEmpty && !current.isExited { Purger.mainThreadUnseen() }
        Globals.hugeCacheLock.reset()
        Globals.overAlignedLock.reset()
        Globals.segmentCacheLock.reset()
        Globals.abandonedLock.reset()
        Globals.heapsLock.reset()
        Globals.initLock.reset()
        Globals.passLock.reset()
        forkOwner.pointee.store(0, ordering: .relaxed)
        let depth = swmshim_fork_depth().unsafelyUnwrapped
        depth.pointee -= 1
        if depth.pointee == 0 {
            // The locks this thread's fork took were reset, not released: they leave its
            // count of held locks (which otherwise stayed above 0 for good, so that every
            // fork of this child took no lock at all). A fork that took none (its thread
            // was inside the allocator) subtracts nothing: the list may be another
            // thread's fork's.
            if swmshim_fork_held().pointee != 0 {
                swmshim_locks_held().pointee -= swmshim_fork_lock_counter().unsafelyUnwrapped.pointee
            }
            swmshim_fork_held().pointee = 0
            FutexLock.forgetForkLocks()
        }
    }
}
