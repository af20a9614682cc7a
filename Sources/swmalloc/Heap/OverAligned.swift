// Thread-heap layer: huge blocks aligned above 2 MiB, their table and their cache.

import Synchronization

/// Header of an over-aligned huge block, in the OS page just below the block.
struct OverAligned {
    var usable: Int                                 // bytes of the block (whole OS pages)
    var next: UnsafeMutablePointer<OverAligned>?    // in the cache: its list
    var prev: UnsafeMutablePointer<OverAligned>?
    var freedAt: UInt64                             // in the cache: when it was freed (`OS.nowNanoseconds`)
    var alignment: Int                              // the alignment asked for (kept when realloc moves it)
}

/// The live over-aligned blocks: a set of their addresses, so that `free`,
/// `malloc_usable_size` and `realloc` find one in constant time without reading below a
/// pointer that may not be mapped. Open addressing with linear probing and
/// backward-shift deletion, in a mapping of its own that doubles when half full
/// (invariant: `count * 2 <= capacity`, a power of two; an empty slot holds 0). Under
/// `Globals.overAlignedLock`. Before, a list walked at every call: with 20,000 live
/// blocks a free took 192 µs and `malloc_usable_size` 176 µs (review R48).
enum OverAlignedTable {
    /// Slots of the first table (one OS page of them).
    static let initialCapacity = 512

    /// The slot where `block`'s probe starts (`mask`: capacity - 1).
    @inline(__always)
    private static func home(_ block: UInt, mask: Int) -> Int {
        Int(truncatingIfNeeded: ((block >> Geometry.segmentShift) &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// The slot holding `block`, or nil.
    private static func slot(of block: UInt) -> Int? {
        guard let table = Globals.overAlignedTable.pointee else { return nil }
        let mask = Globals.overAlignedCapacity.pointee - 1
        var i = home(block, mask: mask)
        while table[i] != 0 {
            if table[i] == block { return i }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Whether `block` is a live over-aligned block.
    static func contains(_ block: UInt) -> Bool {
        Globals.overAlignedCount.pointee != 0 && slot(of: block) != nil
    }

    /// Adds `block`; false when the table had to grow and no memory was left for it.
    static func insert(_ block: UInt) -> Bool {
        if (Globals.overAlignedCount.pointee + 1) * 2 > Globals.overAlignedCapacity.pointee && !grow() { return false }
        let table = Globals.overAlignedTable.pointee.unsafelyUnwrapped
        let mask = Globals.overAlignedCapacity.pointee - 1
        var i = home(block, mask: mask)
        while table[i] != 0 { i = (i + 1) & mask }
        table[i] = block
        Globals.overAlignedCount.pointee += 1
        return true
    }

    /// Takes `block` out; false when it is not there.
    static func remove(_ block: UInt) -> Bool {
        guard var hole = slot(of: block) else { return false }
        let table = Globals.overAlignedTable.pointee.unsafelyUnwrapped
        let mask = Globals.overAlignedCapacity.pointee - 1
        table[hole] = 0
        // Backward shift: an entry after the hole whose probe started at or before the
        // hole (cyclically) moves into it, so that every probe still finds its key before
        // an empty slot.
        var j = hole
        while true {
            j = (j + 1) & mask
            let entry = table[j]
            if entry == 0 { break }
            let k = home(entry, mask: mask)
            let reaches = hole <= j ? (k <= hole || k > j) : (k <= hole && k > j)
            if reaches {
                table[hole] = entry
                table[j] = 0
                hole = j
            }
        }
        Globals.overAlignedCount.pointee -= 1
        return true
    }

    /// Doubles the table (or makes the first one); false when the OS refuses the mapping.
    private static func grow() -> Bool {
        let old = Globals.overAlignedTable.pointee
        let oldCapacity = Globals.overAlignedCapacity.pointee
        let capacity = old == nil ? initialCapacity : oldCapacity * 2
        guard let raw = OSMemory.mapRecords(capacity * MemoryLayout<UInt>.stride) else { return false }
        let table = raw.bindMemory(to: UInt.self, capacity: capacity)
        let mask = capacity - 1
        if let old {
            for i in 0..<oldCapacity where old[i] != 0 {
                var j = home(old[i], mask: mask)
                while table[j] != 0 { j = (j + 1) & mask }
                table[j] = old[i]
            }
            OS.unmap(UnsafeMutableRawPointer(old), oldCapacity * MemoryLayout<UInt>.stride)
        }
        Globals.overAlignedTable.pointee = table
        Globals.overAlignedCapacity.pointee = capacity
        return true
    }
}

extension Huge {
    // MARK: - Over-aligned blocks

    /// A block aligned above 2 MiB: `size` bytes at a multiple of `alignment`, in a
    /// mapping that starts one OS page below the block (the header) and ends with it;
    /// a cached one when one fits (`takeCachedOverAligned`).
    static func allocateOverAligned(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        let page = OS.pageSize
        let usable = OS.wholePages(size)
        if let block = takeCachedOverAligned(usable: usable, alignment: alignment) {
            let header = (block - page).assumingMemoryBound(to: OverAligned.self)
            adviseHugePages(nil, block: block, size: size, usable: header.pointee.usable, zeroed: false)
            countAllocation(usable: header.pointee.usable, mapped: page + header.pointee.usable)
            return block
        }
        guard let blockPointer = mapOverAligned(usable, alignment: alignment) else { return Heap.outOfMemory() }
        let header = (blockPointer - page).assumingMemoryBound(to: OverAligned.self)
        header.pointee.usable = usable
        header.pointee.alignment = alignment
        Globals.overAlignedLock.lock()
        let listed = OverAlignedTable.insert(UInt(bitPattern: blockPointer))
        Globals.overAlignedLock.unlock()
        if !listed {
            OSMemory.unmap(blockPointer - page, page + usable)
            return Heap.outOfMemory()
        }
        adviseHugePages(nil, block: blockPointer, size: size, usable: usable, zeroed: false)
        countAllocation(usable: usable, mapped: page + usable)
        return blockPointer
    }

    /// A fresh mapping of one OS page (the header) and `usable` bytes, the block (after
    /// the page) at a multiple of `alignment`: mapped with room to align, the rest given
    /// back. Counted in `mapped`; nil when the OS refuses.
    private static func mapOverAligned(_ usable: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        let page = OS.pageSize
        let span = page + alignment + usable
        guard let raw = OS.map(span) ?? OSMemory.retryAfterReleasingCaches(span) else { return nil }
        let start = UInt(bitPattern: raw)
        let block = (start + UInt(page) + UInt(alignment - 1)) & ~UInt(alignment - 1)
        let head = block - UInt(page)
        if head > start { OS.unmap(raw, Int(head - start)) }
        let end = block + UInt(usable)
        if start + UInt(span) > end { OS.unmap(UnsafeMutableRawPointer(bitPattern: end).unsafelyUnwrapped, Int(start + UInt(span) - end)) }
        Counters.shared.pointee.mapped.wrappingAdd(UInt(page + usable), ordering: .relaxed)
        return UnsafeMutableRawPointer(bitPattern: block).unsafelyUnwrapped
    }

    /// The header of the live over-aligned block that starts at `p`, or nil. Under
    /// `overAlignedLock`.
    private static func findOverAligned(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<OverAligned>? {
        if UInt(bitPattern: p) & Geometry.segmentMask != 0 || !OverAlignedTable.contains(UInt(bitPattern: p)) { return nil }
        return (p - OS.pageSize).assumingMemoryBound(to: OverAligned.self)
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
        _ = OverAlignedTable.remove(UInt(bitPattern: p))
        Globals.overAlignedLock.unlock()
        freeClaimedOverAligned(h)
        return true
    }

    /// realloc's claim of the over-aligned block at `p` before it copies or moves it: taken
    /// out of the table, so that another thread's free or realloc of it (a program race)
    /// reports it instead of unmapping it under the copy (review R50: a silent SIGSEGV in
    /// the copy). Aborts when it is gone already.
    static func claimOverAligned(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<OverAligned> {
        Globals.overAlignedLock.lock()
        guard let h = findOverAligned(p) else {
            Globals.overAlignedLock.unlock()
            OS.fatal("realloc(): pointer already freed", pointer: p)
        }
        _ = OverAlignedTable.remove(UInt(bitPattern: p))
        Globals.overAlignedLock.unlock()
        return h
    }

    /// Frees the over-aligned block of header `h`, out of the table already: counted, then
    /// cached or unmapped.
    static func freeClaimedOverAligned(_ h: UnsafeMutablePointer<OverAligned>) {
        let mapped = OS.pageSize + h.pointee.usable
        countFree(usable: h.pointee.usable, mapped: mapped, heap: Heap.current)
        if !putCachedOverAligned(h) { OSMemory.unmap(UnsafeMutableRawPointer(h), mapped) }
    }

    /// realloc of the over-aligned block at `p` (live: checked by the caller) to `size`
    /// bytes, fewer than it holds: it stays where it is, and the end of its mapping past
    /// the new size goes back, as a huge block's does (it moved and was copied: a 200 MiB
    /// block shrunk to 99 MiB, review R48). False when the thread has no heap to count
    /// the cut in. Under the lock, so that a racing free of the block (a program error)
    /// finds it either before or after.
    static func shrinkOverAligned(_ p: UnsafeMutableRawPointer, to size: Int) -> Bool {
        let heap = Heap.current
        if heap.isEmpty { return false }
        let page = OS.pageSize
        let usable = OS.wholePages(size)
        Globals.overAlignedLock.lock()
        guard let h = findOverAligned(p) else {
            Globals.overAlignedLock.unlock()
            OS.fatal("realloc(): pointer already freed", pointer: p)
        }
        let old = h.pointee.usable
        if usable < old && OSMemory.cutEnd(p + usable, old - usable) {
            h.pointee.usable = usable
            countResize(from: page + old, to: page + usable, heap: heap)
        }
        Globals.overAlignedLock.unlock()
        return true
    }

    /// realloc of the over-aligned block at `p` (live: checked by the caller) to `size`
    /// bytes, more than it holds, without copying: its mapping grows where it is when the
    /// range after it is free, else its pages move (`mremap`) to a fresh range aligned as
    /// the block was asked for (a 200 MiB block grown to 400 MiB was copied, with both
    /// resident: review R48). The block is out of the table meanwhile, so a racing free
    /// reports it. Nil when neither can be done (the caller copies), or the thread has no
    /// heap to count the growth in.
    static func growOverAligned(_ p: UnsafeMutableRawPointer, to size: Int) -> UnsafeMutableRawPointer? {
        let heap = Heap.current
        if heap.isEmpty { return nil }
        let page = OS.pageSize
        let h = claimOverAligned(p)
        let old = h.pointee.usable
        let usable = OS.wholePages(size)
        // With `thp=large` only the block's whole 2 MiB pages were advised, which split
        // its mapping where `mremap` needs one: the whole block is advised alike first, as
        // a huge block's is (`joinAdvice`; R50: both mremaps failed and realloc copied
        // into an unaligned block).
        if Options.current.pointee.thp == .large { OS.adviseHugePages(p, old, enable: true) }
        var block: UnsafeMutableRawPointer? = nil
        if OS.growInPlace(p, old, to: usable) {
            block = p
        } else if let target = moveOverAligned(p, usable: old, to: usable, alignment: h.pointee.alignment) {
            block = target
        }
        // Back in the table, at its old or new address: the table held it a moment ago,
        // so it does not need to grow.
        Globals.overAlignedLock.lock()
        _ = OverAlignedTable.insert(UInt(bitPattern: block ?? p))
        Globals.overAlignedLock.unlock()
        guard let grown = block else { return nil }
        let header = (grown - page).assumingMemoryBound(to: OverAligned.self)
        header.pointee.usable = usable
        Counters.shared.pointee.mapped.wrappingAdd(UInt(usable - old), ordering: .relaxed)
        countResize(from: page + old, to: page + usable, heap: heap)
        return grown
    }

    /// Moves the over-aligned block at `p` (`usable` bytes) into a fresh range of
    /// `newUsable` bytes at a multiple of `alignment`, with its header copied in the page
    /// below; the old header page is unmapped. Nil when the OS refuses (nothing changed).
    private static func moveOverAligned(_ p: UnsafeMutableRawPointer, usable: Int, to newUsable: Int,
                                        alignment: Int) -> UnsafeMutableRawPointer? {
        let page = OS.pageSize
        let span = page + alignment + newUsable
        guard let raw = OS.map(span) ?? OSMemory.retryAfterReleasingCaches(span) else { return nil }
        let start = UInt(bitPattern: raw)
        let target = (start + UInt(page) + UInt(alignment - 1)) & ~UInt(alignment - 1)
        let targetPointer = UnsafeMutableRawPointer(bitPattern: target).unsafelyUnwrapped
        if !OS.remap(p, usable, to: targetPointer, newSize: newUsable) {
            let end = target + UInt(newUsable)
            OSMemory.unmapAfterFailedMove(raw, Int(end - start), moved: Int(target - start), counted: false)
            if start + UInt(span) > end {
                OS.unmap(UnsafeMutableRawPointer(bitPattern: end).unsafelyUnwrapped, Int(start + UInt(span) - end))
            }
            return nil
        }
        (targetPointer - page).copyMemory(from: p - page, byteCount: MemoryLayout<OverAligned>.size)
        OS.unmap(p - page, page)
        let head = target - UInt(page)
        if head > start { OS.unmap(raw, Int(head - start)) }
        let end = target + UInt(newUsable)
        if start + UInt(span) > end { OS.unmap(UnsafeMutableRawPointer(bitPattern: end).unsafelyUnwrapped, Int(start + UInt(span) - end)) }
        return targetPointer
    }

    // MARK: - The over-aligned cache

    /// Most freed over-aligned mappings kept for reuse.
    static let overAlignedCacheLimitCount = 16

    /// Keeps a freed over-aligned block's mapping for reuse, as the huge cache keeps the
    /// others: newest first, the oldest evicted beyond `overAlignedCacheLimitCount`
    /// mappings or beyond the huge cache's byte bound (both caches' bytes together),
    /// unmapped once it stayed for the purge delay (`purgeCache`). False when it is not
    /// kept (caching is off, or it alone exceeds the bound): the caller unmaps it.
    /// Before, each such block was mapped and unmapped: `posix_memalign(4 MiB, < 1 MiB)`
    /// 20,000 times took 5.2 s, against 0.37 s for glibc (an outside review, R46).
    private static func putCachedOverAligned(_ h: UnsafeMutablePointer<OverAligned>) -> Bool {
        let mapped = OS.pageSize + h.pointee.usable
        let limit = cacheLimitBytes()
        if Options.current.pointee.purgeDelayMs == 0 || mapped > limit { return false }
        h.pointee.freedAt = OS.nowNanoseconds()
        var evicted: UnsafeMutablePointer<OverAligned>? = nil
        Globals.overAlignedLock.lock()
        linkCachedOverAligned(h)
        Counters.shared.pointee.hugeCached.wrappingAdd(UInt(mapped), ordering: .relaxed)
        var count = 0
        var bytes = Globals.hugeCacheBytes.pointee
        var cursor = Globals.overAlignedCacheHead.pointee?.assumingMemoryBound(to: OverAligned.self)
        while let c = cursor {
            cursor = c.pointee.next
            count += 1
            bytes += OS.pageSize + c.pointee.usable
            if count > overAlignedCacheLimitCount || bytes > limit {
                unlinkCachedOverAligned(c)
                c.pointee.next = evicted
                evicted = c
            }
        }
        Globals.overAlignedLock.unlock()
        unmapCachedOverAligned(evicted)
        Purger.announce()
        return true
    }

    /// The cached over-aligned mapping whose block is aligned to `alignment` and holds
    /// `usable` bytes: the smallest that does, made live again (in the table, with
    /// `alignment` in its header); nil when none. When it holds more than twice the
    /// request, what it holds past the request is unmapped: a block holds at most twice
    /// its request, as a huge one does.
    private static func takeCachedOverAligned(usable: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if Globals.overAlignedCacheHead.pointee == nil { return nil }
        let page = OS.pageSize
        Globals.overAlignedLock.lock()
        var fit: UnsafeMutablePointer<OverAligned>? = nil
        var cursor = Globals.overAlignedCacheHead.pointee?.assumingMemoryBound(to: OverAligned.self)
        while let c = cursor {
            cursor = c.pointee.next
            let aligned = (UInt(bitPattern: c) + UInt(page)) & UInt(alignment - 1) == 0
            if aligned && c.pointee.usable >= usable && (fit == nil || c.pointee.usable < fit.unsafelyUnwrapped.pointee.usable) {
                fit = c
            }
        }
        guard let h = fit, OverAlignedTable.insert(UInt(bitPattern: h) + UInt(page)) else {
            Globals.overAlignedLock.unlock()
            return nil
        }
        unlinkCachedOverAligned(h)
        Counters.shared.pointee.hugeCached.wrappingSubtract(UInt(page + h.pointee.usable), ordering: .relaxed)
        Globals.overAlignedLock.unlock()
        h.pointee.alignment = alignment
        let block = UnsafeMutableRawPointer(h) + page
        if h.pointee.usable - usable > usable && OSMemory.cutEnd(block + usable, h.pointee.usable - usable) {
            h.pointee.usable = usable
        }
        return block
    }

    /// Under `overAlignedLock`: puts `h` at the head of the cache.
    private static func linkCachedOverAligned(_ h: UnsafeMutablePointer<OverAligned>) {
        h.pointee.prev = nil
        h.pointee.next = Globals.overAlignedCacheHead.pointee?.assumingMemoryBound(to: OverAligned.self)
        h.pointee.next?.pointee.prev = h
        Globals.overAlignedCacheHead.pointee = UnsafeMutableRawPointer(h)
    }

    /// Under `overAlignedLock`: takes `h` out of the cache.
    private static func unlinkCachedOverAligned(_ h: UnsafeMutablePointer<OverAligned>) {
        if let prev = h.pointee.prev { prev.pointee.next = h.pointee.next }
        else { Globals.overAlignedCacheHead.pointee = h.pointee.next.map { UnsafeMutableRawPointer($0) } }
        h.pointee.next?.pointee.prev = h.pointee.prev
    }

    /// Unmaps the cached over-aligned mappings freed at least `delay` before `now`;
    /// returns when the oldest one left was freed (`UInt64.max`: none).
    static func purgeOverAligned(now: UInt64, delay: UInt64) -> UInt64 {
        if Globals.overAlignedCacheHead.pointee == nil { return .max }
        var expired: UnsafeMutablePointer<OverAligned>? = nil
        var oldest = UInt64.max
        Globals.overAlignedLock.lock()
        var cursor = Globals.overAlignedCacheHead.pointee?.assumingMemoryBound(to: OverAligned.self)
        while let c = cursor {
            cursor = c.pointee.next
            if hasExpired(freedAt: c.pointee.freedAt, now: now, delay: delay) {
                unlinkCachedOverAligned(c)
                c.pointee.next = expired
                expired = c
            } else if c.pointee.freedAt < oldest {
                oldest = c.pointee.freedAt
            }
        }
        Globals.overAlignedLock.unlock()
        unmapCachedOverAligned(expired)
        return oldest
    }

    /// Unmaps the over-aligned mappings of a list linked through `next`, taken out of the
    /// cache (their bytes leave its count).
    private static func unmapCachedOverAligned(_ list: UnsafeMutablePointer<OverAligned>?) {
        var cursor = list
        while let c = cursor {
            cursor = c.pointee.next
            let mapped = OS.pageSize + c.pointee.usable
            Counters.shared.pointee.hugeCached.wrappingSubtract(UInt(mapped), ordering: .relaxed)
            OSMemory.unmap(UnsafeMutableRawPointer(c), mapped)
        }
    }
}
