// Thread-heap layer: huge blocks, each in a mapping of its own.

import Synchronization

/// Blocks above `Geometry.largeMax`, and aligned blocks that do not fit a segment: each
/// in a mapping of its own. Freed blocks are unmapped at once: their memory goes straight
/// back to the OS.
///
/// - Alignment up to 2 MiB: the mapping is 4 MiB-aligned, so the segment map finds it, with
///   a header in the first slice and the block at `hugeOffset`: 64 KiB, the alignment, or
///   2 MiB when the block is to be backed by transparent huge pages (`thp=large`).
/// - Alignment above 2 MiB (*over-aligned*): the block itself starts on a 4 MiB boundary,
///   where a segment header would be, so it is not in the segment map. Its header
///   (`OverAligned`) is the OS page just below it, and the headers are on one list under
///   a lock. `free` reaches that list only for pointers outside every segment that are
///   4 MiB-aligned, so it costs other frees nothing.
enum Huge {
    /// Largest alignment honoured (the user address space): larger fail with ENOMEM.
    static let maxAlignment = 1 << Geometry.addressBits

    /// A huge block of at least `size` bytes, aligned to `alignment` when it is above
    /// 64 KiB; nil with ENOMEM when the OS refuses.
    static func allocate(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if size < 0 || size > Int.max / 2 || alignment > maxAlignment { return Heap.outOfMemory() }
        if alignment > Geometry.largeMax { return allocateOverAligned(size, alignment: alignment) }
        let policy = Options.current.pointee.thp
        // With `thp=large` a block of 2 MiB or more starts on a 2 MiB boundary and spans
        // whole 2 MiB pages, so the kernel can back it with huge pages: one fault per 2 MiB
        // instead of 512. The extra is address space; untouched, it costs no memory.
        let hugePage = Geometry.largeMax
        let wantsTHP = policy == .large && size >= hugePage
        var offset = alignment > Geometry.sliceSize ? alignment : Geometry.sliceSize
        if wantsTHP && offset < hugePage { offset = hugePage }
        let granule = wantsTHP ? hugePage : OS.pageSize
        let total = offset + ((size + granule - 1) & ~(granule - 1))
        guard let base = OSMemory.mapAligned(total, alignment: Geometry.segmentSize) else {
            return Heap.outOfMemory()
        }
        let seg = base.assumingMemoryBound(to: Segment.self)
        seg.pointee.kind = .huge
        seg.pointee.mappedSize = total
        seg.pointee.hugeOffset = offset
        let page = seg.page(at: 0)
        page.pointee.kind = .huge
        page.pointee.blockSize = 0
        let block = base + offset
        adviseHugePages(block, total - offset)
        SegmentMap.insert(base)
        countAllocation(usable: total - offset, mapped: total)
        return block
    }

    /// Applies the `thp` policy to a huge block's memory.
    private static func adviseHugePages(_ block: UnsafeMutableRawPointer, _ usable: Int) {
        let policy = Options.current.pointee.thp
        if policy == .large && usable >= Geometry.largeMax { OS.adviseHugePages(block, usable, enable: true) }
        else if policy == .never { OS.adviseHugePages(block, usable, enable: false) }
    }

    /// Counts a huge block allocated: process counters, and the thread's (or the orphan
    /// counters when the thread has no heap).
    private static func countAllocation(usable: Int, mapped: Int) {
        Counters.shared.pointee.hugeBytes.wrappingAdd(UInt(mapped), ordering: .relaxed)
        Counters.shared.pointee.hugeBlocks.wrappingAdd(1, ordering: .relaxed)
        let heap = Heap.current
        if !heap.isEmpty {
            heap.state.pointee.bigAllocated &+= UInt(usable)
            heap.state.pointee.bigAllocs &+= 1
        } else {
            Stats.countOrphanHuge(allocated: UInt(usable))
        }
    }

    /// Counts a huge block freed.
    private static func countFree(usable: Int, mapped: Int, heap: Heap) {
        if !heap.isEmpty {
            heap.state.pointee.bigFreed &+= UInt(usable)
            heap.state.pointee.bigFrees &+= 1
        } else {
            Stats.countOrphanFree(kind: .huge, classIndex: 0, size: UInt(usable))
        }
        Counters.shared.pointee.hugeBytes.wrappingSubtract(UInt(mapped), ordering: .relaxed)
        Counters.shared.pointee.hugeBlocks.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Usable bytes of the huge block in `seg`.
    @inline(__always)
    static func usableSize(_ seg: UnsafeMutablePointer<Segment>) -> Int {
        seg.pointee.mappedSize - seg.pointee.hugeOffset
    }

    /// Unmaps a huge block after checking that `pointer` is its start.
    static func free(_ pointer: UnsafeMutableRawPointer, segment seg: UnsafeMutablePointer<Segment>, heap: Heap) {
        if pointer != seg.base + seg.pointee.hugeOffset {
            if Extensions.freeInterior(pointer) { return }
            OS.fatal("free(): invalid pointer: not the start of an allocated block", pointer: pointer)
        }
        countFree(usable: usableSize(seg), mapped: seg.pointee.mappedSize, heap: heap)
        seg.release()
    }

    // MARK: - Over-aligned blocks

    /// A block aligned above 2 MiB: `size` bytes at a multiple of `alignment`, in a
    /// mapping that starts one OS page below the block (the header) and ends with it.
    private static func allocateOverAligned(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        let page = OS.pageSize
        let usable = size == 0 ? page : (size + page - 1) & ~(page - 1)
        let span = page + alignment + usable
        guard let raw = OS.map(span) else { return Heap.outOfMemory() }
        let start = UInt(bitPattern: raw)
        let block = (start + UInt(page) + UInt(alignment - 1)) & ~UInt(alignment - 1)
        let head = block - UInt(page)
        if head > start { OS.unmap(raw, Int(head - start)) }
        let end = block + UInt(usable)
        if start + UInt(span) > end { OS.unmap(UnsafeMutableRawPointer(bitPattern: end).unsafelyUnwrapped, Int(start + UInt(span) - end)) }
        Counters.shared.pointee.mapped.wrappingAdd(UInt(page + usable), ordering: .relaxed)
        let header = UnsafeMutablePointer<OverAligned>(bitPattern: head).unsafelyUnwrapped
        header.pointee.usable = usable
        let blockPointer = UnsafeMutableRawPointer(bitPattern: block).unsafelyUnwrapped
        adviseHugePages(blockPointer, usable)
        Globals.overAlignedLock.lock()
        header.pointee.prev = nil
        header.pointee.next = Globals.overAlignedHead.pointee?.assumingMemoryBound(to: OverAligned.self)
        header.pointee.next?.pointee.prev = header
        Globals.overAlignedHead.pointee = UnsafeMutableRawPointer(header)
        Globals.overAlignedLock.unlock()
        countAllocation(usable: usable, mapped: page + usable)
        return blockPointer
    }

    /// The header of the live over-aligned block that starts at `p`, or nil. Takes the
    /// list's lock only for 4 MiB-aligned pointers.
    private static func findOverAligned(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<OverAligned>? {
        if UInt(bitPattern: p) & Geometry.segmentMask != 0 || Globals.overAlignedHead.pointee == nil { return nil }
        let header = p - OS.pageSize
        var cursor = Globals.overAlignedHead.pointee?.assumingMemoryBound(to: OverAligned.self)
        while let h = cursor {
            if UnsafeMutableRawPointer(h) == header { return h }
            cursor = h.pointee.next
        }
        return nil
    }

    /// Usable bytes of the live over-aligned block at `p`, or nil when there is none.
    static func overAlignedUsableSize(_ p: UnsafeMutableRawPointer) -> Int? {
        if UInt(bitPattern: p) & Geometry.segmentMask != 0 { return nil }
        Globals.overAlignedLock.lock()
        let usable = findOverAligned(p)?.pointee.usable
        Globals.overAlignedLock.unlock()
        return usable
    }

    /// Frees the over-aligned block at `p`; false when there is none (the caller reports
    /// the invalid free).
    static func freeOverAligned(_ p: UnsafeMutableRawPointer) -> Bool {
        if UInt(bitPattern: p) & Geometry.segmentMask != 0 { return false }
        Globals.overAlignedLock.lock()
        guard let h = findOverAligned(p) else {
            Globals.overAlignedLock.unlock()
            return false
        }
        if let prev = h.pointee.prev { prev.pointee.next = h.pointee.next }
        else { Globals.overAlignedHead.pointee = h.pointee.next.map { UnsafeMutableRawPointer($0) } }
        h.pointee.next?.pointee.prev = h.pointee.prev
        Globals.overAlignedLock.unlock()
        let mapped = OS.pageSize + h.pointee.usable
        countFree(usable: h.pointee.usable, mapped: mapped, heap: Heap.current)
        OSMemory.unmap(UnsafeMutableRawPointer(h), mapped)
        return true
    }
}

/// Header of an over-aligned huge block, in the OS page just below the block.
struct OverAligned {
    var usable: Int                                 // bytes of the block (whole OS pages)
    var next: UnsafeMutablePointer<OverAligned>?    // list of live over-aligned blocks
    var prev: UnsafeMutablePointer<OverAligned>?
}
