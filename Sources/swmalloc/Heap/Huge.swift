// Thread-heap layer: huge blocks, each in a mapping of its own.

import Synchronization

/// Blocks above `Geometry.largeMax`, and aligned blocks that do not fit a segment: each
/// in a mapping of its own. A freed block's mapping goes to the *huge cache* (bounded by
/// `cacheLimitBytes()` and `cacheLimitCount`, oldest evicted first) and is unmapped once it
/// stayed there for the purge delay; an allocation takes the smallest cached mapping of
/// the same layout that is large enough, or grows the largest. So a program that frees
/// and allocates big buffers reuses memory that is still resident instead of paying an
/// mmap and a page fault per 4 KiB each time. With `purge_delay_ms=0` nothing is cached.
///
/// - Alignment up to 2 MiB: the mapping is 4 MiB-aligned, so the segment map finds it, with
///   a header in the first slice and the block at `hugeOffset`: 64 KiB, the alignment, or
///   2 MiB when the block is to be backed by transparent huge pages (`thp=large`).
/// - Alignment above 2 MiB (*over-aligned*): the block itself starts on a 4 MiB boundary,
///   where a segment header would be, so it is not in the segment map. Its header
///   (`OverAligned`) is the OS page just below it, and the live ones are in a table
///   (OverAligned.swift). `free` looks there only for pointers outside every segment
///   that are 4 MiB-aligned, so it costs other frees nothing.
enum Huge {
    /// Largest alignment honoured (the user address space): larger fail with ENOMEM.
    static let maxAlignment = 1 << Geometry.addressBits

    /// A huge block of at least `size` bytes, aligned to `alignment` when it is above
    /// 64 KiB; nil with ENOMEM when the OS refuses.
    ///
    /// With `zeroed` the block reads as zero (calloc): a fresh mapping is, a cached one is
    /// cleared. The `thp` policy is applied to every block, fresh or cached
    /// (`adviseHugePages`): a cached mapping may carry the advice of a block of the other
    /// kind.
    static func allocate(_ size: Int, alignment: Int, zeroed: Bool = false) -> UnsafeMutableRawPointer? {
        if size < 0 || size > Int.max / 2 || alignment > maxAlignment { return Heap.outOfMemory() }
        if alignment > Geometry.largeMax { return allocateOverAligned(size, alignment: alignment) }
        var offset = alignment > Geometry.sliceSize ? alignment : Geometry.sliceSize
        if backedByHugePages(size) && offset < Geometry.largeMax { offset = Geometry.largeMax }
        let total = mappingSize(size, offset: offset)
        if let (seg, kept) = takeCached(total: total, offset: offset, zeroed: zeroed) {
            let block = seg.base + offset
            // Only the part that held the old block's bytes needs clearing: a part the
            // mapping grew by is fresh (zero, and not resident until touched). It is
            // purged, written only where the kernel refuses that (`OSMemory.zero`): a
            // zeroed table is often used sparsely, and writing zeros made all of it
            // resident (an outside review: eight 64 MB tables touched once per MiB took
            // 512 MB, against 2 MB for glibc and jemalloc).
            if zeroed && kept > offset { OSMemory.zero(block, kept - offset) }
            // The whole usable size: a cut mapping's block runs to its end, past `total`.
            adviseHugePages(seg, size: size, usable: seg.pointee.mappedSize - offset, zeroed: zeroed)
            SegmentMap.insert(seg.base, SegmentMap.huge)
            // Counted by what it maps (a cut mapping can end past `total`): free subtracts
            // the same.
            let mapped = seg.pointee.mappedSize
            countAllocation(usable: mapped - offset, mapped: mapped)
            return block
        }
        guard let base = OSMemory.mapAligned(total, alignment: Geometry.segmentSize) else {
            return Heap.outOfMemory()
        }
        format(base.assumingMemoryBound(to: Segment.self), mappedSize: total, offset: offset, origin: newOrigin())
        let block = base + offset
        adviseHugePages(base.assumingMemoryBound(to: Segment.self), size: size, usable: total - offset, zeroed: zeroed)
        SegmentMap.insert(base, SegmentMap.huge)
        countAllocation(usable: total - offset, mapped: total)
        return block
    }

    /// realloc of the huge block at `pointer` (its start, checked) to `size` bytes, more
    /// than it holds: its mapping grows where it is when the range after it is free (a
    /// shrink just gave it back, or nothing was mapped there), else its pages move to a
    /// larger mapping (`mremap`: nothing is copied, only the growth faults), as glibc does
    /// for its mapped chunks. (Before, it always moved: a block that went between 2.5 and
    /// 3 MB moved at every growth, three system calls each; an outside review.) Nil when the kernel
    /// refuses, or the thread has no heap to count it in; the block is then untouched and
    /// the caller copies.
    ///
    /// The block is the caller's, so no other thread may use the old address range once
    /// it moved; its segment-map byte moves with it. The old byte is cleared *before* the
    /// old range is unmapped (inside `growAligned`): once it is, another thread's next
    /// mapping may land at that address and set the same byte, which a clear after the
    /// unmap would erase (its live block then read as an invalid pointer). Between the
    /// clear and the move only this thread, which owns the block, could name it.
    static func grow(_ pointer: UnsafeMutableRawPointer, segment seg: UnsafeMutablePointer<Segment>, to size: Int) -> UnsafeMutableRawPointer? {
        let heap = Heap.current
        if size > Int.max / 2 || heap.isEmpty { return nil }
        // Claimed before its header is read: a free of the block by another thread (a
        // program race) may unmap it once it holds the claim.
        if !SegmentMap.claim(seg.base) { OS.fatal("realloc(): pointer already freed", pointer: pointer) }
        let offset = seg.pointee.hugeOffset
        let total = mappingSize(size, offset: offset)
        let oldMapped = seg.pointee.mappedSize
        joinAdvice(seg)
        if growInPlace(seg, to: total) {
            SegmentMap.insert(seg.base, SegmentMap.huge)
            adviseHugePages(seg, size: total - offset, usable: total - offset, zeroed: false)
            countResize(from: oldMapped, to: total, heap: heap)
            return pointer
        }
        guard let moved = OSMemory.growAligned(seg.base, oldMapped, to: total, alignment: Geometry.segmentSize,
                                               head: offset, headBytes: Segment.headerBytes) else {
            SegmentMap.insert(seg.base, SegmentMap.huge)   // refused: the old mapping is untouched
            return nil
        }
        let grown = moved.assumingMemoryBound(to: Segment.self)
        grown.pointee.mappedSize = total
        grown.pointee.origin = newOrigin()
        SegmentMap.insert(moved, SegmentMap.huge)
        let block = moved + offset
        adviseHugePages(grown, size: total - offset, usable: total - offset, zeroed: false)
        countResize(from: oldMapped, to: total, heap: heap)
        return block
    }

    /// Grows the mapping of `seg` to `total` bytes where it is, when the range after it is
    /// free; false otherwise (nothing changed). Only the part from the block on is grown:
    /// after a move it is a kernel mapping of its own beside the header's, and `mremap`
    /// grows a range only to the end of one.
    private static func growInPlace(_ seg: UnsafeMutablePointer<Segment>, to total: Int) -> Bool {
        let offset = seg.pointee.hugeOffset
        let old = seg.pointee.mappedSize
        if !OS.growInPlace(seg.base + offset, old - offset, to: total - offset) { return false }
        seg.pointee.mappedSize = total
        Counters.shared.pointee.mapped.wrappingAdd(UInt(total - old), ordering: .relaxed)
        return true
    }

    /// realloc of the huge block of `seg` to `size` bytes, fewer than it holds: the
    /// block stays where it is and the end of its mapping past the new size goes back to
    /// the OS, as glibc's `mremap` of a mapped chunk does (a 200 MiB block shrunk to
    /// 101 MiB kept all 200 MiB resident). Nothing when that would give back nothing, or
    /// the thread has no heap to count it in; false then in the second case only. The
    /// block (at `pointer`) is claimed while its header is read and changed, as in `grow`.
    static func shrink(_ pointer: UnsafeMutableRawPointer, segment seg: UnsafeMutablePointer<Segment>, to size: Int) -> Bool {
        let heap = Heap.current
        if heap.isEmpty { return false }
        if !SegmentMap.claim(seg.base) { OS.fatal("realloc(): pointer already freed", pointer: pointer) }
        let total = mappingSize(size, offset: seg.pointee.hugeOffset)
        let old = seg.pointee.mappedSize
        if total < old && OSMemory.cutEnd(seg.base + total, old - total) {
            seg.pointee.mappedSize = total
            countResize(from: old, to: total, heap: heap)
        }
        SegmentMap.insert(seg.base, SegmentMap.huge)
        return true
    }

    /// Counts a live huge block whose mapping went from `old` to `new` bytes (its usable
    /// bytes by as much): the process counters, and the calling thread's heap as an
    /// allocation of the growth or a free of the cut.
    static func countResize(from old: Int, to new: Int, heap: Heap) {
        let counters = Counters.shared
        if new > old {
            let growth = UInt(new - old)
            countLive(growth: growth)
            counters.pointee.hugeUsable.wrappingAdd(growth, ordering: .relaxed)
            heap.state.pointee.bigAllocated &+= growth
        } else {
            let cut = UInt(old - new)
            counters.pointee.hugeBytes.wrappingSubtract(cut, ordering: .relaxed)
            counters.pointee.hugeUsable.wrappingSubtract(cut, ordering: .relaxed)
            heap.state.pointee.bigFreed &+= cut
        }
    }

    /// Whether a block of `size` bytes is laid out for transparent huge pages: with
    /// `thp=large` a block of 2 MiB or more starts on a 2 MiB boundary, so the kernel can
    /// back it with huge pages: one fault per 2 MiB instead of 512. Only the 2 MiB pages
    /// the request covers whole are advised (`adviseHugePages`), and its mapping ends at
    /// its last OS page: the tail gets small pages (the mapping once spanned whole 2 MiB
    /// pages, all advised: a block of 2 MiB + 1 byte, written, took 4 MiB resident; the
    /// `large` benchmark ran as fast with whole 2 MiB mappings as without).
    @inline(__always)
    private static func backedByHugePages(_ size: Int) -> Bool {
        Options.current.pointee.thp == .large && size >= Geometry.largeMax
    }

    /// Bytes of the mapping of a huge block of `size` bytes placed at `offset`: whole
    /// OS pages.
    @inline(__always)
    private static func mappingSize(_ size: Int, offset: Int) -> Int {
        offset + OS.wholePages(size)
    }

    /// Before a huge block's mapping moves (`mremap`, which takes one kernel mapping
    /// only): with `large`, the advice on the 2 MiB pages of the request split the
    /// block's part of the mapping in two (advised, and its tail), so the move failed and
    /// realloc copied; the whole block part is advised again, which joins them. The grown
    /// block is advised whole (its tail included, at most one 2 MiB page).
    ///
    /// It also bounds the recorded advice (`Segment.hugeAdvice`) by the block as it is
    /// now: the part the mapping grows by is fresh, without advice, and a record of a
    /// larger block that was cut or shrunk must not claim it.
    private static func joinAdvice(_ seg: UnsafeMutablePointer<Segment>) {
        let usable = seg.pointee.mappedSize - seg.pointee.hugeOffset
        if Options.current.pointee.thp == .large && usable >= Geometry.largeMax {
            OS.adviseHugePages(seg.base + seg.pointee.hugeOffset, usable, enable: true)
            seg.pointee.hugeAdvice = usable
        } else if abs(seg.pointee.hugeAdvice) > usable {
            seg.pointee.hugeAdvice = seg.pointee.hugeAdvice > 0 ? usable : -usable
        }
    }

    /// Applies the `thp` policy to a huge block of `size` bytes requested (`usable` in
    /// its mapping), from malloc or, `zeroed`, from calloc: with `large`, the 2 MiB pages
    /// a malloc request covers whole opt in, and a calloc block of 2 MiB or more opts out
    /// (a zeroed table is often used sparsely: its untouched pages then cost nothing,
    /// where huge pages would make each 2 MiB it touches resident); with `never`, every
    /// block opts out. So a mapping from the huge cache never keeps the advice of the
    /// block it held before (an outside review found a malloc block reusing a calloc
    /// block's mapping opted out, and calloc blocks not opted out under `never`).
    ///
    /// The advice given is recorded in the segment's header (`hugeAdvice`: for or against,
    /// over how many bytes from the block's start), and a call that the record already
    /// covers is skipped: a malloc/free loop of one huge size served from the cache made
    /// an `madvise` call per malloc (166 → 420 ns a pair, an outside review). Mappings
    /// joined in the cache forget it (`coalesce`), and growth bounds it (`joinAdvice`).
    /// An over-aligned block (`seg` nil) has no record.
    static func adviseHugePages(_ seg: UnsafeMutablePointer<Segment>?, block: UnsafeMutableRawPointer? = nil,
                                size: Int, usable: Int, zeroed: Bool) {
        var want = 0
        switch Options.current.pointee.thp {
        case .large:
            let whole = size & ~(Geometry.largeMax - 1)
            if zeroed { if usable >= Geometry.largeMax { want = -usable } } else { want = whole }
        case .never: want = -usable
        case .segments, .system: break
        }
        if want == 0 { return }
        let start: UnsafeMutableRawPointer
        if let seg {
            let had = seg.pointee.hugeAdvice
            if (want > 0 && had >= want) || (want < 0 && had <= want) { return }
            seg.pointee.hugeAdvice = want
            start = seg.base + seg.pointee.hugeOffset
        } else {
            start = block.unsafelyUnwrapped
        }
        OS.adviseHugePages(start, abs(want), enable: want > 0)
    }

    /// Counts a huge block allocated: process counters, and the thread's (or the orphan
    /// counters when the thread has no heap).
    static func countAllocation(usable: Int, mapped: Int) {
        countLive(growth: UInt(mapped))
        Counters.shared.pointee.hugeBlocks.wrappingAdd(1, ordering: .relaxed)
        Counters.shared.pointee.hugeUsable.wrappingAdd(UInt(usable), ordering: .relaxed)
        let heap = Heap.current
        if !heap.isEmpty {
            heap.state.pointee.bigAllocated &+= UInt(usable)
            heap.state.pointee.bigAllocs &+= 1
        } else {
            Stats.countOrphanHuge(allocated: UInt(usable))
        }
    }

    /// Adds `growth` bytes to the live huge mappings, raises their peak, and keeps the
    /// cache within its bound (`trimCache`).
    private static func countLive(growth: UInt) {
        let counters = Counters.shared
        let live = counters.pointee.hugeBytes.wrappingAdd(growth, ordering: .relaxed).newValue
        counters.pointee.hugePeak.max(live, ordering: .relaxed)
        trimCache()
    }

    /// Counts a huge block freed.
    static func countFree(usable: Int, mapped: Int, heap: Heap) {
        if !heap.isEmpty {
            heap.state.pointee.bigFreed &+= UInt(usable)
            heap.state.pointee.bigFrees &+= 1
        } else {
            Stats.countOrphanFree(kind: .huge, classIndex: 0, size: UInt(usable))
        }
        Counters.shared.pointee.hugeBytes.wrappingSubtract(UInt(mapped), ordering: .relaxed)
        Counters.shared.pointee.hugeBlocks.wrappingSubtract(1, ordering: .relaxed)
        Counters.shared.pointee.hugeUsable.wrappingSubtract(UInt(usable), ordering: .relaxed)
    }

    /// Whether `block` lies where a huge block may start in its segment: at an offset
    /// `hugeOffset` can take (a power of two from 64 KiB to 2 MiB: the first slice, the
    /// alignment, or the 2 MiB of `thp=large`). Read from the address alone, before any
    /// claim.
    @inline(__always)
    static func mayBeBlockStart(_ block: UnsafeMutableRawPointer) -> Bool {
        let offset = UInt(bitPattern: block) & Geometry.segmentMask
        return offset >= UInt(Geometry.sliceSize) && offset <= UInt(Geometry.largeMax) && offset & (offset &- 1) == 0
    }

    /// Usable bytes of the huge block in `seg`.
    @inline(__always)
    static func usableSize(_ seg: UnsafeMutablePointer<Segment>) -> Int {
        seg.pointee.mappedSize - seg.pointee.hugeOffset
    }

    /// Unmaps or caches a huge block after checking that `pointer` is its start, or the
    /// caller pointer of a VOS block at its start.
    ///
    /// It claims the mapping first (`SegmentMap.claim`), before reading its header: of two
    /// threads freeing the block at once (a double free racing with itself), one claims
    /// it and the other reports without touching it, since the winner may have unmapped it
    /// already. A free after the claim finds the pointer outside every segment and reports
    /// it there. A VOS block is credited while the claim is held
    /// (`Extensions.releaseClaimedHuge`), for the same reason. A bad pointer gives the
    /// claim back before it aborts.
    static func free(_ pointer: UnsafeMutableRawPointer, segment seg: UnsafeMutablePointer<Segment>, heap: Heap) {
        if !SegmentMap.claim(seg.base) { OS.fatal("free(): double free detected", pointer: pointer) }
        let start = seg.base + seg.pointee.hugeOffset
        if pointer != start && !Extensions.releaseClaimedHuge(pointer, blockStart: start) {
            SegmentMap.insert(seg.base, SegmentMap.huge)
            OS.fatal("free(): invalid pointer: not the start of an allocated block", pointer: pointer)
        }
        freeClaimed(seg, heap: heap)
    }

    /// realloc's claim of the huge block at `pointer` in `seg`, before it frees it
    /// (`realloc(p, 0)`) or copies it to a new block: as `free`'s, but it takes no VOS
    /// block and reports in realloc's words. Another thread's free of the same block (a
    /// program race) then either came first, and this aborts without reading the header
    /// that free may have unmapped, or finds the block claimed and aborts itself.
    static func claimForRealloc(_ pointer: UnsafeMutableRawPointer, segment seg: UnsafeMutablePointer<Segment>) {
        if !SegmentMap.claim(seg.base) { OS.fatal("realloc(): pointer already freed", pointer: pointer) }
        if pointer != seg.base + seg.pointee.hugeOffset {
            SegmentMap.insert(seg.base, SegmentMap.huge)
            BlockQuery.realloc.invalid(pointer)
        }
    }

    /// Unmaps or caches the huge block of `seg`, whose mapping the caller claimed
    /// (`SegmentMap.claim`) and checked.
    static func freeClaimed(_ seg: UnsafeMutablePointer<Segment>, heap: Heap) {
        countFree(usable: usableSize(seg), mapped: seg.pointee.mappedSize, heap: heap)
        if !putCached(seg) { OSMemory.unmap(seg.base, seg.pointee.mappedSize) }
    }

    // MARK: - The huge cache

    /// Bounds of the huge cache's bytes, and most mappings it holds.
    static let cacheMinBytes = 64 << 20
    static let cacheMaxBytes = 1 << 30
    static let cacheLimitCount = 64

    /// Most bytes of mappings the huge cache holds now: the fall of live huge memory
    /// from its peak, so that live and cached huge mappings together never exceed the most
    /// live huge blocks ever mapped, or that plus half of it or 64 MiB, whichever is more
    /// (what the cache may add to peak RSS), and at most 1 GiB. While no purger runs, at
    /// most 16 MiB (`cacheUnattendedBytes`): nothing would unmap the cache of a thread that
    /// frees and then sleeps.
    ///
    /// Why half the peak: a program that replaces big buffers by others of random sizes
    /// (mimalloc-bench's malloc-large: 20 live blocks of 5 … 25 MiB, about 440 MiB at
    /// the peak) finds the fall from the peak small, and with 64 MiB cached the mapping
    /// that fits was often gone: 367,000 page faults, where half the peak takes 147,000
    /// (tcmalloc 185,000), system time 0.68 → 0.27 s, peak RSS 460 → 511 MB (tcmalloc
    /// 575). A quarter of the peak kept 351,000.
    ///
    /// Why the peak and not the live bytes (the bound until 06caeb6): a program that frees
    /// one big buffer and allocates another (`large --full`: 4 live blocks of up to 64
    /// MiB) has little live memory at the moment it frees, so the cache evicted or refused
    /// the very mappings the next allocation needed, and 16.6 GB of 17.9 GB written were
    /// fresh pages the kernel had to clear.
    static func cacheLimitBytes() -> Int {
        let live = Int(Counters.shared.pointee.hugeBytes.load(ordering: .relaxed))
        let peak = Int(Counters.shared.pointee.hugePeak.load(ordering: .relaxed))
        let limit = min(cacheMaxBytes, max(max(cacheMinBytes, peak / 2), peak &- live))
        return Purger.isRunning ? limit : min(limit, cacheUnattendedBytes)
    }

    /// The huge cache's bound while no purger runs: the fall of memory in use that purges
    /// at once then (`Heap.dropPurgeSlices`).
    static let cacheUnattendedBytes = Heap.dropPurgeSlices << Geometry.sliceShift

    /// Puts a freed huge block's mapping (already out of the segment map, so a second
    /// free of it reports an invalid pointer as an unmapped one would) at the head of the
    /// cache, evicting the oldest mappings to stay within the limits; false when it is
    /// not cached (caching is off, or it alone exceeds the limit): the caller unmaps it.
    private static func putCached(_ seg: UnsafeMutablePointer<Segment>) -> Bool {
        let size = seg.pointee.mappedSize
        if Options.current.pointee.purgeDelayMs == 0 || size > cacheLimitBytes() { return false }
        // The mapping is handed out again with its bytes as they are, so its block's first
        // two words are cleared, as every free overwrites a small or large block's second
        // word: a VOS header left there would make free() of the next block's start + 16
        // pass for a VOS block's free (`Extensions.releaseClaimedHuge`) instead of aborting.
        (seg.base + seg.pointee.hugeOffset).initializeMemory(as: UInt.self, repeating: 0, count: 2)
        seg.page(at: 0).pointee.freedAt = OS.nowNanoseconds()
        insertCached(seg)
        Purger.announce()
        return true
    }

    /// Puts a mapping at the head of the cache, evicting (unmapping) the oldest ones
    /// beyond the limits.
    private static func insertCached(_ freed: UnsafeMutablePointer<Segment>) {
        Globals.hugeCacheLock.lock()
        let seg = coalesce(freed)
        let size = seg.pointee.mappedSize
        if size > cacheLimitBytes() {
            // Joined, it alone is more than the cache may hold: unmapped, not kept.
            Globals.hugeCacheLock.unlock()
            OSMemory.unmap(seg.base, size)
            return
        }
        let evicted = takeOldest(adding: size)
        seg.pointee.prev = nil
        seg.pointee.next = Globals.hugeCacheHead.pointee
        seg.pointee.next?.pointee.prev = seg
        Globals.hugeCacheHead.pointee = seg
        Globals.hugeCacheBytes.pointee += size
        Globals.hugeCacheCount.pointee += 1
        Counters.shared.pointee.hugeCached.wrappingAdd(UInt(size), ordering: .relaxed)
        Globals.hugeCacheLock.unlock()
        unmapList(evicted)
    }

    /// Under `hugeCacheLock`: joins `seg` (not in the cache) with the cached mappings cut
    /// from the same mapping that lie right before or after it, and returns the mapping
    /// they make (not in the cache). Its freed time is the oldest of its parts': with the
    /// newest, a small block cut from a big cached mapping and freed again and again kept
    /// the big one young, resident for good (an outside review: 512 MiB for as long as
    /// the program cycled 3 MiB buffers).
    ///
    /// A big cached mapping cut for a small block, and that block freed, make the big
    /// mapping again: without the join the pieces aged out and a big request grew the
    /// largest, faulting the rest in fresh (`large --full`: 0.62 s, now 0.15–0.18). Pieces of one mapping stay one kernel mapping (they were never
    /// moved apart), so it can move whole later (`mremap`); a mapping that moved gets a
    /// new origin (`newOrigin`), so it never joins pieces left where it was.
    private static func coalesce(_ seg: UnsafeMutablePointer<Segment>) -> UnsafeMutablePointer<Segment> {
        var joined = seg
        var freedAt = seg.page(at: 0).pointee.freedAt
        var cursor = Globals.hugeCacheHead.pointee
        while let other = cursor {
            cursor = other.pointee.next
            if other.pointee.origin != joined.pointee.origin || other.pointee.hugeOffset != joined.pointee.hugeOffset {
                continue
            }
            if other.base == joined.base + joined.pointee.mappedSize {
                unlinkCached(other)
                joined.pointee.mappedSize += other.pointee.mappedSize
            } else if other.base + other.pointee.mappedSize == joined.base {
                unlinkCached(other)
                other.pointee.mappedSize += joined.pointee.mappedSize
                joined = other
            } else {
                continue
            }
            joined.pointee.hugeAdvice = 0   // its parts may carry different advice
            freedAt = min(freedAt, other.page(at: 0).pointee.freedAt)
            cursor = Globals.hugeCacheHead.pointee   // the joined mapping may meet another
        }
        joined.page(at: 0).pointee.freedAt = freedAt
        return joined
    }

    /// A new origin for a huge mapping (never 0, so a zeroed header matches none).
    private static func newOrigin() -> UInt32 {
        UInt32(truncatingIfNeeded: Globals.hugeOrigins.add(1) &+ 1) | 1 << 31
    }

    /// Under `hugeCacheLock`: takes the oldest mappings out of the cache while it would
    /// hold more than `cacheLimitBytes()` with `size` bytes more (with the over-aligned
    /// cache's bytes), or, when a mapping is to be added (`size` > 0), `cacheLimitCount`
    /// mappings; returns them, linked through `next`, for the caller to unmap after the
    /// lock.
    private static func takeOldest(adding size: Int) -> UnsafeMutablePointer<Segment>? {
        var evicted: UnsafeMutablePointer<Segment>? = nil
        // The over-aligned cache's bytes: `hugeCached` counts both caches.
        let cached = Int(Counters.shared.pointee.hugeCached.load(ordering: .relaxed))
        let limit = cacheLimitBytes() - max(0, cached - Globals.hugeCacheBytes.pointee)
        while Globals.hugeCacheHead.pointee != nil
            && (Globals.hugeCacheBytes.pointee + size > limit || (size > 0 && Globals.hugeCacheCount.pointee >= cacheLimitCount)) {
            // The oldest mapping is the last one: walk to it (the list is short).
            var last = Globals.hugeCacheHead.pointee.unsafelyUnwrapped
            while let next = last.pointee.next { last = next }
            unlinkCached(last)
            last.pointee.next = evicted
            evicted = last
        }
        return evicted
    }

    /// Evicts the oldest cached mappings while the cache holds more than its bound, after
    /// live huge memory grew: the bound (the fall from the peak) is applied at each free,
    /// but a fresh mapping, a realloc's growth or a block of another layout raises live
    /// memory without touching the cache, and live and cached together stayed above the
    /// peak until the purge delay (an outside review: 320 MiB resident for a live peak of
    /// 160 MiB, 20 MiB blocks freed, then as many 1 MiB-aligned). One load when the cache
    /// holds no more than its least bound.
    private static func trimCache() {
        if Globals.hugeCacheBytes.pointee <= cacheMinBytes { return }
        Globals.hugeCacheLock.lock()
        let evicted = takeOldest(adding: 0)
        Globals.hugeCacheLock.unlock()
        unmapList(evicted)
    }

    /// Takes `seg` out of the cache (under `hugeCacheLock`).
    private static func unlinkCached(_ seg: UnsafeMutablePointer<Segment>) {
        if let prev = seg.pointee.prev { prev.pointee.next = seg.pointee.next }
        else { Globals.hugeCacheHead.pointee = seg.pointee.next }
        seg.pointee.next?.pointee.prev = seg.pointee.prev
        seg.pointee.next = nil
        seg.pointee.prev = nil
        Globals.hugeCacheBytes.pointee -= seg.pointee.mappedSize
        Globals.hugeCacheCount.pointee -= 1
        Counters.shared.pointee.hugeCached.wrappingSubtract(UInt(seg.pointee.mappedSize), ordering: .relaxed)
    }

    /// Unmaps every mapping of a list linked through `next`.
    private static func unmapList(_ list: UnsafeMutablePointer<Segment>?) {
        var cursor = list
        while let seg = cursor {
            cursor = seg.pointee.next
            OSMemory.unmap(seg.base, seg.pointee.mappedSize)
        }
    }

    /// A cached mapping with the block at `offset`, of at least `total` bytes: the
    /// smallest that is large enough; or else the largest, grown by moving its pages to a
    /// new mapping (`mremap`: only the growth faults). Nil when nothing of that layout is
    /// cached. `kept`: the bytes from its start, up to `total`, that held the cached
    /// mapping's data (the rest is fresh zero pages).
    ///
    /// The smallest fit is cut at the next segment boundary (a rest of a segment or more
    /// stays cached as a mapping of its own, its header written where its block would
    /// start). What the block then holds past the request stays in it, resident, when it
    /// is no more than the request and the block is malloc's (its pages go back to the
    /// cache with it, and a program that frees and allocates big buffers does not fault
    /// them in again); more is given back — purged up to the cut, or, when no rest was
    /// cut off, unmapped — and so is all of it for calloc, so that the whole usable size
    /// reads zero while only the request's pages are cleared. So a huge block holds at
    /// most twice its request resident. Under an address-space limit
    /// (`OS.addressSpaceLimited`) what the block holds past the request is always
    /// unmapped. (A rest left in the block whatever its size made
    /// long-lived blocks cut from bigger cached ones hold 3.8× their request: an outside
    /// review had 60 blocks of 2.2 MB resident at 474 MB, for good. Giving back every
    /// rest, or every rest above a quarter of the request, took the `large` benchmark
    /// from 53,600 to 78,300 or 74,000 page faults; this bound leaves it at 53,600.)
    ///
    /// Why not gather several cached mappings into one (`mremap` of each into a new
    /// mapping; tried in 8b9278a): each moved part stays a kernel mapping of its own
    /// (they cannot merge), gathered blocks were gathered again, and an outside review
    /// drove a process to `vm.max_map_count` (65,530) with 200 live blocks.
    private static func takeCached(total: Int, offset: Int, zeroed: Bool) -> (UnsafeMutablePointer<Segment>, kept: Int)? {
        if Globals.hugeCacheHead.pointee == nil { return nil }
        Globals.hugeCacheLock.lock()
        var fit: UnsafeMutablePointer<Segment>? = nil
        var largest: UnsafeMutablePointer<Segment>? = nil
        var cursor = Globals.hugeCacheHead.pointee
        while let seg = cursor {
            cursor = seg.pointee.next
            if seg.pointee.hugeOffset != offset { continue }
            let size = seg.pointee.mappedSize
            if size >= total && (fit == nil || size < fit.unsafelyUnwrapped.pointee.mappedSize) { fit = seg }
            if largest == nil || size > largest.unsafelyUnwrapped.pointee.mappedSize { largest = seg }
        }
        let taken = fit ?? largest
        if let seg = taken { unlinkCached(seg) }
        Globals.hugeCacheLock.unlock()
        guard let seg = taken else { return nil }
        let size = seg.pointee.mappedSize
        let cut = (total + Geometry.segmentSize - 1) & ~(Geometry.segmentSize - 1)
        // What may stay resident past the request: as much as the request for malloc,
        // nothing for calloc (the whole usable size must read zero).
        let slack = zeroed ? 0 : total
        // Under an address-space limit the block keeps no address space past its request:
        // kept, 3 MiB blocks cut from cached 9 MiB mappings held 4 or 5 MiB each, and a
        // third fewer fit under the limit than in a fresh process (review R75).
        let limited = size > total && OS.addressSpaceLimited
        if size >= cut + Geometry.segmentSize {
            let rest = (seg.base + cut).assumingMemoryBound(to: Segment.self)
            // Its header lies in what was block data: zeroed, so that its page
            // descriptors carry no owner tag (free's fast path reads one of them).
            rest.base.initializeMemory(as: UInt8.self, repeating: 0, count: Segment.headerBytes)
            format(rest, mappedSize: size - cut, offset: offset, origin: seg.pointee.origin)
            rest.page(at: 0).pointee.freedAt = seg.page(at: 0).pointee.freedAt
            seg.pointee.mappedSize = cut
            insertCached(rest)
            releaseEnd(seg, from: total, to: cut, unmap: limited, slack: slack)
        } else if size - total > slack || limited {
            releaseEnd(seg, from: total, to: size, unmap: true, slack: slack)
        } else if size < total {
            joinAdvice(seg)
            if growInPlace(seg, to: total) { return (seg, size) }
            guard let moved = OSMemory.growAligned(seg.base, size, to: total, alignment: Geometry.segmentSize,
                                                   head: offset, headBytes: Segment.headerBytes) else {
                OSMemory.unmap(seg.base, size)
                return nil
            }
            let grown = moved.assumingMemoryBound(to: Segment.self)
            grown.pointee.mappedSize = total
            grown.pointee.origin = newOrigin()
            return (grown, size)
        }
        return (seg, min(seg.pointee.mappedSize, total))
    }

    /// What a block taken from the cache holds from `total` (its request) to `end`: with
    /// `unmap`, unmapped, and the mapping ends at `total`; where that is not asked for or
    /// the kernel refuses (`OSMemory.unmapEnd`), it stays in the block, purged when it is
    /// more than `slack`.
    private static func releaseEnd(_ seg: UnsafeMutablePointer<Segment>, from total: Int, to end: Int, unmap: Bool,
                                   slack: Int) {
        if end <= total { return }
        if unmap && OSMemory.unmapEnd(seg.base + total, end - total) {
            seg.pointee.mappedSize = total
        } else if end - total > slack {
            OSMemory.zero(seg.base + total, end - total)
        }
    }

    /// Writes the header of a huge mapping of `mappedSize` bytes with its block at `offset`,
    /// cut from the mapping `origin` (`coalesce`).
    private static func format(_ seg: UnsafeMutablePointer<Segment>, mappedSize: Int, offset: Int, origin: UInt32) {
        seg.pointee.kind = .huge
        seg.pointee.mappedSize = mappedSize
        seg.pointee.hugeOffset = offset
        seg.pointee.origin = origin
        seg.pointee.hugeAdvice = 0
        let page = seg.page(at: 0)
        page.pointee.kind = .huge
        page.pointee.blockSize = 0
    }

    /// Unmaps cached mappings freed at least `delay` before `now`; returns when the oldest
    /// one left was freed (`UInt64.max`: none). The unmapping happens after the lock.
    /// The over-aligned cache is purged the same way (`purgeOverAligned`).
    @discardableResult
    static func purgeCache(now: UInt64, delay: UInt64) -> UInt64 {
        let oldestOverAligned = purgeOverAligned(now: now, delay: delay)
        if Globals.hugeCacheHead.pointee == nil { return oldestOverAligned }
        var expired: UnsafeMutablePointer<Segment>? = nil
        var oldest = UInt64.max
        Globals.hugeCacheLock.lock()
        var cursor = Globals.hugeCacheHead.pointee
        while let seg = cursor {
            cursor = seg.pointee.next
            let freedAt = seg.page(at: 0).pointee.freedAt
            if hasExpired(freedAt: freedAt, now: now, delay: delay) {
                unlinkCached(seg)
                seg.pointee.next = expired
                expired = seg
            } else if freedAt < oldest {
                oldest = freedAt
            }
        }
        Globals.hugeCacheLock.unlock()
        unmapList(expired)
        return min(oldest, oldestOverAligned)
    }
}
