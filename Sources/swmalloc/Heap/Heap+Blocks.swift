// Thread-heap layer: what a pointer is, for realloc and malloc_usable_size.

extension Heap {
    /// Usable bytes of the live block at `pointer`, or an abort naming the pointer when it
    /// is not the start of a live swmalloc block. `operation` names the caller in the message.
    @inline(__always)
    static func usableSize(_ pointer: UnsafeMutableRawPointer, checkFreed: Bool) -> Int {
        let p = UInt(bitPattern: pointer)
        if _slowPath(!SegmentMap.contains(p)) { return overAlignedSize(pointer) }
        let segment = UnsafeMutablePointer<Segment>.of(p)
        let page = segment.page(containing: p)
        if _fastPath(page.pointee.kind == .small || page.pointee.kind == .large) && page.isBlockStart(p) {
            if checkFreed && pointer.load(fromByteOffset: 8, as: UInt.self) == freedMark(p) {
                OS.fatal("realloc(): pointer already freed", pointer: pointer)
            }
            return Int(page.pointee.blockSize)
        }
        if segment.pointee.kind == .huge && pointer == segment.base + segment.pointee.hugeOffset {
            return Huge.usableSize(segment)
        }
        notABlock(pointer)
    }

    /// Usable bytes of an over-aligned huge block, or an abort when `pointer` is none.
    @inline(never)
    private static func overAlignedSize(_ pointer: UnsafeMutableRawPointer) -> Int {
        if let usable = Huge.overAlignedUsableSize(pointer) { return usable }
        notABlock(pointer)
    }

    @inline(never)
    private static func notABlock(_ pointer: UnsafeMutableRawPointer) -> Never {
        OS.fatal("invalid pointer: not the start of a block allocated by swmalloc", pointer: pointer)
    }

    /// realloc's core: in place when the new size fits the block and does not waste more
    /// than half of it; otherwise allocate, copy, free. On failure the block is untouched.
    static func reallocate(_ pointer: UnsafeMutableRawPointer, _ size: Int) -> UnsafeMutableRawPointer? {
        let old = usableSize(pointer, checkFreed: true)
        if size <= old && size >= old / 2 { return pointer }
        guard let fresh = allocate(size) else { return nil }
        fresh.copyMemory(from: pointer, byteCount: size < old ? size : old)
        deallocate(pointer)
        return fresh
    }
}
