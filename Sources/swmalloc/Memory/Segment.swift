// Memory layer: segments and the spans of slices inside them.

import Synchronization

import CSwmShim

/// Header of a 4 MiB segment, at the segment's base (slice 0). A slice map and one page
/// descriptor per slice follow it:
///
///     base + 0                  Segment
///     base + sliceMapOffset     UInt8 × 64: slice → first slice of the span holding it
///     base + i · pageStride     Page, the descriptor of slice i (1 … 63)
///
/// Slice 0 holds no page, so its descriptor's place is the header and the slice map: a
/// descriptor is `base + i · 256`, one address computation on free's fast path. Read as
/// a descriptor, the header has owner tag 0 (`noOwnerTag`, at the tag's offset) and kind
/// `.freeSpan` (a zero byte at the kind's offset): free of a pointer into slice 0 takes
/// the slow path and aborts there.
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
    /// At a descriptor's owner-tag offset (+64): never written but by `checkLayout`'s
    /// probe, so 0 (headers start zeroed), and slice 0 has no owner.
    var noOwnerTag: UInt
    var spanReturns: UInt32                     // spans given back so far (a generation)
    var missReturns: UInt32                     // `spanReturns` when a span request last missed
    var missCount: UInt8                        // that request's slices and alignment (0: none)
    var missAlignment: UInt8
    var origin: UInt32                          // huge: the mapping it was cut from (`Huge.coalesce`)
    var hugeAdvice: Int                         // huge: THP advice last given from the block's start: +n bytes for, −n against, 0 unknown
    var residentMissReturns: UInt32             // `spanReturns` when a request for resident memory last missed
    var residentMissCount: UInt8                // that request's slices and alignment (0: none)
    var residentMissAlignment: UInt8

    static let sliceMapOffset = 128
    /// Bytes per page descriptor (three cache lines used, see `Page`): a power of two, so
    /// finding one is a shift.
    static let pageStride = 256
    /// Offsets in a descriptor that the header, read as slice 0's, must keep at zero; and
    /// where `Page`'s third cache line starts (`threadFree`, alone on it).
    static let ownerTagOffset = 64
    static let kindOffset = 110
    static let threadFreeOffset = 128

    /// Bytes of slice 0 that hold the header, the slice map and the page descriptors.
    static let headerBytes = pageStride * Geometry.slicesPerSegment

    /// Checks that the layout fits in slice 0 and that the header reads as a descriptor
    /// with no owner and no page (run once at start-up).
    static func checkLayout() {
        let header = MemoryLayout<Segment>.size
        // Where `noOwnerTag` lies: written through the struct, read back by offset.
        var probe = InlineArray<16, UInt>(repeating: 0)   // sliceMapOffset bytes
        let noOwner = withUnsafeMutableBytes(of: &probe) { bytes -> Bool in
            let raw = bytes.baseAddress.unsafelyUnwrapped
            raw.bindMemory(to: Segment.self, capacity: 1).pointee.noOwnerTag = 0x5a
            return raw.load(fromByteOffset: ownerTagOffset, as: UInt.self) == 0x5a
        }
        // Where `Page` puts its owner tag, kind and thread-free word: the offsets above,
        // which the cache-line split of `Page` and the header's disguise rely on.
        var pageProbe = InlineArray<32, UInt>(repeating: 0)   // pageStride bytes
        let pageFits = withUnsafeMutableBytes(of: &pageProbe) { bytes -> Bool in
            let raw = bytes.baseAddress.unsafelyUnwrapped
            let page = raw.bindMemory(to: Page.self, capacity: 1)
            page.pointee.ownerTag.store(0x5a, ordering: .relaxed)
            page.pointee.kind = .huge
            page.pointee.threadFree.store(0x77, ordering: .relaxed)
            return raw.load(fromByteOffset: ownerTagOffset, as: UInt.self) == 0x5a
                && raw.load(fromByteOffset: kindOffset, as: UInt8.self) == PageKind.huge.rawValue
                && raw.load(fromByteOffset: threadFreeOffset, as: UInt.self) == 0x77
        }
        if header > sliceMapOffset || header > kindOffset || !noOwner || !pageFits || headerBytes > Geometry.sliceSize
            || MemoryLayout<Page>.stride > pageStride
            || SegmentMap.count != 1 << (Geometry.addressBits - Geometry.segmentShift) {
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
        (base + i &* Segment.pageStride).assumingMemoryBound(to: Page.self)
    }

    /// Descriptor of the slice holding address `p`: the page's own descriptor when `p` lies
    /// in its first slice, else an interior one whose owner tag is 0 (free's fast path,
    /// see `Page`). Cost: a mask, a shift and an address computation; no load.
    @inline(__always)
    func descriptor(ofSliceHolding p: UInt) -> UnsafeMutablePointer<Page> {
        page(at: Int((p >> UInt(Geometry.sliceShift)) & UInt(Geometry.slicesPerSegment - 1)))
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

    /// A normal segment for `heap`: a retained one formatted again, or a fresh mapping;
    /// nil when the OS refuses.
    static func create(heap: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Segment>? {
        retained: while let seg = takeRetained() {
            // A trimmed one (`releaseAddressSpace`) gets its slices 1…63 mapped again. If
            // something else took their range meanwhile, it stays out of use for good
            // (64 KiB of address space: its header is never unmapped). If the kernel
            // refuses (a limit), it goes back on the list for a later try, and a fresh
            // segment is asked for, which gives the caches' address space back first
            // (dropping it instead lost its header's 64 KiB for good each time: an outside
            // review's program, allocating to its limit and freeing, round after round,
            // saw its capacity fall round by round).
            if seg.pointee.mappedSize != Geometry.segmentSize {
                switch seg.mapTrimmedSlices() {
                case .mapped: break
                case .taken: continue retained
                case .refused:
                    _ = seg.push(onto: Globals.retainedHead, count: Globals.retainedCount, limit: Int.max)
                    break retained
                }
            }
            // Its slices 1…63 are purged and still counted so; its header's tail is not
            // counted any more: it is the header again.
            Counters.shared.pointee.purgedNow.wrappingSubtract(UInt(retainedHeaderPurge), ordering: .relaxed)
            seg.base.initializeMemory(as: UInt8.self, repeating: 0, count: Segment.headerBytes)
            seg.format(heap: heap)
            return seg
        }
        guard let raw = OSMemory.mapAligned(Geometry.segmentSize, alignment: Geometry.segmentSize) else {
            return nil
        }
        if Options.current.pointee.thp != .system {
            OS.adviseHugePages(raw, Geometry.segmentSize, enable: false)
        }
        let seg = raw.assumingMemoryBound(to: Segment.self)
        Counters.shared.pointee.purgedNow.wrappingAdd(
            UInt(Geometry.usableSlices << Geometry.sliceShift), ordering: .relaxed)
        seg.format(heap: heap)
        return seg
    }

    /// Formats a zeroed header for `heap`: one free span of slices 1…63, not resident
    /// (fresh or purged), and the segment map's bit.
    private func format(heap: UnsafeMutableRawPointer) {
        pointee.kind = .small
        pointee.heap = heap
        pointee.mappedSize = Geometry.segmentSize
        let first = page(at: 1)
        first.pointee.kind = .freeSpan
        first.pointee.sliceIndex = 1
        first.pointee.sliceCount = Geometry.usableSlices
        first.pointee.purged = true
        mapSlices(1, Geometry.usableSlices, to: 1)
        Counters.shared.pointee.segments.wrappingAdd(1, ordering: .relaxed)
        SegmentMap.insert(base, SegmentMap.pages)
    }

    /// Most empty segments the process keeps mapped for reuse once their memory is
    /// purged, so that one thread's empty segment serves another without a new mapping.
    /// Segments whose free memory still waits for its purge delay are not counted: a
    /// program that frees many segments' worth and allocates it again within the delay
    /// reuses all of it, resident (`purgeCache` retains the excess once it is purged).
    static let cacheLimit = 8

    /// Retires an empty normal segment to the cache (purged first when `purgeNow`, and
    /// then retained instead when the cache is full).
    func retireEmpty(purgeNow: Bool) {
        if purgeNow { purgeExpired(now: OS.nowNanoseconds(), delay: 0) }
        pointee.heap = nil
        if !push(onto: Globals.segmentCacheHead, count: Globals.segmentCacheCount,
                 limit: purgeNow ? UnsafeMutablePointer<Segment>.cacheLimit : Int.max) {
            retain()
        }
    }

    /// Pushes this segment onto a list kept under `segmentCacheLock` (the cache or the
    /// retained list), linked through `next`, unless the list holds `limit` already;
    /// returns whether it did.
    private func push(onto head: UnsafeMutablePointer<UnsafeMutablePointer<Segment>?>,
                      count: UnsafeMutablePointer<Int>, limit: Int) -> Bool {
        Globals.segmentCacheLock.lock()
        defer { Globals.segmentCacheLock.unlock() }
        if count.pointee >= limit { return false }
        pointee.next = head.pointee
        head.pointee = self
        count.pointee += 1
        return true
    }

    /// The first segment of a list kept under `segmentCacheLock`, unlinked; nil when the
    /// list is empty.
    private static func pop(from head: UnsafeMutablePointer<UnsafeMutablePointer<Segment>?>,
                            count: UnsafeMutablePointer<Int>) -> UnsafeMutablePointer<Segment>? {
        if head.pointee == nil { return nil }
        Globals.segmentCacheLock.lock()
        defer { Globals.segmentCacheLock.unlock() }
        guard let seg = head.pointee else { return nil }
        head.pointee = seg.pointee.next
        count.pointee -= 1
        seg.pointee.next = nil
        return seg
    }

    /// Part of slice 0 a retained segment purges: all but the first OS page, which keeps
    /// the header and the list link.
    private static var retainedHeaderPurge: Int { Geometry.sliceSize - OS.pageSize }

    /// Gives an empty segment's memory back to the OS but keeps its address range mapped,
    /// on the retained list, for `create` to reuse (jemalloc's `retain`, on by default on
    /// 64-bit Linux, does the same).
    ///
    /// Why never unmap: a thread that freed blocks into another thread's page reads the
    /// page's owner right after publishing them (`Page.sendRemote`); by then the owner may
    /// have collected them, retired the page and given the segment away. Keeping every
    /// normal segment mapped makes that read safe (it finds zeros or a reformatted page).
    /// The cost is address space (the peak of normal segments), not memory: a retained
    /// segment keeps one 4 KiB page resident. Under a limit on mappings (`ulimit -v`,
    /// `ulimit -d`, `vm.overcommit_memory` = 2) its slices 1…63 are unmapped at once,
    /// keeping the header slice (`unmapSlices`), as `releaseAddressSpace` does.
    ///
    /// Invariant (retained segment): its slices 1…63 count as purged in `purgedNow` when
    /// mapped (`mappedSize` = segment size), and are not counted at all when unmapped.
    /// Where the kernel refused to purge a span (locked memory), the slices are unmapped
    /// instead, which gives even locked memory back; only if that is refused too do they
    /// stay mapped, counted as purged though resident.
    private func retain() {
        // Under a limit on mappings the address space goes back now, the memory with it
        // (not purged first: the unmap gives it back): the program's own mmap may need it
        // (an outside review: under `ulimit -v`, a program that freed 500 MB of blocks
        // could not mmap 500 MB, after any wait, until malloc_trim).
        let limited = pointee.mappedSize == Geometry.segmentSize && OS.addressSpaceLimited
        if !(limited && unmapWithSpans()) {
            purgeExpired(now: OS.nowNanoseconds(), delay: 0)
            let refused = residentSpanBytes(markPurged: true)
            if refused > 0 {
                Counters.shared.pointee.purgedNow.wrappingAdd(UInt(refused), ordering: .relaxed)
                // Given back by the unmap (`swm_collect` counts it), not by a purge.
                if unmapSlices() { Counters.shared.pointee.purgedTotal.wrappingAdd(UInt(refused), ordering: .relaxed) }
            }
        }
        OSMemory.purge(base + OS.pageSize, UnsafeMutablePointer<Segment>.retainedHeaderPurge)
        Counters.shared.pointee.purgedNow.wrappingAdd(
            UInt(UnsafeMutablePointer<Segment>.retainedHeaderPurge), ordering: .relaxed)
        SegmentMap.remove(base)
        Counters.shared.pointee.segments.wrappingSubtract(1, ordering: .relaxed)
        _ = push(onto: Globals.retainedHead, count: Globals.retainedCount, limit: Int.max)
    }

    /// Bytes of the free spans not purged (all spans are free in an empty segment); with
    /// `markPurged` they are marked purged (the caller counts them).
    private func residentSpanBytes(markPurged: Bool) -> Int {
        var bytes = 0
        var i = 1
        while i < Geometry.slicesPerSegment {
            let span = page(at: i)
            if !span.pointee.purged {
                bytes += span.pointee.sliceCount << Geometry.sliceShift
                if markPurged { span.pointee.purged = true }
            }
            i += span.pointee.sliceCount
        }
        return bytes
    }

    /// Unmaps an empty segment's slices 1…63 with the memory its free spans still hold
    /// resident, counted as given back; false, nothing changed, when the kernel refuses.
    private func unmapWithSpans() -> Bool {
        let resident = residentSpanBytes(markPurged: false)
        // `unmapSlices` uncounts slices 1…63 as purged: count the resident ones so first.
        Counters.shared.pointee.purgedNow.wrappingAdd(UInt(resident), ordering: .relaxed)
        if !unmapSlices() {
            Counters.shared.pointee.purgedNow.wrappingSubtract(UInt(resident), ordering: .relaxed)
            return false
        }
        _ = residentSpanBytes(markPurged: true)
        Counters.shared.pointee.purgedTotal.wrappingAdd(UInt(resident), ordering: .relaxed)
        return true
    }

    /// Unmaps a retained segment's slices 1…63 (counted as purged until now), keeping its
    /// header; false when the kernel refuses (`vm.max_map_count`): it stays whole.
    private func unmapSlices() -> Bool {
        let bytes = UnsafeMutablePointer<Segment>.trimmedBytes
        if OS.unmap(base + Geometry.sliceSize, bytes) != .unmapped { return false }
        Counters.shared.pointee.mapped.wrappingSubtract(UInt(bytes), ordering: .relaxed)
        Counters.shared.pointee.purgedNow.wrappingSubtract(UInt(bytes), ordering: .relaxed)
        pointee.mappedSize = Geometry.sliceSize
        return true
    }

    /// Bytes of a retained segment that `releaseAddressSpace` unmaps: slices 1…63.
    private static var trimmedBytes: Int { Geometry.segmentSize - Geometry.sliceSize }

    /// After the kernel refused a mapping (an address-space limit, `ulimit -v`): the
    /// cached empty segments are retained, and every retained segment gives back the
    /// address space of its slices 1…63 (`munmap`), keeping slice 0 — its header, which
    /// a thread that freed into one of its pages may still read (`Page.sendRemote`), so it
    /// is never unmapped — marked by `mappedSize` = one slice. Returns whether any
    /// address space went back. Without this a program that once held many small blocks
    /// could never map a huge block again under its limit, even after freeing them all.
    static func releaseAddressSpace() -> Bool {
        while let seg = pop(from: Globals.segmentCacheHead, count: Globals.segmentCacheCount) { seg.retain() }
        var released = false
        Globals.segmentCacheLock.lock()
        var cursor = Globals.retainedHead.pointee
        while let seg = cursor {
            cursor = seg.pointee.next
            if seg.pointee.mappedSize == Geometry.segmentSize && seg.unmapSlices() { released = true }
        }
        Globals.segmentCacheLock.unlock()
        return released
    }

    /// Maps a trimmed retained segment's slices 1…63 again (fresh, so counted as purged,
    /// as a new segment's are).
    private func mapTrimmedSlices() -> OS.ExactMapping {
        let rest = UnsafeMutablePointer<Segment>.trimmedBytes
        let result = OSMemory.map(exactlyAt: base + Geometry.sliceSize, rest)
        if result != .mapped { return result }
        if Options.current.pointee.thp != .system { OS.adviseHugePages(base + Geometry.sliceSize, rest, enable: false) }
        Counters.shared.pointee.purgedNow.wrappingAdd(UInt(rest), ordering: .relaxed)
        pointee.mappedSize = Geometry.segmentSize
        return .mapped
    }

    /// A retained segment, unlinked; nil when there is none.
    private static func takeRetained() -> UnsafeMutablePointer<Segment>? {
        pop(from: Globals.retainedHead, count: Globals.retainedCount)
    }

    /// Purges the cached segments' free spans freed at least `delay` before `now`, and
    /// retains the purged ones beyond `cacheLimit`; returns when the oldest one still
    /// waiting was freed (`UInt64.max`: none).
    @discardableResult
    static func purgeCache(now: UInt64, delay: UInt64) -> UInt64 {
        if Globals.segmentCacheHead.pointee == nil { return .max }
        var oldest = UInt64.max
        var excess: UnsafeMutablePointer<Segment>? = nil
        var previous: UnsafeMutablePointer<Segment>? = nil
        Globals.segmentCacheLock.lock()
        var cursor = Globals.segmentCacheHead.pointee
        while let seg = cursor {
            cursor = seg.pointee.next
            let waiting = seg.purgeExpired(now: now, delay: delay)
            oldest = min(oldest, waiting)
            if waiting == .max && Globals.segmentCacheCount.pointee > cacheLimit {
                if let previous { previous.pointee.next = cursor } else { Globals.segmentCacheHead.pointee = cursor }
                Globals.segmentCacheCount.pointee -= 1
                seg.pointee.next = excess
                excess = seg
            } else {
                previous = seg
            }
        }
        Globals.segmentCacheLock.unlock()
        while let seg = excess {
            excess = seg.pointee.next
            seg.pointee.next = nil
            seg.retain()
        }
        return oldest
    }

    /// An empty segment from the cache, now owned by `heap`; nil when the cache is empty.
    static func takeCached(heap: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Segment>? {
        let seg = pop(from: Globals.segmentCacheHead, count: Globals.segmentCacheCount)
        seg?.pointee.heap = heap
        return seg
    }

    /// A cached empty segment with a resident free span of at least `count` slices, now
    /// owned by `heap`; nil when the cache has none. The walk is bounded by the cache,
    /// which holds the segments whose memory still waits for its delay and at most
    /// `cacheLimit` purged ones.
    static func takeCachedResident(heap: UnsafeMutableRawPointer, count: Int) -> UnsafeMutablePointer<Segment>? {
        if Globals.segmentCacheHead.pointee == nil { return nil }
        Globals.segmentCacheLock.lock()
        defer { Globals.segmentCacheLock.unlock() }
        var previous: UnsafeMutablePointer<Segment>? = nil
        var cursor = Globals.segmentCacheHead.pointee
        while let seg = cursor {
            cursor = seg.pointee.next
            if seg.bestResidentFit(count, alignment: 1) != nil {
                if let previous { previous.pointee.next = cursor } else { Globals.segmentCacheHead.pointee = cursor }
                Globals.segmentCacheCount.pointee -= 1
                seg.pointee.next = nil
                seg.pointee.heap = heap
                return seg
            }
            previous = seg
        }
        return nil
    }

    /// Takes a span of `count` slices starting at a multiple of `alignment` slices (first
    /// fit; `alignment` a power of two), splitting the free span it comes from. Returns its
    /// descriptor with `sliceIndex`/`sliceCount` set, or nil when none fits.
    ///
    /// A miss is remembered until a span comes back: taking spans only removes room, so a
    /// request at least as long and as aligned cannot fit either, and is answered without
    /// walking the spans (thousands of aligned blocks would otherwise walk every segment).
    ///
    /// With `residentOnly` it takes only a span whose memory is resident (freed and not
    /// yet purged), the smallest that fits (`bestResidentFit`), and its misses are
    /// remembered apart (a purged span may still fit the other walk).
    func takeSpan(_ count: Int, alignment: Int = 1, residentOnly: Bool = false) -> UnsafeMutablePointer<Page>? {
        if pointee.missCount != 0 && pointee.missReturns == pointee.spanReturns
            && count >= Int(pointee.missCount) && alignment >= Int(pointee.missAlignment) {
            return nil
        }
        if residentOnly {
            // A miss is remembered as for the other walk: only a returned span makes
            // memory resident and free (purges and takes only remove it).
            if pointee.residentMissCount != 0 && pointee.residentMissReturns == pointee.spanReturns
                && count >= Int(pointee.residentMissCount) && alignment >= Int(pointee.residentMissAlignment) {
                return nil
            }
            guard let i = bestResidentFit(count, alignment: alignment) else {
                pointee.residentMissReturns = pointee.spanReturns
                pointee.residentMissCount = UInt8(count)
                pointee.residentMissAlignment = UInt8(alignment)
                return nil
            }
            var span = page(at: i)
            let start = (i + alignment - 1) & ~(alignment - 1)
            if start > i { span = split(span, at: start) }
            if span.pointee.sliceCount > count { _ = split(span, at: start + count) }
            markInUse(span)
            return span
        }
        var i = 1
        while i < Geometry.slicesPerSegment {
            var span = page(at: i)
            let length = span.pointee.sliceCount
            let start = (i + alignment - 1) & ~(alignment - 1)
            if span.pointee.kind == .freeSpan && start + count <= i + length + freeAfter(i + length, upTo: start + count) {
                // A span wholly before the aligned start: the next one begins the fit.
                if start >= i + length {
                    i += length
                    continue
                }
                // Free spans of different purge states lie side by side unmerged (see
                // `returnSpan`): join as many as the request needs, and no more. Each part
                // left over (before the start, after the end) keeps its own state: joined
                // whole and then cut, a never-touched tail joined to a resident span was
                // left marked resident, and the next request for resident memory took
                // fresh slices there while freed ones stayed resident elsewhere (an
                // outside review, R54: a growth chain of 64 KiB … 1.3 MiB blocks settled
                // at 5.8 MB resident for 2.3 MB live).
                if start > i { span = split(span, at: start) }
                while count > span.pointee.sliceCount {
                    let next = page(at: start + span.pointee.sliceCount)
                    let need = count - span.pointee.sliceCount
                    if next.pointee.sliceCount > need { _ = split(next, at: next.pointee.sliceIndex + need) }
                    absorb(next, into: span)
                }
                if span.pointee.sliceCount > count { _ = split(span, at: start + count) }
                markInUse(span)
                return span
            }
            i += length
        }
        pointee.missReturns = pointee.spanReturns
        pointee.missCount = UInt8(count)
        pointee.missAlignment = UInt8(alignment)
        return nil
    }

    /// The first slice of the smallest resident free span that holds `count` slices from a
    /// multiple of `alignment` (the first of equals), nil when none does.
    private func bestResidentFit(_ count: Int, alignment: Int) -> Int? {
        var best: Int? = nil
        var bestLength = Int.max
        var i = 1
        while i < Geometry.slicesPerSegment {
            let span = page(at: i)
            let length = span.pointee.sliceCount
            let start = (i + alignment - 1) & ~(alignment - 1)
            if span.pointee.kind == .freeSpan && !span.pointee.purged && length < bestLength
                && start + count <= i + length {
                if length == count { return i }
                best = i
                bestLength = length
            }
            i += length
        }
        return best
    }

    /// Counts free span `span`, cut to the length taken, as in use: resident from now on
    /// (as far as its page touches it: `untouchedTail` says whether the rest is), and its
    /// slices used.
    private func markInUse(_ span: UnsafeMutablePointer<Page>) {
        let bytes = UInt(span.pointee.sliceCount << Geometry.sliceShift)
        if span.pointee.purged { Counters.shared.pointee.purgedNow.wrappingSubtract(bytes, ordering: .relaxed) }
        span.pointee.untouchedTail = span.pointee.purged
        span.pointee.purged = false
        pointee.usedSlices += span.pointee.sliceCount
        Counters.shared.pointee.activeBytes.wrappingAdd(bytes, ordering: .relaxed)
    }

    /// Free slices in the run of free spans that starts at slice `i`, counted until the
    /// run ends or reaches slice `end`.
    private func freeAfter(_ i: Int, upTo end: Int) -> Int {
        var j = i
        while j < end && j < Geometry.slicesPerSegment && page(at: j).pointee.kind == .freeSpan {
            j += page(at: j).pointee.sliceCount
        }
        return j - i
    }

    /// Lengthens the live span `span` by `extra` slices taken from the free spans right
    /// after it (split when longer); false, and nothing changed, when the slices after it
    /// are not free or too few. Like `takeSpan`, it only removes room, so a remembered
    /// miss stays true.
    func extendSpan(_ span: UnsafeMutablePointer<Page>, by extra: Int) -> Bool {
        let after = span.pointee.sliceIndex + span.pointee.sliceCount
        if after >= Geometry.slicesPerSegment { return false }
        let next = page(at: after)
        if next.pointee.kind != .freeSpan || freeAfter(after, upTo: after + extra) < extra { return false }
        while next.pointee.sliceCount < extra { absorb(page(at: after + next.pointee.sliceCount), into: next) }
        if next.pointee.sliceCount > extra { _ = split(next, at: after + extra) }
        markInUse(next)
        next.pointee.sliceCount = 0
        mapSlices(after, extra, to: span.pointee.sliceIndex)
        span.pointee.sliceCount += extra
        return true
    }

    /// Cuts free span `span` in two at slice `at` (inside it); returns the second part, a
    /// free span of the same purge state and age.
    private func split(_ span: UnsafeMutablePointer<Page>, at: Int) -> UnsafeMutablePointer<Page> {
        let end = span.pointee.sliceIndex + span.pointee.sliceCount
        let rest = page(at: at)
        rest.pointee.kind = .freeSpan
        rest.pointee.sliceIndex = at
        rest.pointee.sliceCount = end - at
        rest.pointee.purged = span.pointee.purged
        rest.pointee.freedAt = span.pointee.freedAt
        mapSlices(at, end - at, to: at)
        span.pointee.sliceCount = at - span.pointee.sliceIndex
        return rest
    }

    /// Gives a page's span back to the segment's free spans, merging with free neighbours
    /// of the same purge state. With `purgeNow` its memory goes back to the OS at once;
    /// otherwise the heap's purge pass does it after the delay.
    ///
    /// Why not merge a resident span with a purged (or never touched) one: the merged span
    /// would count as resident, and the next page cut from it could land in the part that
    /// is not, touching fresh memory while freed memory stays resident and unused (a fork
    /// child that freed 64 MiB of its parent's threads' blocks and allocated as much again
    /// grew by 15 MiB). `takeSpan` joins neighbours when a request needs them.
    func returnSpan(_ span: UnsafeMutablePointer<Page>, now: UInt64, purgeNow: Bool) {
        pointee.spanReturns &+= 1
        pointee.usedSlices -= span.pointee.sliceCount
        Counters.shared.pointee.activeBytes.wrappingSubtract(
            UInt(span.pointee.sliceCount << Geometry.sliceShift), ordering: .relaxed)
        span.pointee.kind = .freeSpan
        span.pointee.ownerTag.store(0, ordering: .relaxed)
        span.pointee.heap.store(0, ordering: .relaxed)
        span.pointee.blockSize = 0
        span.pointee.capacity = 0
        span.pointee.purged = false
        span.pointee.keptEmpty = false
        span.pointee.freedAt = now
        if purgeNow { purge(span, now: now) }
        var head = span
        // Merge with the following span.
        let after = span.pointee.sliceIndex + span.pointee.sliceCount
        if after < Geometry.slicesPerSegment, page(at: after).pointee.kind == .freeSpan,
           page(at: after).pointee.purged == span.pointee.purged {
            absorb(page(at: after), into: head)
        }
        // Merge into the preceding span.
        let i = span.pointee.sliceIndex
        if i > 1 {
            let before = page(containing: UInt(bitPattern: base) + UInt((i - 1) << Geometry.sliceShift))
            if before.pointee.kind == .freeSpan && before.pointee.purged == span.pointee.purged {
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

    /// Returns a free span's memory to the OS. Where the kernel refuses (locked memory:
    /// `mlock`, `mlockall`) the span stays resident and counted so, and its free time moves
    /// `refusedRetryNanoseconds` ahead: the delay retries it then (once the program
    /// unlocks its memory, it goes back), not at every pass (the purger would wake for it
    /// again and again); a forced purge (delay 0: `swm_collect`, an empty segment's
    /// retirement) retries it at once. Before, a refused purge counted as done: with
    /// `mlockall`, `resident` fell by every byte freed while the resident set did not move
    /// (`retention locked_memory_resident`).
    func purge(_ span: UnsafeMutablePointer<Page>, now: UInt64) {
        let bytes = span.pointee.sliceCount << Geometry.sliceShift
        if !OSMemory.purge(base + (span.pointee.sliceIndex << Geometry.sliceShift), bytes) {
            span.pointee.freedAt = now &+ UnsafeMutablePointer<Segment>.refusedRetryNanoseconds
            return
        }
        span.pointee.purged = true
        Counters.shared.pointee.purgedNow.wrappingAdd(UInt(bytes), ordering: .relaxed)
    }

    /// How long a span whose purge the kernel refused waits before the delay tries again.
    static var refusedRetryNanoseconds: UInt64 { 4_000_000_000 }

    /// Purges every free span freed at least `delay` nanoseconds before `now`; returns
    /// when the oldest free span still waiting for its delay was freed (`UInt64.max` when
    /// none waits).
    @discardableResult
    func purgeExpired(now: UInt64, delay: UInt64) -> UInt64 {
        var refused = false
        return purgeExpired(now: now, delay: delay, refused: &refused)
    }

    /// The same; `refused` becomes true where the kernel refused a purge (that span waits
    /// `refusedRetryNanoseconds` more, and is not in the time returned: a cached segment
    /// of such spans may still be unmapped, which the kernel does not refuse).
    func purgeExpired(now: UInt64, delay: UInt64, refused: inout Bool) -> UInt64 {
        var oldest = UInt64.max
        var i = 1
        while i < Geometry.slicesPerSegment {
            let span = page(at: i)
            if span.pointee.kind == .freeSpan && !span.pointee.purged {
                if hasExpired(freedAt: span.pointee.freedAt, now: now, delay: delay) {
                    purge(span, now: now)
                    if !span.pointee.purged { refused = true }
                } else if span.pointee.freedAt < oldest {
                    oldest = span.pointee.freedAt
                }
            }
            i += span.pointee.sliceCount
        }
        return oldest
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

/// Whether memory freed at `freedAt` stayed unused for `delay` by `now` (a delay of 0:
/// always). `now` may be older than `freedAt` (read before another step freed it): that
/// memory is young, not 2^64 ns old.
@inline(__always)
func hasExpired(freedAt: UInt64, now: UInt64, delay: UInt64) -> Bool {
    delay == 0 || (now >= freedAt && now - freedAt >= delay)
}
