// Thread-heap layer: where pages come from and where they go.

extension Heap {
    /// A span of `count` slices starting at a multiple of `alignment` slices (a power of
    /// two; `alignment + count ≤ 64`), from this heap's segments, an abandoned segment, a
    /// cached empty segment, or a new segment; nil when the OS has no memory.
    ///
    /// Before it looks beyond its own segments it collects the blocks other threads freed
    /// into its full pages (large pages are always there): a thread that allocates large
    /// blocks another thread frees would otherwise map a segment after another while its
    /// own pages sit empty (found by the review: 4.6 GiB mapped for 18 live 256 KiB blocks).
    func acquireSpan(_ count: Int, alignment: Int = 1) -> UnsafeMutablePointer<Page>? {
        for attempt in 0..<2 {
            var cursor = state.pointee.segments
            while let seg = cursor {
                cursor = seg.pointee.next
                if let span = takeSpan(count, alignment: alignment, from: seg) { return span }
            }
            if attempt == 1 || !collectRemoteFrees() { break }
        }
        // Adopt abandoned segments before mapping: blocks other threads freed into them
        // come back, so memory moves from exited threads to live ones.
        var adopted = 0
        while adopted < Heap.adoptLimit && Globals.abandonedHead.pointee != nil {
            adopted += 1
            if let seg = reclaimAbandoned(), let span = takeSpan(count, alignment: alignment, from: seg) { return span }
        }
        guard let seg = UnsafeMutablePointer<Segment>.takeCached(heap: raw)
            ?? UnsafeMutablePointer<Segment>.create(heap: raw) else { return nil }
        linkSegment(seg)
        return takeSpan(count, alignment: alignment, from: seg)
    }

    /// Most abandoned segments one span request adopts before it maps memory.
    static let adoptLimit = 16

    /// A span of `count` aligned slices from `seg` (one of this heap's), or nil when none fits.
    private func takeSpan(_ count: Int, alignment: Int, from seg: UnsafeMutablePointer<Segment>) -> UnsafeMutablePointer<Page>? {
        if Geometry.usableSlices - seg.pointee.usedSlices < count { return nil }
        guard let span = seg.takeSpan(count, alignment: alignment) else { return nil }
        let st = state
        st.pointee.activeSlices += count
        if st.pointee.activeSlices > st.pointee.activePeak { st.pointee.activePeak = st.pointee.activeSlices }
        if seg == st.pointee.spare { st.pointee.spare = nil }
        relinkSegment(seg)
        return span
    }

    /// Returns an empty page's span to its segment (the page is in no list). An empty
    /// segment becomes the heap's spare, or is unmapped if there is one already.
    func retire(_ page: UnsafeMutablePointer<Page>, now: UInt64) {
        let seg = page.segment
        let delay = Options.current.pointee.purgeDelayNanoseconds
        let st = state
        st.pointee.activeSlices -= page.pointee.sliceCount
        seg.returnSpan(page, now: now, purgeNow: delay == 0)
        segmentChanged(seg)
        // When the memory in use falls 16 MiB below its high-water mark, the program is
        // giving memory back (not churning it): purge now, without waiting for the delay
        // and a later allocation to run the delayed purge.
        if delay != 0 && st.pointee.activePeak - st.pointee.activeSlices >= Heap.dropPurgeSlices {
            purgeExpired(now: now, force: true)
            st.pointee.activePeak = st.pointee.activeSlices
        }
        if delay != 0 {
            // Purge as pages retire too, so that a long burst of frees gives back what it
            // freed more than the delay ago without waiting for a later allocation.
            state.pointee.purgeWaiting = true
            if now >= state.pointee.nextPurge { purgeExpired(now: now, force: false) }
        }
    }

    /// Files `seg` by its free slices after spans came back; an empty segment becomes the
    /// spare, or goes to the process's segment cache when the heap has a spare already.
    /// Returns false when the segment left the heap (to the cache, or unmapped).
    @discardableResult
    func segmentChanged(_ seg: UnsafeMutablePointer<Segment>) -> Bool {
        relinkSegment(seg)
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

    /// Housekeeping at the top of every slow path: send the remote-free batch; let the
    /// extensions look at their flags (one load); when free
    /// spans (this heap's or the segment cache's) wait for their purge delay or abandoned
    /// segments wait for an owner, run
    /// `tidy` (which limits itself to one pass per half purge delay, at least 1 ms).
    @inline(__always)
    func maintain() {
        let s = state
        if s.pointee.batchPage != nil { sendRemoteBatch() }
        Extensions.slowPath()
        if s.pointee.purgeWaiting || Globals.abandonedHead.pointee != nil || Globals.segmentCacheHead.pointee != nil {
            tidy(force: false)
        }
    }

    /// Adopts abandoned segments (up to `Heap.tidyAdoptions` a pass; all with `force`), so
    /// that blocks other threads freed into them go back, then purges free spans whose
    /// delay has passed (all of them with `force`).
    @inline(never)
    func tidy(force: Bool) {
        let now = OS.nowNanoseconds()
        if !force && now < state.pointee.nextPurge { return }
        var adopted = 0
        while (force || adopted < Heap.tidyAdoptions) && Globals.abandonedHead.pointee != nil {
            adopted += 1
            _ = reclaimAbandoned()
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
            var cursor = page(slot: c)
            while cursor != Heap.emptyPage {
                let page = cursor
                cursor = page.pointee.next ?? Heap.emptyPage
                page.collect()
                if page.pointee.used == 0 {
                    unlinkClass(page)
                    retire(page, now: now)
                }
            }
        }
    }

    /// Fall of the slices in use below their high-water mark (16 MiB) that purges at once.
    static let dropPurgeSlices = 256

    /// Abandoned segments one `tidy` pass adopts.
    static let tidyAdoptions = 4

    /// Purges free spans, this heap's and the segment cache's, freed at least the purge
    /// delay ago (all of them with `force`) and sets the time of the next pass.
    func purgeExpired(now: UInt64, force: Bool) {
        let s = state
        let delay = Options.current.pointee.purgeDelayNanoseconds
        var waiting = false
        var seg = s.pointee.segments
        while let current = seg {
            if current.purgeExpired(now: now, delay: force ? 0 : delay) { waiting = true }
            seg = current.pointee.next
        }
        s.pointee.purgeWaiting = waiting
        s.pointee.nextPurge = now &+ (delay / 2 > 1_000_000 ? delay / 2 : 1_000_000)
        UnsafeMutablePointer<Segment>.purgeCache(now: now, delay: force ? 0 : delay)
    }
}
