// Memory layer: which 4 MiB-aligned addresses are swmalloc segments.

import CSwmShim

/// One byte per 4 MiB of the user address space, non-zero while a segment starts there.
///
/// `free` consults it before touching any metadata, so a pointer swmalloc never returned
/// is reported instead of dereferenced. Invariant: map[s] ≠ 0 ⇔ a live segment header
/// is mapped at address s · 4 MiB. Each byte is written only by the thread that maps or
/// unmaps that segment (plain byte stores: no neighbour shares a word to update).
enum SegmentMap {
    @inline(__always) private static var bytes: UnsafeMutablePointer<UInt8> { swmshim_segment_map_base() }
    /// Bytes in the map: one per 4 MiB below 2^`Geometry.addressBits`.
    static let count = UInt(SWM_SEGMENT_MAP_BYTES)

    /// Segments start below `limit` entries: the map's last entry, the 4 MiB just below
    /// 2^47 (where the stack lives, never a mapping of ours), is left out, so that the
    /// range test in `contains` compares with a constant that is not a power of two
    /// (against 2^25 the compiler tests the pointer's top bits instead, and then shifts it
    /// a second time for the index). `OSMemory.mapAligned` refuses a segment there.
    static let limit = count - 1

    /// True when `p` lies in a segment swmalloc mapped. Cost: a shift, a compare (the
    /// address range) and a byte test.
    @inline(__always)
    static func contains(_ p: UInt) -> Bool {
        let index = p >> UInt(Geometry.segmentShift)
        return index < limit && bytes[Int(index)] != 0
    }

    /// True when a segment may start at `base` (see `limit`).
    static func covers(_ base: UnsafeMutableRawPointer) -> Bool {
        UInt(bitPattern: base) >> UInt(Geometry.segmentShift) < limit
    }

    /// Marks the segment at `base` live.
    static func insert(_ base: UnsafeMutableRawPointer) {
        bytes[Int(UInt(bitPattern: base) >> UInt(Geometry.segmentShift))] = 1
    }

    /// Marks the segment at `base` gone.
    static func remove(_ base: UnsafeMutableRawPointer) {
        bytes[Int(UInt(bitPattern: base) >> UInt(Geometry.segmentShift))] = 0
    }
}
