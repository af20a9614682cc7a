// Pages layer: size classes.

import CSwmShim

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

    /// Slots of a heap's direct page table (`SWM_DIRECT_SLOTS` in the shim): malloc's fast
    /// path indexes it with `slot(size)` and finds the page to allocate from.
    ///
    /// | slots    | serve                                   | index              |
    /// |----------|-----------------------------------------|--------------------|
    /// | 0–64     | sizes 0 … 1024 (classes 0–31)           | (size + 15) / 16   |
    /// | 65–120   | sizes 1025 … 128 KiB (classes 32–87)    | class + 33         |
    /// | 121      | nothing: above 128 KiB (its page is empty) |                 |
    ///
    /// Up to 1 KiB the index needs no class computation; the slots of one class (1 up to
    /// 256 bytes, 2 up to 512, 4 up to 1 KiB; size 0 shares class 0's) all hold its page.
    static let directSlots = 122
    /// The direct slot past the small sizes: its page is always empty.
    static let overflowSlot = directSlots - 1
    /// Sizes up to this one are indexed by size.
    static let sizeIndexedMax = 1024

    /// The direct slot that serves `size` bytes (a `size_t` above `PTRDIFF_MAX` arrives
    /// negative and gets `overflowSlot`). Cost up to 1 KiB: a compare, an add and a shift;
    /// above, a shift, a compare and a byte load from the slot table (class boundaries
    /// above 1 KiB are multiples of 128, so every row of 128 sizes has one slot).
    @inline(__always)
    static func slot(_ size: Int) -> Int {
        if _fastPath(UInt(bitPattern: size) <= UInt(sizeIndexedMax)) { return (size &+ 15) &>> 4 }
        let row = UInt(bitPattern: size &- 1) &>> 7
        if row >= UInt(SWM_SLOT_TABLE_ROWS) { return overflowSlot }
        return Int(swmshim_slot_table_base()[Int(row)])
    }

    /// Fills the slot table `slot` reads above 1 KiB (once, before the first heap exists).
    /// Debug builds also check that every size's slot is one of its class's
    /// (`slots(ofClass:)`, the slots the slow paths write); a release process does not
    /// pay for that check at every start.
    static func fillSlotTable() {
        for row in (sizeIndexedMax >> 7)..<Int(SWM_SLOT_TABLE_ROWS) {
            swmshim_slot_table_base()[row] = UInt8(of(row << 7 + 128) + 33)
        }
        #if DEBUG
        for size in 0...Geometry.smallMax where !slots(ofClass: of(size)).contains(slot(size)) {
            OS.fatal("internal error: direct slot outside its class's slots", pointer: nil)
        }
        #endif
    }

    /// The class that serves `size` bytes (0 … `Geometry.smallMax`; size 0 maps to class 0).
    @inline(__always)
    static func of(_ size: Int) -> Int {
        if size == 0 { return 0 }
        let w = UInt(bitPattern: size &- 1)
        return w < 128 ? Int(w >> 4) : classAbove128(w)
    }

    /// The class of size w + 1 for 128 ≤ w < `Geometry.smallMax`: eight classes per
    /// doubling.
    @inline(__always)
    private static func classAbove128(_ w: UInt) -> Int {
        let k = Int(63 &- w.leadingZeroBitCount)
        return 8 &* k &- 48 &+ Int((w &>> UInt(k &- 3)) & 7)
    }

    /// The slot whose page the slow paths read for class `c`: the last of `slots(ofClass:)`,
    /// blockSize(c) / 16 up to 1 KiB.
    @inline(__always)
    static func slot(ofClass c: Int) -> Int {
        if c < 16 { return c + 1 }                  // 16 … 256 bytes: one slot each
        if c < 24 { return 18 + (c - 16) << 1 }     // 288 … 512: two
        if c < 32 { return 36 + (c - 24) << 2 }     // 576 … 1024: four
        return c + 33
    }

    /// Every slot that holds class `c`'s page (size 0's slot 0 shares class 0's).
    @inline(__always)
    static func slots(ofClass c: Int) -> ClosedRange<Int> {
        let last = slot(ofClass: c)
        if c == 0 { return 0...last }
        if c < 16 || c >= 32 { return last...last }
        return (last - (c < 24 ? 1 : 3))...last
    }

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
        return Geometry.slices(for: size * 8)
    }
}
