// Thread-heap layer: where pages come from and where they go.

import Synchronization

extension Heap {
    /// A span of `count` slices starting at a multiple of `alignment` slices (a power of
    /// two; `alignment + count ≤ 64`), from this heap's segments, an abandoned segment, a
    /// cached empty segment, or a new segment; nil when the OS has no memory.
    ///
    /// Before it looks beyond its own segments it collects the blocks other threads freed
    /// into its full pages (large pages are always there): a thread that allocates large
    /// blocks another thread frees would otherwise map a segment after another while its
    /// own pages sit empty (found by the review: 4.6 GiB mapped for 18 live 256 KiB blocks).
    ///
    /// It takes memory that is still resident (freed, not yet purged) before memory that
    /// is not (never touched, or purged): its own segments', an adopted segment's, a
    /// cached segment's; only then fresh or purged slices of its own segments, a cached
    /// segment, a new one. A fork child that freed its parent's other threads' blocks and
    /// allocated as much again touched 15 MiB of fresh slices while as much freed memory
    /// sat resident.
    ///
    /// Resident memory of other heaps (abandoned segments, cached ones) comes before its
    /// own purged or fresh slices only while this heap has little room of its own
    /// (`hasRoom`): a thread that allocates a page now and then beside a stream of
    /// short-lived threads otherwise adopted or took a new segment for nearly every page,
    /// pinned each with a page or a block it kept, and went on growing (an outside
    /// review: 80 such threads, 13 GB mapped after 54 s for 150 MB live, still growing,
    /// and ENOMEM under `ulimit -v 4G`; 3.1 GB now, flat, with 4 segments of room).
    func acquireSpan(_ count: Int, alignment: Int = 1) -> UnsafeMutablePointer<Page>? {
        for attempt in 0..<2 {
            if let span = takeOwnSpan(count, alignment: alignment, residentOnly: true) { return span }
            if attempt == 1 || !collectRemoteFrees() { break }
        }
        // Adopt abandoned segments before touching fresh memory: blocks other threads
        // freed into them come back, so memory moves from exited threads to live ones.
        // The walk of the own segments (`hasRoom`) is made only when there is something
        // to adopt or a cached segment to take.
        let roomy = (Globals.abandonedHead.pointee != nil || Globals.segmentCacheHead.pointee != nil) && hasRoom()
        var adopted = 0
        while !roomy && adopted < Heap.adoptLimit && Globals.abandonedHead.pointee != nil {
            adopted += 1
            if let seg = reclaimAbandoned(),
               let span = takeSpan(count, alignment: alignment, from: seg, residentOnly: true) { return span }
        }
        if !roomy && alignment == 1, let seg = UnsafeMutablePointer<Segment>.takeCachedResident(heap: raw, count: count) {
            linkSegment(seg)
            if let span = takeSpan(count, alignment: 1, from: seg, residentOnly: true) { return span }
        }
        if let span = takeOwnSpan(count, alignment: alignment, residentOnly: false) { return span }
        guard let seg = UnsafeMutablePointer<Segment>.takeCached(heap: raw)
            ?? UnsafeMutablePointer<Segment>.create(heap: raw) else { return nil }
        linkSegment(seg)
        return takeSpan(count, alignment: alignment, from: seg)
    }

    /// A span from this heap's own segments (first fit among the first `segmentVisits`
    /// in list order), resident memory only when `residentOnly`; nil when none fits.
    ///
    /// The walk stops after `segmentVisits`: each visit reads a segment's header, a cache
    /// and TLB miss, and a heap with thousands of partly used segments walked them all for
    /// every page and large block — quadratic (an outside review: 4,000 live 2 MiB-aligned
    /// blocks, each in a segment of its own, took 2.6 s to allocate, glibc 0.1 s; 4,000
    /// live large blocks replaced at random, 1.6 s, jemalloc 0.05 s). In a heap with more
    /// segments than that, the ones that got spans back move to the head of the list
    /// (`segmentChanged`), where the walk finds them, as it finds new ones; a segment
    /// further down with room is found again once a span comes back to it, and its free
    /// spans meanwhile cost address space and, until the purge delay, memory (such a heap
    /// held 25 % more at its peak: 68 MB against 55 for 4,000 live large blocks). A heap
    /// with fewer segments keeps its list in the order they came (moving them there too
    /// raised the peak of larson and rptest by a third).
    ///
    /// In such a heap the walk for resident memory starts where the last one ended (next
    /// fit, `segmentCursor`), wrapping at the list's end, so every segment's resident spans
    /// are found within a few walks. Started at the head each time, it saw only the 32
    /// segments that got spans back last, whose resident spans had been cut small, and
    /// took never-used memory while the heap's other segments held freed memory
    /// resident: 4 threads at a time, each allocating 5,000 blocks of 16 B–60 KB and
    /// keeping one in fifty, peaked at 842 MB resident for 660 MB used (glibc 634).
    private func takeOwnSpan(_ count: Int, alignment: Int, residentOnly: Bool) -> UnsafeMutablePointer<Page>? {
        let nextFit = residentOnly && state.pointee.segmentCount > Heap.segmentVisits
        let start = nextFit ? state.pointee.segmentCursor ?? state.pointee.segments : state.pointee.segments
        var cursor = start
        var visits = Heap.segmentVisits
        while let seg = cursor, visits > 0 {
            cursor = seg.pointee.next
            if nextFit && cursor == nil { cursor = state.pointee.segments }
            if cursor == start { cursor = nil }
            visits -= 1
            #if DEBUG
            Globals.segmentVisitCount.add(1)
            #endif
            if let span = takeSpan(count, alignment: alignment, from: seg, residentOnly: residentOnly) {
                // The segment may have left the list (full): `unlinkSegment` moved the cursor.
                if nextFit && seg.pointee.isFull == false { state.pointee.segmentCursor = seg }
                return span
            }
        }
        if nextFit { state.pointee.segmentCursor = cursor }
        return nil
    }

    /// Most segments one walk of `takeOwnSpan` visits.
    static let segmentVisits = 32

    /// Whether this heap's own segments have `roomySlices` free slices or more
    /// (resident or not): then it takes no other heap's memory (abandoned segments,
    /// cached resident ones) before its own. Never in a fork child for `forkReuseWindow`
    /// after it let go of the threads that were not copied, their memory left resident
    /// (`forkReuseUntil`): it frees their blocks and allocates again, and reuses that
    /// memory (with the bound alone, `fork_child_reuse`'s child grew by 3.6 MiB instead
    /// of 0.7).
    func hasRoom() -> Bool {
        if _slowPath(Globals.forkReuseUntil.pointee != 0) {
            if OS.nowNanoseconds() < Globals.forkReuseUntil.pointee { return false }
            Globals.forkReuseUntil.pointee = 0
        }
        var free = 0
        var cursor = state.pointee.segments
        while let seg = cursor {
            free += Geometry.usableSlices - seg.pointee.usedSlices
            if free >= Heap.roomySlices { return true }
            cursor = seg.pointee.next
        }
        return false
    }

    /// How long a fork child prefers the memory of the threads that were not copied (see
    /// `hasRoom`): 250 ms, not the purge delay, which may be minutes. The room test is
    /// off for every heap meanwhile; an outside review's child, with a 5 s delay, mapped
    /// 6.2 GB in `rare_allocators_among_short` instead of 3.2 while it was.
    static let forkReuseWindow: UInt64 = 250_000_000

    /// Four segments' worth: two kept the reviewers' program at 2.4 GB, four at 3.2 GB,
    /// eight at 4.4 GB.
    static let roomySlices = 4 * Geometry.usableSlices

    /// Most abandoned segments one span request adopts before it maps memory.
    static let adoptLimit = 16

    /// A span of `count` aligned slices from `seg` (one of this heap's), or nil when none fits.
    private func takeSpan(_ count: Int, alignment: Int, from seg: UnsafeMutablePointer<Segment>,
                          residentOnly: Bool = false) -> UnsafeMutablePointer<Page>? {
        if Geometry.usableSlices - seg.pointee.usedSlices < count { return nil }
        guard let span = seg.takeSpan(count, alignment: alignment, residentOnly: residentOnly) else { return nil }
        slicesTaken(count, from: seg)
        return span
    }

    /// Counts `count` slices of `seg` taken into use (the slices in use and their
    /// high-water mark; `seg` is no longer an empty spare) and files the segment again.
    private func slicesTaken(_ count: Int, from seg: UnsafeMutablePointer<Segment>) {
        let st = state
        st.pointee.activeSlices += count
        if st.pointee.activeSlices > st.pointee.activePeak { st.pointee.activePeak = st.pointee.activeSlices }
        if seg == st.pointee.spare { st.pointee.spare = nil }
        relinkSegment(seg)
    }

    /// Lengthens `page`'s span (a page of this heap) by `extra` slices from the free spans
    /// right after it; false when they are not free. Takes the span lock.
    func extendSpan(_ page: UnsafeMutablePointer<Page>, by extra: Int) -> Bool {
        let seg = page.segment
        spanLock.lock()
        let done = seg.extendSpan(page, by: extra)
        if done { slicesTaken(extra, from: seg) }
        spanLock.unlock()
        return done
    }

    /// Returns an empty page's span to its segment (the page is in no list; the span lock
    /// is held). An empty segment becomes the heap's spare, or goes to the segment cache.
    ///
    /// The span waits for the purge delay (the purger, or this heap's next purge pass,
    /// gives it back). Only while no purger runs (not started yet, or `background=0`) does
    /// a fall of the memory in use 16 MiB below its high-water mark purge at once: the
    /// program is giving memory back, and nothing else would purge it if this thread now
    /// sleeps.
    func retire(_ page: UnsafeMutablePointer<Page>, now: UInt64) {
        let seg = page.segment
        let delay = Options.current.pointee.purgeDelayNanoseconds
        let st = state
        st.pointee.activeSlices -= page.pointee.sliceCount
        seg.returnSpan(page, now: now, purgeNow: delay == 0)
        segmentChanged(seg)
        // Also with a delay of 0: a purge the kernel refused (locked memory) leaves the
        // span waiting, and passes purge only heaps where one waits (review R107).
        st.pointee.purgeWaiting = true
        if delay == 0 { return }
        if !Purger.isRunning {
            if st.pointee.activePeak - st.pointee.activeSlices >= Heap.dropPurgeSlices {
                purgeExpired(now: now, force: true)
                st.pointee.activePeak = st.pointee.activeSlices
            }
        } else {
            Purger.announce()
        }
        // Purge as pages retire too, so that a long burst of frees gives back what it
        // freed more than the delay ago without waiting for a later allocation.
        if now >= st.pointee.nextPurge { purgeExpired(now: now, force: false) }
    }

    /// Files `seg` by its free slices after spans came back — at the head of its list in
    /// a heap with more segments than one span request visits (`takeOwnSpan`); an empty
    /// segment becomes the spare, or goes to the process's segment cache when the heap has
    /// a spare already. Returns false when the segment left the heap (to the cache, or
    /// unmapped).
    @discardableResult
    func segmentChanged(_ seg: UnsafeMutablePointer<Segment>) -> Bool {
        if state.pointee.segmentCount > Heap.segmentVisits {
            unlinkSegment(seg)
            linkSegment(seg)
        } else {
            relinkSegment(seg)
        }
        if seg.pointee.usedSlices == 0 {
            if let spare = state.pointee.spare, spare != seg {
                unlinkSegment(seg)
                seg.retireEmpty(purgeNow: Options.current.pointee.purgeDelayMs == 0)
                return false
            }
            state.pointee.spare = seg
        }
        return true
    }

    /// Housekeeping at the top of every allocation slow path, before the span lock: send
    /// the remote-free batches, let the extensions look at their flags, in a fork child let
    /// go of the other threads' heaps (each one load when there is nothing to do). Every
    /// `Heap.periodicSlowPaths`-th slow path it also starts the purger if it is wanted,
    /// and returns true: the periodic work reads the clock and the process counters,
    /// which would cost more than the slow path itself if done on each one.
    @inline(__always)
    func maintain() -> Bool {
        let s = state
        if s.pointee.batchedBytes != 0 { sendRemoteBatches() }
        Extensions.slowPath()
        if _slowPath(Globals.forkOrphans.pointee != 0) { Heap.reclaimForkOrphans() }
        s.pointee.periodicCountdown -= 1
        if s.pointee.periodicCountdown > 0 { return false }
        s.pointee.periodicCountdown = Heap.periodicSlowPaths
        Purger.startIfWanted()
        return true
    }

    /// Slow paths between two runs of the periodic housekeeping.
    static let periodicSlowPaths = 16

    /// Housekeeping under the span lock: honour another thread's `swm_collect`; on a
    /// periodic slow path, sweep the class lists (`sweepClasses`), and when free spans or
    /// cached memory wait for their purge delay or
    /// abandoned segments wait for an owner, run `tidy` (which also limits itself to one
    /// pass per half purge delay, at least 1 ms).
    @inline(__always)
    func maintainLocked(periodic: Bool) {
        let s = state
        if _slowPath(s.pointee.collectRequested.load(ordering: .relaxed) != 0) {
            s.pointee.collectRequested.store(0, ordering: .relaxed)
            retireEmptyClassPages()
        }
        if periodic { sweepClasses() }
        if periodic && (s.pointee.purgeWaiting || Globals.abandonedHead.pointee != nil
                        || Globals.segmentCacheHead.pointee != nil || Globals.hugeCacheHead.pointee != nil) {
            tidy(force: false)
        }
    }

    /// Purges free spans whose delay has passed (all of them with `force`). While no
    /// purger runs, it first does the purger's work on the abandoned segments in their
    /// place (`Purger.collectAbandoned`), so that blocks other threads freed into them go
    /// back: their emptied pages return, empty segments retire; one heap of the process
    /// does that per half purge delay (`Purger.claimAbandonedWalk`).
    ///
    /// It adopts none of them: adopted pages join this heap's class lists, and a page deep
    /// in a list is looked at again only when the pages above it ran dry. An outside
    /// review found a thread that adopted four segments a pass (with `purge_delay_ms=0`,
    /// every millisecond) from a stream of short-lived threads collect thousands of pages
    /// whose blocks had all been freed by other threads, uncollected: 1.9 GB active with
    /// nothing allocated. A heap adopts when it needs a span (`acquireSpan`), so its
    /// lists grow only as it allocates.
    @inline(never)
    func tidy(force: Bool) {
        let now = OS.nowNanoseconds()
        if !force && now < state.pointee.nextPurge { return }
        if !force && !Purger.isRunning && Purger.claimAbandonedWalk(now: now) {
            _ = Purger.collectAbandoned(now: now, delay: Options.current.pointee.purgeDelayNanoseconds)
        }
        purgeExpired(now: now, force: force)
    }

    /// Retires every class page that holds no block: the fast path keeps a class's only
    /// page when it empties (a malloc/free loop must not churn pages), so without this a
    /// thread that touched every class keeps one page per class for ever. For
    /// `swm_collect`.
    func retireEmptyClassPages() {
        let now = OS.nowNanoseconds()
        for c in 0..<SizeClass.count {
            var cursor = page(class: c)
            while cursor != Heap.emptyPage {
                let page = cursor
                cursor = page.pointee.next ?? Heap.emptyPage
                retireIfEmptied(page, now: now)
            }
        }
    }

    /// Gives back the OS pages that lie wholly inside the free blocks of this heap's class
    /// pages (`Page.purgeFreeBlocks`). Only the owner may do this: its fast path hands out
    /// a block on `free` without a lock, and a purge after that would lose the new owner's
    /// bytes. Span lock held. For `swm_collect`.
    func purgeFreeBlocks() {
        for c in 0..<SizeClass.count where SizeClass.blockSize(c) > Page.smallestPurgedBlock {
            var cursor = page(class: c)
            while cursor != Heap.emptyPage {
                let page = cursor
                cursor = page.pointee.next ?? Heap.emptyPage
                page.collect()
                page.purgeFreeBlocks()
            }
        }
    }

    /// Collects other threads' frees into `page`, a page of a class list, and retires it
    /// when that left it empty; true when it did. Span lock held. (`retireEmptyClassPages`
    /// and the class-list sweeps, `sweepTail` and `sweepClasses`.)
    @discardableResult
    func retireIfEmptied(_ page: UnsafeMutablePointer<Page>, now: UInt64) -> Bool {
        page.collect()
        if page.pointee.used != 0 { return false }
        unlinkClass(page)
        retire(page, now: now)
        return true
    }

    /// Fall of the slices in use below their high-water mark (16 MiB) that purges at once.
    static let dropPurgeSlices = 256

    /// Purges free spans (this heap's, the segment cache's) and cached huge mappings freed
    /// at least the purge delay ago (all of them with `force`) and sets the time of the
    /// next pass. Span lock held.
    func purgeExpired(now: UInt64, force: Bool) {
        let s = state
        let delay = Options.current.pointee.purgeDelayNanoseconds
        purgeSegments(now: now, delay: force ? 0 : delay)
        s.pointee.nextPurge = now &+ (delay / 2 > 1_000_000 ? delay / 2 : 1_000_000)
        UnsafeMutablePointer<Segment>.purgeCache(now: now, delay: force ? 0 : delay)
        Huge.purgeCache(now: now, delay: force ? 0 : delay)
    }

    /// Purges this heap's free spans freed at least `delay` before `now`; returns when the
    /// oldest one still waiting was freed (`UInt64.max`: none), and records in
    /// `purgeWaiting` whether one waits, a span whose purge the kernel refused included
    /// (review R108: without it, a heap of only such spans dropped out of every later pass,
    /// `malloc_trim` included, and memory the program unlocked later stayed). Span lock
    /// held (by the owner, or by the purger).
    @discardableResult
    func purgeSegments(now: UInt64, delay: UInt64) -> UInt64 {
        var oldest = UInt64.max
        var refused = false
        var seg = state.pointee.segments
        while let current = seg {
            oldest = min(oldest, current.purgeExpired(now: now, delay: delay, refused: &refused))
            seg = current.pointee.next
        }
        state.pointee.purgeWaiting = oldest != .max || refused
        return oldest
    }
}
