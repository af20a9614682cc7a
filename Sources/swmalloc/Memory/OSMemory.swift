// Memory layer: aligned mappings from the OS, and giving memory back.

import Synchronization

/// Aligned mappings and purging, keeping the process-wide byte counters.
enum OSMemory {
    /// Maps `size` bytes aligned to `alignment` (a power of two ≥ the page size).
    /// First tries an exact mapping at a hinted aligned address; otherwise over-maps by `alignment` and trims both ends.
    /// Returns nil when the kernel refuses, or maps it where no segment may start
    /// (`SegmentMap.limit`); the caller reports ENOMEM.
    static func mapAligned(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        guard let p = mapAlignedAnywhere(size, alignment: alignment) else { return nil }
        if SegmentMap.covers(p) { return p }
        unmap(p, size)
        return nil
    }

    /// `mapAligned` without the segment map's range test.
    private static func mapAlignedAnywhere(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        let mask = UInt(alignment - 1)
        // Ask for the aligned address just below the last aligned mapping (the kernel
        // hands out addresses top-down): usually granted, saving the over-map and trims.
        let hint = AtomicWord(Globals.base + 24)
        let last = hint.loadRelaxed()
        let wanted = last > UInt(size) ? (last - UInt(size)) & ~mask : 0
        if let p = OS.map(size, hint: UnsafeMutableRawPointer(bitPattern: wanted)) {
            if UInt(bitPattern: p) & mask == 0 {
                hint.store(UInt(bitPattern: p))
                Counters.shared.pointee.mapped.wrappingAdd(UInt(size), ordering: .relaxed)
                return p
            }
            OS.unmap(p, size)
        }
        guard let raw = OS.map(size + alignment) ?? retryAfterReleasingCaches(size + alignment) else {
            return mapAlignedWithoutSlack(size, alignment: alignment)
        }
        let start = UInt(bitPattern: raw)
        let aligned = (start + mask) & ~mask
        let head = Int(aligned - start)
        if head > 0 { OS.unmap(raw, head) }
        let tail = alignment - head
        if tail > 0 { OS.unmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(size))!, tail) }
        hint.store(aligned)
        Counters.shared.pointee.mapped.wrappingAdd(UInt(size), ordering: .relaxed)
        return UnsafeMutableRawPointer(bitPattern: aligned)
    }

    /// When even the over-map was refused (an address-space limit with less than
    /// `alignment` to spare: an outside review's 24 MiB block did not fit in 27 MiB of
    /// room): `size` bytes mapped anywhere show where there is room; that mapping if it
    /// happens to be aligned, else the same size exactly at the aligned address below or
    /// above it, where the range may be free too. Nil when neither is.
    @inline(never)
    private static func mapAlignedWithoutSlack(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        guard let p = OS.map(size) else { return nil }
        let mask = UInt(alignment - 1)
        let start = UInt(bitPattern: p)
        if start & mask == 0 {
            Counters.shared.pointee.mapped.wrappingAdd(UInt(size), ordering: .relaxed)
            return p
        }
        OS.unmap(p, size)
        let below = UnsafeMutableRawPointer(bitPattern: start & ~mask)
        if let below, map(exactlyAt: below, size) == .mapped { return below }
        let above = UnsafeMutableRawPointer(bitPattern: (start + mask) & ~mask)
        if let above, map(exactlyAt: above, size) == .mapped { return above }
        return nil
    }

    /// Grows a mapping from `mapAligned` to `newSize` bytes at a new address aligned to
    /// `alignment`. Its part from `head` on moves there (resident pages, not copied; the
    /// growth is fresh); of the first `head` bytes only the first `headBytes` are copied,
    /// and the old head is unmapped. Nil when the kernel refuses (the old mapping is then
    /// untouched).
    ///
    /// Why not one `mremap` of the whole mapping: the kernel moves only a range inside one
    /// of its mappings (EFAULT otherwise), and a hint given to the block's part alone
    /// (`madvise` for huge pages) splits the mapping in two there.
    static func growAligned(_ p: UnsafeMutableRawPointer, _ size: Int, to newSize: Int, alignment: Int,
                            head: Int, headBytes: Int) -> UnsafeMutableRawPointer? {
        guard let target = mapAligned(newSize, alignment: alignment) else { return nil }
        if !OS.remap(p + head, size - head, to: target + head, newSize: newSize - head) {
            unmapAfterFailedMove(target, newSize, moved: head, counted: true)
            return nil
        }
        target.copyMemory(from: p, byteCount: headBytes)
        OS.unmap(p, head)
        Counters.shared.pointee.mapped.wrappingSubtract(UInt(size), ordering: .relaxed)
        return target
    }

    /// Gives back `[base, base + size)`, mapped to reserve the target of a move
    /// (`OS.remap` to `base + moved`, to its end) that failed. The target itself only when
    /// it is still the reservation: a kernel before 6.16 may have unmapped it before
    /// failing, and another thread's mapping may lie there now
    /// (`swmshim_move_target_kept`). The target is tested before the head goes back:
    /// the other way round, the hole was head and target together, and a mapping of the
    /// reservation's size placed there was taken for it (review R78). `counted`: the
    /// reservation is counted in `mapped`.
    static func unmapAfterFailedMove(_ base: UnsafeMutableRawPointer, _ size: Int, moved: Int, counted: Bool) {
        func release(_ p: UnsafeMutableRawPointer, _ n: Int) {
            if counted { unmap(p, n) } else { OS.unmap(p, n) }
        }
        if OS.moveTargetKept(base + moved, size - moved) {
            release(base + moved, size - moved)
        } else if counted {
            Counters.shared.pointee.mapped.wrappingSubtract(UInt(size - moved), ordering: .relaxed)
        }
        if moved > 0 { release(base, moved) }
    }

    /// After the kernel refused a mapping (address-space limit, `vm.max_map_count`):
    /// unmaps the huge cache and all but the header of every empty segment
    /// (`Segment.releaseAddressSpace`), and tries once more; nil when nothing went back.
    @inline(never)
    static func retryAfterReleasingCaches(_ size: Int) -> UnsafeMutableRawPointer? {
        var released = false
        if Globals.hugeCacheHead.pointee != nil || Globals.overAlignedCacheHead.pointee != nil {
            Huge.purgeCache(now: .max, delay: 0)
            released = true
        }
        if UnsafeMutablePointer<Segment>.releaseAddressSpace() { released = true }
        return released ? OS.map(size) : nil
    }

    /// Maps `size` bytes again at `p`, a range this process unmapped.
    static func map(exactlyAt p: UnsafeMutableRawPointer, _ size: Int) -> OS.ExactMapping {
        let result = OS.map(exactlyAt: p, size)
        if result == .mapped { Counters.shared.pointee.mapped.wrappingAdd(UInt(size), ordering: .relaxed) }
        return result
    }

    /// Maps `size` bytes for the allocator's own records (heap records, VOS tables and
    /// names), not counted in `mapped`; like every mapping, after a refusal it gives the
    /// caches' address space back and tries once more. Nil when the kernel still refuses.
    static func mapRecords(_ size: Int) -> UnsafeMutableRawPointer? {
        OS.map(size) ?? retryAfterReleasingCaches(size)
    }

    /// Unmaps the end of a mapping counted in `mapped` that stays in use; false,
    /// and the range left as it was, when the kernel refuses (at `vm.max_map_count`, when
    /// the kernel merged the mapping with the one after it, so that the cut splits a
    /// mapping in two: review R92). The caller then keeps it in the mapping, which
    /// goes back whole later: shrinking the mapping's size regardless left the range
    /// mapped and out of every record, for good.
    static func unmapEnd(_ p: UnsafeMutableRawPointer, _ size: Int) -> Bool {
        if !OS.unmapOnly(p, size) { return false }
        Counters.shared.pointee.mapped.wrappingSubtract(UInt(size), ordering: .relaxed)
        return true
    }

    /// Gives back the end of a mapping that stays in use (a huge or over-aligned block
    /// shrunk, or cut from a larger cached one): unmapped (`unmapEnd`: true, and the
    /// caller records the mapping's new size) or, where the kernel refuses, purged and
    /// kept in the mapping (false: the caller's sizes stay as they are).
    static func cutEnd(_ p: UnsafeMutableRawPointer, _ size: Int) -> Bool {
        if unmapEnd(p, size) { return true }
        purge(p, size)
        return false
    }

    /// Unmaps memory obtained from `mapAligned` (none of it counted as purged). When the
    /// kernel refuses (see `OS.unmap`: its pages go back, the range stays mapped), the
    /// range stays counted in `mapped`, which is what the process has mapped, and counts
    /// as purged: it is not resident. When the purge is refused too, it stays counted
    /// resident: it is (before, it counted as purged, and `resident` read 42 MB where the
    /// process had 286 MB: an outside review's sandbox refused munmap and madvise).
    static func unmap(_ p: UnsafeMutableRawPointer, _ size: Int) {
        switch OS.unmap(p, size) {
        case .unmapped: Counters.shared.pointee.mapped.wrappingSubtract(UInt(size), ordering: .relaxed)
        case .purged: Counters.shared.pointee.purgedNow.wrappingAdd(UInt(size), ordering: .relaxed)
        case .kept: break
        }
    }

    /// Returns a range's physical pages to the OS; the range stays mapped and reads as zero.
    /// False when the kernel refused (a locked page in the range): the caller counts the
    /// range resident, but what is not locked in it went back all the same
    /// (`purgeUnlocked`).
    @discardableResult
    static func purge(_ p: UnsafeMutableRawPointer, _ size: Int) -> Bool {
        if !OS.purge(p, size) {
            purgeUnlocked(p, size)
            return false
        }
        Counters.shared.pointee.purgedTotal.wrappingAdd(UInt(size), ordering: .relaxed)
        return true
    }

    /// After the kernel refused to purge a range: purges its parts without a locked page,
    /// halving the refused parts down to one slice (64 KiB). `madvise` stops at the first
    /// locked page, so before, one `mlock`ed page kept the whole free span after it
    /// resident (`retention partly_locked_span`). At most two calls per slice of the range
    /// (about 2 log2(slices) for one locked page; under `mlockall`, where every part is
    /// refused, all of them: a `swm_collect` of 500 MB freed in 512 KiB holes made 30,000
    /// calls, 10–16 ms, against 1 ms before — review R12); the purger retries a refused
    /// span only every few seconds (`Segment.purge`). What goes back counts in `purgedTotal`,
    /// as given back; the range still counts resident (its owner cannot tell which parts
    /// are zero), so a later purge of the whole range counts those bytes again.
    private static func purgeUnlocked(_ p: UnsafeMutableRawPointer, _ size: Int) {
        if size <= Geometry.sliceSize { return }
        let half = (size / 2) & ~(OS.pageSize - 1)
        purgeHalf(p, half)
        purgeHalf(p + half, size - half)
    }

    /// One half of `purgeUnlocked`'s range: purged, or halved again.
    private static func purgeHalf(_ p: UnsafeMutableRawPointer, _ size: Int) {
        if OS.purge(p, size) {
            Counters.shared.pointee.purgedTotal.wrappingAdd(UInt(size), ordering: .relaxed)
        } else {
            purgeUnlocked(p, size)
        }
    }

    /// Makes a range read as zero: purged (nothing stays resident), or, where the kernel
    /// refuses that (locked memory: an outside review's calloc returned a freed, `mlock`ed
    /// buffer's bytes), cleared by hand.
    static func zero(_ p: UnsafeMutableRawPointer, _ size: Int) {
        if !purge(p, size) { p.initializeMemory(as: UInt8.self, repeating: 0, count: size) }
    }
}
