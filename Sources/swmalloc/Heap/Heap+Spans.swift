// Thread-heap layer: where pages come from and where they go.

extension Heap {
    /// A span of `count` slices from this heap's segments, an abandoned segment, a cached
    /// empty segment, or a new segment; nil when the OS has no memory.
    func acquireSpan(_ count: Int) -> UnsafeMutablePointer<Page>? {
        var cursor = state.pointee.segments
        while let seg = cursor {
            cursor = seg.pointee.next
            if let span = takeSpan(count, from: seg) { return span }
        }
        // Adopt abandoned segments before mapping: blocks other threads freed into them
        // come back, so memory moves from exited threads to live ones.
        var adopted = 0
        while adopted < Heap.adoptLimit && Globals.abandonedHead.pointee != nil {
            adopted += 1
            if let seg = reclaimAbandoned(), let span = takeSpan(count, from: seg) { return span }
        }
        guard let seg = UnsafeMutablePointer<Segment>.takeCached(heap: raw)
            ?? UnsafeMutablePointer<Segment>.create(heap: raw) else { return nil }
        linkSegment(seg)
        return takeSpan(count, from: seg)
    }

    /// Most abandoned segments one span request adopts before it maps memory.
    static let adoptLimit = 16

    /// A span of `count` slices from `seg` (one of this heap's), or nil when none fits.
    private func takeSpan(_ count: Int, from seg: UnsafeMutablePointer<Segment>) -> UnsafeMutablePointer<Page>? {
        if Geometry.usableSlices - seg.pointee.usedSlices < count { return nil }
        guard let span = seg.takeSpan(count) else { return nil }
        if seg == state.pointee.spare { state.pointee.spare = nil }
        relinkSegment(seg)
        return span
    }

    /// Returns an empty page's span to its segment (the page is in no list). An empty
    /// segment becomes the heap's spare, or is unmapped if there is one already.
    func retire(_ page: UnsafeMutablePointer<Page>, now: UInt64) {
        let seg = page.segment
        let delay = Options.current.pointee.purgeDelayNanoseconds
        seg.returnSpan(page, now: now, purgeNow: delay == 0)
        if delay != 0 { state.pointee.purgeWaiting = true }
        segmentChanged(seg)
    }

    /// Files `seg` by its free slices after spans came back; an empty segment becomes the
    /// spare, or goes to the process's segment cache when the heap has a spare already.
    func segmentChanged(_ seg: UnsafeMutablePointer<Segment>) {
        relinkSegment(seg)
        if seg.pointee.usedSlices == 0 {
            if let spare = state.pointee.spare, spare != seg {
                unlinkSegment(seg)
                seg.retireEmpty()
            } else {
                state.pointee.spare = seg
            }
        }
    }

    /// Periodic work on the slow path: send the remote-free batch; every 16th call, purge free spans whose delay
    /// has passed (memory goes back to the OS after `purge_delay_ms`).
    @inline(__always)
    func maintain() {
        let s = state
        if s.pointee.batchPage != nil { sendRemoteBatch() }
        s.pointee.slowCalls &+= 1
        if s.pointee.purgeWaiting && s.pointee.slowCalls & 15 == 0 { purgeExpired(force: false) }
    }

    /// Purges free spans freed at least the purge delay ago (all of them with `force`).
    @inline(never)
    func purgeExpired(force: Bool) {
        let now = OS.nowNanoseconds()
        let s = state
        if !force && now < s.pointee.nextPurge { return }
        let delay = force ? 0 : Options.current.pointee.purgeDelayNanoseconds
        var waiting = false
        var seg = s.pointee.segments
        while let current = seg {
            if current.purgeExpired(now: now, delay: delay) { waiting = true }
            seg = current.pointee.next
        }
        s.pointee.purgeWaiting = waiting
        s.pointee.nextPurge = now &+ delay / 2
    }
}
