// Thread-heap layer: what a pointer is, for realloc and malloc_usable_size.

import Synchronization

/// The function that asks `Heap.usableSize` about a pointer, named in its abort messages.
enum BlockQuery {
    case realloc, usableSize

    /// The message for a block start whose freed mark is set.
    var freedMessage: StaticString {
        self == .realloc ? "realloc(): pointer already freed" : "malloc_usable_size(): pointer already freed"
    }

    /// The message for anything but the start of a live block.
    private var invalidMessage: StaticString {
        self == .realloc ? "realloc(): invalid pointer: not the start of a block allocated by swmalloc"
            : "malloc_usable_size(): invalid pointer: not the start of a block allocated by swmalloc"
    }

    /// Aborts naming `pointer`, which is not the start of a live block: a VOS block's
    /// pointer says so (it was allocated by swmalloc, so "not … allocated by swmalloc"
    /// misled: an outside review), anything else gets `invalidMessage`.
    func invalid(_ pointer: UnsafeMutableRawPointer) -> Never {
        if Extensions.isExtensionBlock(pointer) {
            OS.fatal(self == .realloc ? "realloc(): invalid pointer: a VOS block (from VOS_Malloc): use VOS_Realloc"
                                      : "malloc_usable_size(): invalid pointer: a VOS block (from VOS_Malloc)",
                     pointer: pointer)
        }
        OS.fatal(invalidMessage, pointer: pointer)
    }
}

extension Heap {
    /// Usable bytes of the live block at `pointer`, or an abort naming the pointer and
    /// `query`'s function when it is not the start of a live swmalloc block (a freed one
    /// included).
    @inline(__always)
    static func usableSize(_ pointer: UnsafeMutableRawPointer, for query: BlockQuery) -> Int {
        let p = UInt(bitPattern: pointer)
        if _slowPath(!SegmentMap.contains(p)) { return overAlignedSize(pointer, for: query) }
        let segment = UnsafeMutablePointer<Segment>.of(p)
        let page = segment.page(containing: p)
        if _fastPath(page.pointee.kind == .small || page.pointee.kind == .large) && page.isBlockStart(p) {
            if pointer.load(fromByteOffset: 8, as: UInt.self) == page.freedMark {
                OS.fatal(query.freedMessage, pointer: pointer)
            }
            return Int(page.pointee.blockSize)
        }
        if segment.pointee.kind == .huge && pointer == segment.base + segment.pointee.hugeOffset {
            return Huge.usableSize(segment)
        }
        query.invalid(pointer)
    }

    /// Usable bytes of an over-aligned huge block, or an abort when `pointer` is none.
    @inline(never)
    private static func overAlignedSize(_ pointer: UnsafeMutableRawPointer, for query: BlockQuery) -> Int {
        if let usable = Huge.overAlignedUsableSize(pointer) { return usable }
        query.invalid(pointer)
    }

    /// realloc's core: in place when the new size fits the block and does not waste more
    /// than half of it, or when a huge block stays huge (the end of its mapping goes back,
    /// whatever the ratio: a 20 MiB block shrunk to 3 MiB was copied), or when a large
    /// block grows within its span; otherwise allocate, copy, free. On failure the block
    /// is untouched; a shrink never fails: without memory for the smaller block it keeps
    /// the block it has (as glibc does: `p = realloc(p, smaller)` is written as if it
    /// could not fail; an outside review found NULL with ENOMEM under `ulimit -v`).
    static func reallocate(_ pointer: UnsafeMutableRawPointer, _ size: Int) -> UnsafeMutableRawPointer? {
        // A huge block in the segment map is claimed before it is copied, below; read
        // before `usableSize`, so that a block another thread's free claimed meanwhile
        // is still taken for one (and its claim fails). By the segment, not the size: an
        // aligned block above 2 MiB may lie in a large page (review R17).
        let hugeInMap = SegmentMap.containsHuge(UInt(bitPattern: pointer))
        let old = usableSize(pointer, for: .realloc)
        if size < 0 { return outOfMemory() }   // a size_t above PTRDIFF_MAX
        if size <= old {
            let keep = size >= old / 2
            if old > Geometry.largeMax && (keep || size > Geometry.largeMax) {
                // Less than a slice to give back is left in place, without an munmap; a
                // mapping that cannot shrink is kept only within the half rule.
                if old - size < Geometry.sliceSize || shrinkHuge(pointer, to: size) || keep { return pointer }
            } else if keep {
                return pointer
            }
        }
        if old > Geometry.smallMax && size > old {
            // A thread whose first call this is gets its heap now, as `allocate` below
            // would give it one: the growth without a copy counts the growth in it.
            // Before, such a thread copied a huge block instead of growing it.
            if Heap.current.isEmpty && !Heap.current.isExited { _ = Heap.attach(registerExit: true) }
            if let grown = growWithoutCopy(pointer, to: size) {
                Purger.startIfMapped()
                return grown
            }
        }
        let saved = OS.errno()
        guard let fresh = allocate(size) else {
            if size > old { return nil }
            withdrawOutOfMemory(errno: saved)
            return pointer
        }
        if hugeInMap {
            // A huge block is claimed before it is copied: a free of it by another thread
            // (a program race) could otherwise unmap it under the copy, a SIGSEGV in
            // memcpy with no message (review R16; double_free_race.c `realloc`).
            let segment = UnsafeMutablePointer<Segment>.of(UInt(bitPattern: pointer))
            Huge.claimForRealloc(pointer, segment: segment)
            fresh.copyMemory(from: pointer, byteCount: size < old ? size : old)
            Huge.freeClaimed(segment, heap: Heap.current)
            return fresh
        }
        if !SegmentMap.contains(UInt(bitPattern: pointer)) {
            // An over-aligned block, claimed before the copy for the same reason (R50).
            let header = Huge.claimOverAligned(pointer)
            fresh.copyMemory(from: pointer, byteCount: size < old ? size : old)
            Huge.freeClaimedOverAligned(header)
            return fresh
        }
        fresh.copyMemory(from: pointer, byteCount: size < old ? size : old)
        deallocate(pointer)
        return fresh
    }

    /// The block at `pointer` (live, larger than a small block: checked by `usableSize`)
    /// grown to `size` bytes, more than it holds, without copying it: a large block in
    /// place (`growLarge`), a huge one by moving its pages (`Huge.grow`,
    /// `Huge.growOverAligned`); nil when that cannot be done (the caller copies).
    private static func growWithoutCopy(_ pointer: UnsafeMutableRawPointer, to size: Int) -> UnsafeMutableRawPointer? {
        let p = UInt(bitPattern: pointer)
        if !SegmentMap.contains(p) { return Huge.growOverAligned(pointer, to: size) }
        let segment = UnsafeMutablePointer<Segment>.of(p)
        if segment.pointee.kind == .huge { return Huge.grow(pointer, segment: segment, to: size) }
        return growLarge(pointer, segment: segment, to: size) ? pointer : nil
    }

    /// Gives back the end of the huge block at `pointer` (live, checked by `usableSize`)
    /// past `size` bytes (`Huge.shrink`, `Huge.shrinkOverAligned`); false when its
    /// mapping keeps more than `size` needs (a thread that has no heap to count the cut in).
    private static func shrinkHuge(_ pointer: UnsafeMutableRawPointer, to size: Int) -> Bool {
        let p = UInt(bitPattern: pointer)
        if !SegmentMap.contains(p) { return Huge.shrinkOverAligned(pointer, to: size) }
        let segment = UnsafeMutablePointer<Segment>.of(p)
        return segment.pointee.kind == .huge && Huge.shrink(pointer, segment: segment, to: size)
    }

    /// Grows the large block at `pointer` (live, checked by `usableSize`) to `size` bytes
    /// (at most `Geometry.largeMax`) in place, as jemalloc does: a large page's block is
    /// the request in OS pages and its span is whole 64 KiB slices, so a block that grows
    /// by less than the rest of its last slice needs no copy; when the calling thread owns
    /// the page, its span may also take the free slices right after it. False above
    /// `Geometry.largeMax` (the block must become huge), or when there is no room. The
    /// calling thread's heap counts the growth (the freeing heap subtracts the block's
    /// size as it is then).
    ///
    /// Safe from any thread: the block is the caller's, and no other thread reads a large
    /// page's block size or span while the block is live (large pages are never batched;
    /// the purger retires a large page only once its block was freed, and reads free
    /// spans, under the owner's span lock, which `extendSpan` takes).
    private static func growLarge(_ pointer: UnsafeMutableRawPointer, segment: UnsafeMutablePointer<Segment>, to size: Int) -> Bool {
        let heap = Heap.current
        if heap.isEmpty || size > Geometry.largeMax { return false }
        let page = segment.page(containing: UInt(bitPattern: pointer))
        if page.pointee.kind != .large { return false }
        let slices = Geometry.slices(for: size)
        if slices > page.pointee.sliceCount {
            if page.pointee.ownerTag.load(ordering: .relaxed) != heap.tag | 1
                || !heap.extendSpan(page, by: slices - page.pointee.sliceCount) { return false }
        }
        let usable = OS.wholePages(size)
        heap.state.pointee.bigAllocated &+= UInt(usable) &- UInt(page.pointee.blockSize)
        page.resizeLarge(usable)
        return true
    }
}
