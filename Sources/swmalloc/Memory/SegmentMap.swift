// Memory layer: which 4 MiB-aligned addresses are swmalloc segments.

import CSwmShim

/// One bit per 4 MiB of the user address space, set while a segment starts there.
///
/// `free` consults it before touching any metadata, so a pointer swmalloc never returned
/// is reported instead of dereferenced. Invariant: bit(s) == 1 ⇔ a live segment header
/// is mapped at address s · 4 MiB.
enum SegmentMap {
    @inline(__always) private static var words: UnsafeMutablePointer<UInt64> { swmshim_segment_map_base() }
    private static let wordMask = UInt(SWM_SEGMENT_MAP_WORDS - 1)

    /// True when `p` lies in a segment swmalloc mapped. Cost: one shift, one load, one test.
    @inline(__always)
    static func contains(_ p: UInt) -> Bool {
        let index = p >> UInt(Geometry.segmentShift)
        let word = words[Int((index >> 6) & wordMask)]
        return (p >> UInt(Geometry.addressBits)) == 0 && (word >> (index & 63)) & 1 != 0
    }

    /// Marks the segment at `base` live.
    static func insert(_ base: UnsafeMutableRawPointer) {
        let index = UInt(bitPattern: base) >> UInt(Geometry.segmentShift)
        AtomicWord(UnsafeMutableRawPointer(words + Int(index >> 6))).or(1 << (index & 63))
    }

    /// Marks the segment at `base` gone.
    static func remove(_ base: UnsafeMutableRawPointer) {
        let index = UInt(bitPattern: base) >> UInt(Geometry.segmentShift)
        AtomicWord(UnsafeMutableRawPointer(words + Int(index >> 6))).and(~(1 << (index & 63)))
    }
}
