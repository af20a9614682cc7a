// Memory layer: which 4 MiB-aligned addresses are swmalloc segments.

import CSwmShim
import Synchronization

/// One byte per 4 MiB of the user address space, non-zero while a segment starts there:
/// `pages` (1) for a segment of pages, `huge` (2) for a huge block's mapping.
///
/// `free` consults it before touching any metadata, so a pointer swmalloc never returned
/// is reported instead of dereferenced; free's fast path takes only segments of pages, so
/// it never reads a huge mapping's header, which another thread's free may unmap. Invariant:
/// map[s] ≠ 0 ⇔ a live segment header is mapped at address s · 4 MiB, of the kind the
/// byte says. Each byte is set only by the thread that maps that segment and cleared by the
/// one that unmaps it (byte stores: no neighbour shares a word to update); a huge block's
/// byte is cleared by `claim`, an atomic exchange, before its header is read, since two
/// threads freeing that block at once would otherwise both unmap or cache it, or read it
/// after the other unmapped it.
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

    /// Byte values: a segment of pages, a huge block's mapping.
    static let pages: UInt8 = 1
    static let huge: UInt8 = 2

    /// The byte of the segment that would hold `p` (0, `pages` or `huge`); 0 when `p` is
    /// past the map. free's slow path reads it once and goes by what it read: read twice,
    /// a huge block claimed by another thread in between passed for a segment of pages.
    @inline(__always)
    static func byte(_ p: UInt) -> UInt8 {
        inRange(p) ? bytes[Int(p >> UInt(Geometry.segmentShift))] : 0
    }

    /// True when `p` lies in a segment swmalloc mapped. Cost: a shift, a compare (the
    /// address range) and a byte test.
    @inline(__always)
    static func contains(_ p: UInt) -> Bool { byte(p) != 0 }

    /// The segment of pages that the map's entry for `p` names, nil when that entry names
    /// none (free's fast path). The entry's index is `p`'s segment number masked to the
    /// map, with no range compare (a mask, and then a shift back for the base, where the
    /// range-tested form spends a compare, a branch, a move and a mask): for `p` at or
    /// above 2^`Geometry.addressBits` it is the entry of another address, and the segment
    /// returned does not hold `p`. A caller may then read that segment's descriptors (it
    /// is mapped), but must not read at `p` before a test that `p` lies in it: free's
    /// block-start test fails for such a `p`, since p − start ≥ 2^47 − 4 MiB is never a
    /// block's offset.
    @inline(__always)
    static func pagesSegment(maskedFrom p: UInt) -> UnsafeMutablePointer<Segment>? {
        let index = (p >> UInt(Geometry.segmentShift)) & (count &- 1)
        guard bytes[Int(index)] == pages else { return nil }
        // Entry 0 (the first 4 MiB, never mapped) is never `pages`: the base is not nil.
        return swmshim_address(index << UInt(Geometry.segmentShift)).assumingMemoryBound(to: Segment.self)
    }

    /// True when `p` lies in the first 4 MiB of a huge block's mapping.
    @inline(__always)
    static func containsHuge(_ p: UInt) -> Bool { byte(p) == huge }

    /// True when a segment may start at `base` (see `limit`).
    static func covers(_ base: UnsafeMutableRawPointer) -> Bool { inRange(UInt(bitPattern: base)) }

    /// True when `p` lies below the map's `limit`: the range test of `byte`, for a caller
    /// of `pagesSegment(maskedFrom:)` that reads at `p` itself.
    @inline(__always)
    static func inRange(_ p: UInt) -> Bool { p >> UInt(Geometry.segmentShift) < limit }

    /// Marks the segment at `base` live, of kind `kind` (`pages` or `huge`).
    static func insert(_ base: UnsafeMutableRawPointer, _ kind: UInt8) {
        bytes[Int(UInt(bitPattern: base) >> UInt(Geometry.segmentShift))] = kind
    }

    /// Marks the huge segment at `base` gone, atomically: true when this call cleared its
    /// byte, false when it was not a huge one's any more (another thread freed or moved the block
    /// first: the caller reports a double free). Of two threads freeing one huge block at
    /// once, exactly one goes on to read its header and unmap or cache it.
    static func claim(_ base: UnsafeMutableRawPointer) -> Bool {
        let cell = UnsafeMutableRawPointer(bytes + Int(UInt(bitPattern: base) >> UInt(Geometry.segmentShift)))
            .assumingMemoryBound(to: Atomic<UInt8>.self)
        // Only a huge byte is taken: if the winner's unmap and a new segment of pages at
        // the same address came between the loser's read and this, the loser must not
        // take that segment's byte for its block's.
        return cell.pointee.compareExchange(expected: huge, desired: 0, ordering: .acquiringAndReleasing).exchanged
    }

    /// Marks the segment at `base` gone.
    static func remove(_ base: UnsafeMutableRawPointer) {
        bytes[Int(UInt(bitPattern: base) >> UInt(Geometry.segmentShift))] = 0
    }
}
