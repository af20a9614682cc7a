// Pages layer: size classes.

/// Small-object size classes: 16, 32, … 128 in steps of 16, then eight classes per
/// doubling (144, 160, … 256, 288, … 128 KiB), so neighbours above 128 bytes are at most
/// 12.5 % apart and internal waste is under 12.5 %. Every class is a multiple of 16, and
/// every power of two is a class, so a block of class size n is aligned to the largest
/// power of two dividing n (pages start 64 KiB-aligned): that is how small aligned
/// allocations need no extra work.
///
/// | classes | sizes            | step            | worst waste |
/// |---------|------------------|-----------------|-------------|
/// | 0–7     | 16 … 128         | 16              | 15 bytes    |
/// | 8–87    | 144 … 131072     | 2^(k−3) in (2^k, 2^(k+1)] | 12.5 % |
enum SizeClass {
    /// Number of small size classes (`SWM_CLASS_COUNT` in the shim).
    static let count = 88
    /// The direct slot past the last class: its page is always empty.
    static let overflowSlot = count

    /// Slot of the direct page table that serves `size` bytes: a class index for
    /// 1 … `Geometry.smallMax`, else `overflowSlot` (size 0 included: the slow path
    /// handles it). Cost: a compare, and for sizes above 128 one `lzcnt` and three shifts.
    @inline(__always)
    static func slot(_ size: Int) -> Int {
        let w = UInt(bitPattern: size &- 1)
        if w < 128 { return Int(w >> 4) }
        if w >= UInt(Geometry.smallMax) { return overflowSlot }
        let k = UInt(63 &- w.leadingZeroBitCount)
        return 8 &+ Int(k &- 7) &* 8 &+ Int((w >> (k &- 3)) & 7)
    }

    /// The class that serves `size` bytes (1 … `Geometry.smallMax`; size 0 maps to class 0).
    @inline(__always)
    static func of(_ size: Int) -> Int { size == 0 ? 0 : slot(size) }

    /// Block size of class `c`.
    @inline(__always)
    static func blockSize(_ c: Int) -> Int {
        if c < 8 { return (c + 1) << 4 }
        let k = 7 + (c - 8) >> 3
        let j = (c - 8) & 7
        return (1 << k) + (j + 1) << (k - 3)
    }

    /// Slices in a page of class `c`: one 64 KiB slice up to 8 KiB blocks, else enough
    /// for at least eight blocks (at most 16 slices for 128 KiB blocks).
    static func pageSlices(_ c: Int) -> Int {
        let size = blockSize(c)
        if size <= 8192 { return 1 }
        return (size * 8 + Geometry.sliceSize - 1) >> Geometry.sliceShift
    }
}
