// Memory layer: segments and the spans of slices inside them.

import Synchronization

/// Header of a 4 MiB segment, at the segment's base (slice 0). A slice map and one page
/// descriptor per slice follow it:
///
///     base + 0                  Segment
///     base + sliceMapOffset     UInt8 × 64: slice → first slice of the span holding it
///     base + pagesOffset        Page × 64
///
/// Spans tile slices 1…63 exactly: Σ span.sliceCount == 63, and for every slice s,
/// sliceMap[s] is the first slice of the span containing s. A normal segment belongs to
/// one heap (its owner does all span work without locks) or to nobody (abandoned).
/// A huge segment holds one block at `base + hugeOffset`.
struct Segment {
    var kind: PageKind                          // .small for a normal segment, .huge for a huge one
    var heap: UnsafeMutableRawPointer?          // owning heap record; nil when abandoned
    var next: UnsafeMutablePointer<Segment>?    // heap's segment list or the abandoned list
    var prev: UnsafeMutablePointer<Segment>?
    var mappedSize: Int                         // bytes mapped at the base
    var usedSlices: Int                         // slices in small or large pages
    var isFull: Bool                            // on the heap's full-segment list
    var hugeOffset: Int                         // huge: offset of the block from the base

    static let sliceMapOffset = 128
    static let pagesOffset = 256
    /// Bytes per page descriptor: a power of two, so finding one is a shift.
    static let pageStride = 128

    /// Checks that the layout fits in slice 0 (run once at start-up).
    static func checkLayout() {
        let end = pagesOffset + pageStride * Geometry.slicesPerSegment
        if MemoryLayout<Segment>.size > sliceMapOffset || end > Geometry.sliceSize
            || MemoryLayout<Page>.stride > pageStride {
            OS.fatal("internal error: segment header layout does not fit slice 0", pointer: nil)
        }
    }
}

extension UnsafeMutablePointer where Pointee == Segment {
    /// The segment holding address `p` (which must lie in a live segment).
    @inline(__always)
    static func of(_ p: UInt) -> UnsafeMutablePointer<Segment> {
        UnsafeMutablePointer<Segment>(bitPattern: p & ~Geometry.segmentMask).unsafelyUnwrapped
    }

    @inline(__always) var base: UnsafeMutableRawPointer { UnsafeMutableRawPointer(self) }

    /// Descriptor of the span starting at slice `i`.
    @inline(__always)
    func page(at i: Int) -> UnsafeMutablePointer<Page> {
        (base + Segment.pagesOffset + i &<< 7).assumingMemoryBound(to: Page.self)
    }

    /// Descriptor of the span holding address `p`. Cost: one byte load and an address computation.
    @inline(__always)
    func page(containing p: UInt) -> UnsafeMutablePointer<Page> {
        let slice = Int((p >> UInt(Geometry.sliceShift)) & UInt(Geometry.slicesPerSegment - 1))
        let head = base.load(fromByteOffset: Segment.sliceMapOffset + slice, as: UInt8.self)
        return page(at: Int(head))
    }

    /// Records that slices `first ..< first + count` belong to the span starting at `head`.
    private func mapSlices(_ first: Int, _ count: Int, to head: Int) {
        for s in first..<(first + count) {
            base.storeBytes(of: UInt8(head), toByteOffset: Segment.sliceMapOffset + s, as: UInt8.self)
        }
    }

    /// Maps and formats a fresh normal segment for `heap`; nil when the OS refuses.
    static func create(heap: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Segment>? {
        guard let raw = OSMemory.mapAligned(Geometry.segmentSize, alignment: Geometry.segmentSize) else {
            return nil
        }
        let opts = Options.current
        if opts.pointee.thp != .system {
            OS.adviseHugePages(raw, Geometry.segmentSize, enable: false)
        }
        let seg = raw.assumingMemoryBound(to: Segment.self)
        seg.pointee.kind = .small
        seg.pointee.heap = heap
        seg.pointee.mappedSize = Geometry.segmentSize
        let first = seg.page(at: 1)
        first.pointee.kind = .freeSpan
        first.pointee.sliceIndex = 1
        first.pointee.sliceCount = Geometry.usableSlices
        first.pointee.purged = true
        seg.mapSlices(1, Geometry.usableSlices, to: 1)
        Counters.shared.pointee.segments.wrappingAdd(1, ordering: .relaxed)
        Counters.shared.pointee.purgedNow.wrappingAdd(
            UInt(Geometry.usableSlices << Geometry.sliceShift), ordering: .relaxed)
        SegmentMap.insert(raw)
        return seg
    }

    /// Most empty segments the process keeps mapped for reuse, so that one thread's empty
    /// segment serves another without a munmap/mmap pair. Their free memory is purged
    /// like any free span: after the purge delay (`purgeCache`), or at once on a fall in
    /// use, `swm_collect()`, or with `purge_delay_ms=0`.
    static let cacheLimit = 8

    /// Retires an empty normal segment to the cache (purged first when `purgeNow`), or
    /// unmaps it when the cache is full.
    func retireEmpty(purgeNow: Bool) {
        if purgeNow { _ = purgeExpired(now: OS.nowNanoseconds(), delay: 0) }
        pointee.heap = nil
        Globals.segmentCacheLock.lock()
        let cached = Globals.segmentCacheCount.pointee < UnsafeMutablePointer<Segment>.cacheLimit
        if cached {
            pointee.next = Globals.segmentCacheHead.pointee
            Globals.segmentCacheHead.pointee = self
            Globals.segmentCacheCount.pointee += 1
        }
        Globals.segmentCacheLock.unlock()
        if !cached { release() }
    }

    /// Purges the cached segments' free spans freed at least `delay` before `now`.
    static func purgeCache(now: UInt64, delay: UInt64) {
        if Globals.segmentCacheHead.pointee == nil { return }
        Globals.segmentCacheLock.lock()
        var cursor = Globals.segmentCacheHead.pointee
        while let seg = cursor {
            _ = seg.purgeExpired(now: now, delay: delay)
            cursor = seg.pointee.next
        }
        Globals.segmentCacheLock.unlock()
    }

    /// An empty segment from the cache, now owned by `heap`; nil when the cache is empty.
    static func takeCached(heap: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Segment>? {
        if Globals.segmentCacheHead.pointee == nil { return nil }
        Globals.segmentCacheLock.lock()
        let seg = Globals.segmentCacheHead.pointee
        if let seg {
            Globals.segmentCacheHead.pointee = seg.pointee.next
            Globals.segmentCacheCount.pointee -= 1
        }
        Globals.segmentCacheLock.unlock()
        seg?.pointee.heap = heap
        seg?.pointee.next = nil
        return seg
    }

    /// Unmaps a segment (normal, with every span free; or huge).
    func release() {
        SegmentMap.remove(base)
        if pointee.kind == .small {
            Counters.shared.pointee.segments.wrappingSubtract(1, ordering: .relaxed)
            var i = 1
            while i < Geometry.slicesPerSegment {
                let span = page(at: i)
                if span.pointee.purged {
                    Counters.shared.pointee.purgedNow.wrappingSubtract(
                        UInt(span.pointee.sliceCount << Geometry.sliceShift), ordering: .relaxed)
                }
                i += span.pointee.sliceCount
            }
        }
        OSMemory.unmap(base, pointee.mappedSize)
    }

    /// Takes a span of `count` slices (first fit), splitting a larger free span.
    /// Returns its descriptor with `sliceIndex`/`sliceCount` set, or nil when none fits.
    func takeSpan(_ count: Int) -> UnsafeMutablePointer<Page>? {
        var i = 1
        while i < Geometry.slicesPerSegment {
            let span = page(at: i)
            let length = span.pointee.sliceCount
            if span.pointee.kind == .freeSpan && length >= count {
                if length > count {
                    let rest = page(at: i + count)
                    rest.pointee.kind = .freeSpan
                    rest.pointee.sliceIndex = i + count
                    rest.pointee.sliceCount = length - count
                    rest.pointee.purged = span.pointee.purged
                    rest.pointee.freedAt = span.pointee.freedAt
                    mapSlices(i + count, length - count, to: i + count)
                    span.pointee.sliceCount = count
                }
                if span.pointee.purged {
                    Counters.shared.pointee.purgedNow.wrappingSubtract(
                        UInt(count << Geometry.sliceShift), ordering: .relaxed)
                }
                span.pointee.purged = false
                pointee.usedSlices += count
                Counters.shared.pointee.activeBytes.wrappingAdd(UInt(count << Geometry.sliceShift), ordering: .relaxed)
                return span
            }
            i += length
        }
        return nil
    }

    /// Gives a page's span back to the segment's free spans, merging with free neighbours.
    /// With `purgeNow` its memory goes back to the OS at once; otherwise the heap's purge
    /// pass does it after the delay.
    func returnSpan(_ span: UnsafeMutablePointer<Page>, now: UInt64, purgeNow: Bool) {
        pointee.usedSlices -= span.pointee.sliceCount
        Counters.shared.pointee.activeBytes.wrappingSubtract(
            UInt(span.pointee.sliceCount << Geometry.sliceShift), ordering: .relaxed)
        span.pointee.kind = .freeSpan
        span.pointee.ownerTag.store(0, ordering: .relaxed)
        span.pointee.heap.store(0, ordering: .relaxed)
        span.pointee.blockSize = 0
        span.pointee.capacity = 0
        span.pointee.capacityBytes = 0
        span.pointee.purged = false
        span.pointee.freedAt = now
        if purgeNow { purge(span) }
        var head = span
        // Merge with the following span.
        let after = span.pointee.sliceIndex + span.pointee.sliceCount
        if after < Geometry.slicesPerSegment, page(at: after).pointee.kind == .freeSpan {
            absorb(page(at: after), into: head)
        }
        // Merge into the preceding span.
        let i = span.pointee.sliceIndex
        if i > 1 {
            let before = page(containing: UInt(bitPattern: base) + UInt((i - 1) << Geometry.sliceShift))
            if before.pointee.kind == .freeSpan {
                absorb(head, into: before)
                head = before
            }
        }
    }

    /// Merges free span `b` (right after `a`) into `a`.
    private func absorb(_ b: UnsafeMutablePointer<Page>, into a: UnsafeMutablePointer<Page>) {
        // A merged span is purged only if both parts were; a purged part merged with an
        // unpurged one counts as resident again (the next purge pass covers it).
        if a.pointee.purged != b.pointee.purged {
            let part = a.pointee.purged ? a : b
            Counters.shared.pointee.purgedNow.wrappingSubtract(
                UInt(part.pointee.sliceCount << Geometry.sliceShift), ordering: .relaxed)
        }
        a.pointee.purged = a.pointee.purged && b.pointee.purged
        if b.pointee.freedAt > a.pointee.freedAt { a.pointee.freedAt = b.pointee.freedAt }
        mapSlices(b.pointee.sliceIndex, b.pointee.sliceCount, to: a.pointee.sliceIndex)
        a.pointee.sliceCount += b.pointee.sliceCount
        b.pointee.sliceCount = 0
    }

    /// Returns a free span's memory to the OS.
    func purge(_ span: UnsafeMutablePointer<Page>) {
        let bytes = span.pointee.sliceCount << Geometry.sliceShift
        OSMemory.purge(base + (span.pointee.sliceIndex << Geometry.sliceShift), bytes)
        span.pointee.purged = true
        Counters.shared.pointee.purgedNow.wrappingAdd(UInt(bytes), ordering: .relaxed)
    }

    /// Purges every free span freed at least `delay` nanoseconds before `now`; returns
    /// true when some free span is still waiting for its delay.
    func purgeExpired(now: UInt64, delay: UInt64) -> Bool {
        var waiting = false
        var i = 1
        while i < Geometry.slicesPerSegment {
            let span = page(at: i)
            if span.pointee.kind == .freeSpan && !span.pointee.purged {
                if now &- span.pointee.freedAt >= delay { purge(span) } else { waiting = true }
            }
            i += span.pointee.sliceCount
        }
        return waiting
    }

    /// Calls `body` with each small or large page of the segment. `body` may return the
    /// page's span (which can merge with its neighbours): the walk goes on after whatever
    /// span then holds the visited slice.
    @inline(__always)
    func forEachPage(_ body: (UnsafeMutablePointer<Page>) -> Void) {
        var i = 1
        while i < Geometry.slicesPerSegment {
            let span = page(at: i)
            if span.pointee.kind != .freeSpan { body(span) }
            let now = page(containing: UInt(bitPattern: base) + UInt(i << Geometry.sliceShift))
            i = now.pointee.sliceIndex + now.pointee.sliceCount
        }
    }
}
