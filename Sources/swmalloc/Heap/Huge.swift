// Thread-heap layer: huge blocks, each in a mapping of its own.

import Synchronization

/// Blocks above `Geometry.largeMax` (and blocks aligned above 64 KiB): mapped directly,
/// 4 MiB-aligned so the segment map finds them, with a header in the first slice and the
/// block at `hugeOffset`: 64 KiB, the alignment, or 2 MiB when the block is to be backed
/// by transparent huge pages (`thp=large`). Freed blocks are unmapped at once: their
/// memory goes straight back to the OS.
enum Huge {
    /// A huge block of at least `size` bytes, aligned to `alignment` when it is above
    /// 64 KiB; nil with ENOMEM when the OS refuses.
    static func allocate(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if size < 0 || size > Int.max / 2 { return Heap.outOfMemory() }
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
        if wantsTHP { OS.adviseHugePages(block, total - offset, enable: true) }
        else if policy == .never { OS.adviseHugePages(block, total - offset, enable: false) }
        SegmentMap.insert(base)
        Counters.shared.pointee.hugeBytes.wrappingAdd(UInt(total), ordering: .relaxed)
        Counters.shared.pointee.hugeBlocks.wrappingAdd(1, ordering: .relaxed)
        let heap = Heap.current
        if !heap.isEmpty {
            heap.state.pointee.bigAllocated &+= UInt(total - offset)
            heap.state.pointee.bigAllocs &+= 1
        } else {
            Stats.countOrphanHuge(allocated: UInt(total - offset))
        }
        return block
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
        let usable = UInt(usableSize(seg))
        if !heap.isEmpty {
            heap.state.pointee.bigFreed &+= usable
            heap.state.pointee.bigFrees &+= 1
        } else {
            Stats.countOrphanFree(kind: .huge, classIndex: 0, size: usable)
        }
        Counters.shared.pointee.hugeBytes.wrappingSubtract(UInt(seg.pointee.mappedSize), ordering: .relaxed)
        Counters.shared.pointee.hugeBlocks.wrappingSubtract(1, ordering: .relaxed)
        seg.release()
    }
}
