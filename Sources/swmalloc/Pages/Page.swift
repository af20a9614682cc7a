// Pages layer: the page descriptor and its two free lists.

import Synchronization

/// Descriptor of one page: a span of slices inside a segment, holding blocks of one size
/// (a *small* page), one block (a *large* page), or nothing (a *free span*).
/// Descriptors live in the segment header, one per slice; only a span's first slice's
/// descriptor is meaningful.
///
/// Free-list sharding (after mimalloc): the owner allocates from and frees to `free`
/// (last in, first out, so the block just freed — still in cache — is the next one handed
/// out); other threads' frees go to the atomic `threadFree`, which the owner collects into
/// `free` on its slow path.
///
/// Invariant (small page, owner's view; `used` counts blocks in other threads' frees until
/// the owner collects them):
///     used == capacity − |free|,   |threadFree| ≤ used,   capacity ≤ reserved
///     threadFree == |threadFree| << 48 | head   (the count rides in the word's top bits)
/// and every freed block on a list carries the freed mark in its second word.
///
/// Invariant (descriptors): ownerTag ≠ 0 ⇒ the descriptor is the first of a live page's
/// span. Interior descriptors of a span keep ownerTag 0 (a page's tag is cleared when it
/// returns its span, before the span can merge), so free's fast path may take the
/// descriptor of the slice holding a pointer without the slice map: a pointer in any
/// slice but a page's first finds tag 0 and takes the slow path, which looks it up.
struct Page: ~Copyable {
    // Line 0: written by the owner, on its fast paths (free, used) and slow paths. Another
    // thread reads and writes it only under the owner's span lock, and only for a class
    // page behind its head or a full page whose every block other threads freed
    // (`Heap.releaseOthersFrees`; `pushLocal` orders its writes for that reader).
    var free: UnsafeMutableRawPointer?        // +0   owner's free blocks: malloc's fast path pops, free's pushes
    var used: Int32                           // +8   blocks handed out and not collected back
    var reserved: Int32                       // +12  blocks that fit in the span
    var sliceCount: Int                       // +16  length of the span in slices (free spans too)
    var sliceIndex: Int                       // +24  position of the span's first slice in its segment
    var next: UnsafeMutablePointer<Page>?     // +32  class list / full list links
    var prev: UnsafeMutablePointer<Page>?     // +40
    var freedAt: UInt64                       // +48  free span: when it was freed (purge delay clock)
    var purged: Bool                          // +56  free span whose memory was returned to the OS
    var keptEmpty: Bool                       // +57  an emptied only page of its class, in its heap's kept ring
    var forkOrphaned: Bool                    // +58  taken in a fork child from a thread that was not copied (see `Heap.reclaimForkOrphans`)
    var inFullList: Bool                      // +59  on the heap's full list instead of its class list
    var untouchedTail: Bool                   // +60  small page: no block past `capacity` was touched since its span was last purged (not resident)
    private var padding0: (UInt8, UInt8, UInt8) = (0, 0, 0) // +61
    // Line 1: read by every thread that frees a block of the page (free's fast path, and
    // other threads' frees: owner, block-start test); written only when the page is
    // formatted, extended, or changes lists or owners (slow paths).
    let ownerTag: Atomic<UInt>                // +64  owning heap's address; |1 in the full list or large; 0 abandoned/free
    let heap: Atomic<UInt>                    // +72  owning heap record, for the remote-free hint; 0 when abandoned
    var start: UnsafeMutableRawPointer?       // +80  first block
    var divInverse: UInt                      // +88  inverse of blockSize's odd part mod 2^64 (see `isBlockStart`)
    var capacity: Int                         // +96  blocks threaded onto `free` so far (lazy extension)
    var blockSize: UInt32                     // +104 bytes per block (large: the block's size in OS pages)
    var classIndex: UInt16                    // +108 size class (small pages)
    var kind: PageKind                        // +110 free span, small page, large page, huge
    var divShift: UInt8                       // +111 log2 of blockSize's power-of-two part
    var remoteSeen: UInt                      // +112 the purger's last look at `threadFree` (`Heap.purgeStaleRemoteFrees`), or at an abandoned page's `free` (`Purger.purgeStaleFreeBlocks`); | `remotePurged` once purged
    var remoteSeenAt: UInt64                  // +120 when it first saw that word
    // Line 2: other threads' frees, alone: their compare-and-swaps invalidate no line the
    // owner's fast paths use.
    let threadFree: Atomic<UInt>              // +128 other threads' frees: stack head | count << 48
}

extension Page {
    /// Blocks of this size or less share their OS pages with their neighbours, or hold no
    /// whole OS page past their first three words: `purgeFreeBlocks` leaves them.
    static let smallestPurgedBlock = OS.pageSize + 16

    /// Where `ownerTag` lies in the descriptor (`ownerTagPlain`).
    static let ownerTagOffset = 64

    /// `remoteSeen`'s flag: the blocks of the thread-free list it names were purged.
    static let remotePurged: UInt = 1 << 63
}

/// What a page descriptor currently describes.
enum PageKind: UInt8 {
    case freeSpan = 0, small = 1, large = 2, huge = 3
}

extension UnsafeMutablePointer where Pointee == Page {
    /// The word a freed block of this page carries in its second 8 bytes: the address of
    /// the page's descriptor. Malloc clears it, so finding it on free means the block was
    /// freed before and not allocated since: a double free. Descriptors lie in a segment's
    /// first slice, which holds no block, so no pointer to a block (or one past its end)
    /// equals a mark: a block whose second word points at the block itself, as an empty
    /// circular list head's does, is not taken for freed. free's fast path compares the
    /// word with the descriptor pointer it already holds (a compare, no constant to load).
    @inline(__always)
    var freedMark: UInt { UInt(bitPattern: self) }

    /// `ownerTag` read with a plain load, for free's fast path, where the compiler folds it
    /// into the compare with the heap's tag (the relaxed atomic load took a move of its
    /// own: 34 instructions, 33 now). It reads what the relaxed load read: one aligned
    /// word, which x86-64 and AArch64 load whole, and used once, so the compiler cannot
    /// read it twice and see two values. Only the validator's check ties
    /// `ownerTagOffset` to the field (`Heap.validate`).
    @inline(__always)
    var ownerTagPlain: UInt { UnsafeRawPointer(self).load(fromByteOffset: Page.ownerTagOffset, as: UInt.self) }

    /// The word a free block of this page carries in its third 8 bytes once `swm_collect`
    /// gave back the OS pages inside it (`purgeFreeBlocks`): the descriptor's address plus
    /// one (odd, so no pointer to a block or a descriptor equals it).
    var purgedMark: UInt { UInt(bitPattern: self) &+ 1 }

    /// Gives back the OS pages that lie wholly inside this small page's free blocks (on
    /// `free`; blocks above `Page.smallestPurgedBlock`): a page that keeps one live block
    /// keeps its other blocks, which retiring cannot give back, and blocks of 8 KiB and
    /// more cover whole OS pages (an outside review: 32 KiB blocks, one in eight kept,
    /// held 8× the live bytes resident after `malloc_trim`, where glibc gives them back).
    /// A free block keeps its first OS page (its first three words are its link, its
    /// freed mark and the purged mark); the rest reads zero when it is handed out again,
    /// which malloc allows and calloc does not count on (it clears the usable size).
    /// Whoever calls this must be the only one that may take blocks off `free`: the owner
    /// under its span lock, or the purger for an abandoned page under the abandoned list's
    /// lock.
    ///
    /// A purged block is marked in its third word (`purgedMark`): a later call skips it
    /// while it still carries the mark. A block handed out and written since has that
    /// word overwritten unless the program wrote around it (or wrote the mark itself):
    /// such a block only stays resident until it is freed and written again, nothing is
    /// lost. Without the mark every trim made one `madvise` per free block again (an
    /// outside review: 114,700 calls, 0.045–0.07 s per trim for 131,072 blocks of 8 KiB,
    /// 7 in 8 free, against glibc's 0.012 s; 0.004 s now).
    func purgeFreeBlocks() { purgeBlocks(chain: pointee.free) }

    /// The same for a chain of this page's blocks that no one can take off its list while
    /// the caller walks it: `free` (see `purgeFreeBlocks`), or a snapshot of `threadFree`
    /// taken under the owner's span lock (`Heap.purgeStaleRemoteFrees`), which only the
    /// owner's collect, under that lock, empties; pushers only add blocks in front of it.
    func purgeBlocks(chain: UnsafeMutableRawPointer?) {
        let size = Int(pointee.blockSize)
        if pointee.kind != .small || size <= Page.smallestPurgedBlock { return }
        let osPage = OS.pageSize
        let mark = purgedMark
        var block = chain
        while let b = block {
            if b.load(fromByteOffset: 16, as: UInt.self) != mark {
                let start = (Int(bitPattern: b) &+ 24 &+ osPage &- 1) & ~(osPage &- 1)
                let end = (Int(bitPattern: b) &+ size) & ~(osPage &- 1)
                if end > start { OSMemory.purge(UnsafeMutableRawPointer(bitPattern: start).unsafelyUnwrapped, end &- start) }
                b.storeBytes(of: mark, toByteOffset: 16, as: UInt.self)
            }
            block = b.load(as: UnsafeMutableRawPointer?.self)
        }
    }

    /// True when `p` is the start of one of the page's first `capacity` blocks. Cost: a
    /// subtraction, a multiply, a rotate and a compare. With blockSize = 2^s · d (d odd)
    /// and offset = p − start, rotr(offset · d⁻¹, s) is offset / blockSize when blockSize
    /// divides offset; otherwise a low bit of offset lands in the top s bits, or the
    /// quotient by d is not exact and the product exceeds 2^(64−s) / d (far above any
    /// capacity), as it does for p below start. So one unsigned compare with `capacity`
    /// answers "a block start" and "a block handed out at least once" together.
    @inline(__always)
    func isBlockStart(_ p: UInt) -> Bool {
        let product = (p &- UInt(bitPattern: pointee.start)) &* pointee.divInverse
        let s = UInt(pointee.divShift)
        let index = product &>> s | product &<< (64 &- s)
        return index < UInt(bitPattern: pointee.capacity)
    }

    /// Sets the block-start test's constants for blocks of `blockSize` bytes.
    private func setDivisor(_ blockSize: Int) {
        let s = blockSize.trailingZeroBitCount
        let d = UInt(blockSize >> s)
        var inverse = d                       // correct to 3 bits: d · d ≡ 1 (mod 8)
        for _ in 0..<5 { inverse &*= 2 &- d &* inverse }   // each step doubles the bits
        pointee.divInverse = inverse
        pointee.divShift = UInt8(s)
    }

    /// A large page's block now holds `usable` bytes (whole OS pages, at most the span):
    /// realloc grew it in place. The block-start test's constants follow.
    func resizeLarge(_ usable: Int) {
        pointee.blockSize = UInt32(usable)
        setDivisor(usable)
    }

    /// Sets up a small page of class `c` (or a large page when `c < 0`) over this span.
    func format(segment: UnsafeMutablePointer<Segment>, heapTag: UInt, classIndex c: Int, blockSize: Int) {
        let span = pointee.sliceCount << Geometry.sliceShift
        pointee.free = nil
        pointee.used = 0
        pointee.blockSize = UInt32(blockSize)
        pointee.threadFree.store(0, ordering: .relaxed)
        pointee.start = UnsafeMutableRawPointer(segment) + (pointee.sliceIndex << Geometry.sliceShift)
        setDivisor(blockSize)
        pointee.capacity = 0
        pointee.reserved = Int32(span / blockSize)
        pointee.kind = c < 0 ? .large : .small
        pointee.classIndex = UInt16(c < 0 ? 0 : c)
        pointee.inFullList = false
        pointee.keptEmpty = false
        pointee.forkOrphaned = false
        pointee.remoteSeen = 0
        if c >= 0 { Counters.shared.pointee.pagesFormatted.wrappingAdd(1, ordering: .relaxed) }
        pointee.heap.store(heapTag, ordering: .relaxed)
        pointee.ownerTag.store(heapTag, ordering: .relaxed)
        pointee.next = nil
        pointee.prev = nil
    }

    /// True when `free` is empty and blocks never used are left to `extend` onto it.
    @inline(__always)
    var canExtend: Bool { pointee.free == nil && pointee.capacity < Int(pointee.reserved) }

    /// Threads more never-used blocks onto `free` (one OS page of them at a time, at least
    /// one block, so a fresh page touches memory only as it is used: 16 threads that used
    /// 47 classes each took 15,400 page faults with 16 KiB at a time, 13,900 with 4 KiB).
    /// Requires `canExtend`.
    ///
    /// Each block gets the freed mark like any block on a free list: a free of a block
    /// start that was never handed out (`free(p + 64)` after `p = malloc(64)`), or of a
    /// stale pointer into a page formatted again, is then a double free, not a block
    /// pushed twice.
    ///
    /// Blocks under 64 bytes are threaded so that consecutive mallocs land in different
    /// cache lines (no *passive false sharing*: a thread that allocates a few small objects
    /// and hands them to other threads does not make them write to one line). Within a
    /// group of `spreadLines` lines the list takes the first block of each line, then the
    /// second, and so on: a group is 512 bytes (768 for 48-byte blocks), so single-threaded
    /// code keeps its locality. An extension covers whole groups, so every group starts on
    /// a line; only the page's last blocks (fewer than a group) go in address order.
    func extend() {
        let size = Int(pointee.blockSize)
        var n = Self.extendBytes / size
        if n < 1 { n = 1 }
        let left = Int(pointee.reserved) - pointee.capacity
        if n > left { n = left }
        let first = pointee.start.unsafelyUnwrapped + pointee.capacity * size
        // Blocks per line step: block i and i + perLine never share a line (every size is a
        // multiple of 16; 48-byte blocks two apart leave a gap of 48 bytes, which no line
        // boundary pattern of 48 · i mod 64 ∈ {0, 16, 32, 48} lets one line span).
        let perLine = size < 64 ? (64 &+ size &- 1) / size : 1
        let group = perLine &* Self.spreadLines
        let groups = perLine > 1 ? n / group : 0
        if groups > 0 && n < left { n = groups &* group }   // the next extension starts a group, line-aligned
        var last: UnsafeMutableRawPointer? = nil
        var groupBase = first
        for _ in 0..<groups {
            for column in 0..<perLine {
                for row in 0..<Self.spreadLines {
                    thread(groupBase + (row &* perLine &+ column) &* size, after: &last)
                }
            }
            groupBase += group &* size
        }
        var block = groupBase
        let end = first + n &* size
        while block < end {
            thread(block, after: &last)
            block += size
        }
        last.unsafelyUnwrapped.storeBytes(of: nil, as: UnsafeMutableRawPointer?.self)
        pointee.free = first
        pointee.capacity += n
    }

    /// Bytes of blocks `extend` threads at a time.
    static var extendBytes: Int { 4096 }

    /// Lines a group of `extend`'s spread covers: that many consecutive mallocs of a block
    /// under 64 bytes from a fresh stretch of a page get different cache lines.
    static var spreadLines: Int { 8 }

    /// `extend`'s step: marks `block` freed and links it after `last` (the list's tail).
    @inline(__always)
    private func thread(_ block: UnsafeMutableRawPointer, after last: inout UnsafeMutableRawPointer?) {
        last?.storeBytes(of: block, as: UnsafeMutableRawPointer?.self)
        block.storeBytes(of: freedMark, toByteOffset: 8, as: UInt.self)
        last = block
    }

    /// The owner's free of `block`: marked freed, pushed on `free`, uncounted from `used`.
    ///
    /// `used` is written last, behind a release fence: another thread that collects a class
    /// page behind its head (`Heap.releaseOthersFrees`, under the owner's span lock, which
    /// this push does not take) decides from `used` that every block is on the thread-free
    /// list, then reads `free` and walks the links (`collectThreadFree`). Seeing the new
    /// `used` must mean seeing the push (review R88: on aarch64 the stores may otherwise
    /// be seen out of order, and the walk would follow a block's old first word). On
    /// x86-64 the fence is no instruction, only a bar to the compiler's reordering.
    @inline(__always)
    @discardableResult
    func pushLocal(_ block: UnsafeMutableRawPointer) -> Int32 {
        block.storeBytes(of: pointee.free, as: UnsafeMutableRawPointer?.self)
        block.storeBytes(of: freedMark, toByteOffset: 8, as: UInt.self)
        pointee.free = block
        atomicMemoryFence(ordering: .releasing)
        let left = pointee.used &- 1
        pointee.used = left
        return left
    }

    /// Moves other threads' frees into `free`; `used` drops by their number. Owner only.
    @inline(__always)
    func collect() {
        if pointee.threadFree.load(ordering: .relaxed) != 0 { collectThreadFree() }
    }

    /// The thread-free word's parts: the stack's head in the low 48 bits (every block lies
    /// in a segment below 2^47, see `SegmentMap`), its length above. A page holds at most
    /// 4,096 blocks, so the count never reaches bit 64.
    static var threadFreeCountShift: UInt { 48 }
    static var threadFreeHeadMask: UInt { (1 << 48) - 1 }

    /// The blocks on the thread-free list: its head (nil when empty) and its length, from
    /// one acquiring read of the word (a snapshot: other threads may push meanwhile).
    func threadFreeSnapshot() -> (head: UnsafeMutableRawPointer?, count: Int) {
        let word = pointee.threadFree.load(ordering: .acquiring)
        return (UnsafeMutableRawPointer(bitPattern: word & Self.threadFreeHeadMask),
                Int(word >> Self.threadFreeCountShift))
    }

    /// Moves other threads' frees into `free` without the cheap emptiness test first: the
    /// adopter of an abandoned page calls it after tagging the page (sequentially
    /// consistent, so no push that read the old owner is missed).
    ///
    /// The word carries the list's length, so joining the two lists walks the shorter one
    /// (none when `free` is empty, the common case on a slow path): the blocks other
    /// threads freed are cold in this thread's cache, and a walk through them is a chain
    /// of dependent misses that malloc's pops would take again.
    @inline(never)
    func collectThreadFree() {
        let word = pointee.threadFree.exchange(0, ordering: .sequentiallyConsistent)
        guard let head = UnsafeMutableRawPointer(bitPattern: word & Self.threadFreeHeadMask) else { return }
        let n = Int(word >> Self.threadFreeCountShift)
        if let local = pointee.free {
            // |free| == capacity − used (the invariant, before this collect).
            let localCount = pointee.capacity - Int(pointee.used)
            if n <= localCount {
                var tail = head
                while let next = tail.load(as: UnsafeMutableRawPointer?.self) { tail = next }
                tail.storeBytes(of: local, as: UnsafeMutableRawPointer?.self)
                pointee.free = head
            } else {
                var tail = local
                while let next = tail.load(as: UnsafeMutableRawPointer?.self) { tail = next }
                tail.storeBytes(of: head, as: UnsafeMutableRawPointer?.self)
            }
        } else {
            pointee.free = head
        }
        pointee.used -= Int32(n)
    }

    /// Pushes a chain of `count` blocks (`first` … `last`, linked through their first word)
    /// freed by a thread that does not own the page. Lock-free: one compare-and-swap for the
    /// whole chain, which also adds `count` to the word's length. Returns true when the
    /// list was empty before (the owner may need a hint).
    @inline(__always)
    func pushThreadFree(first: UnsafeMutableRawPointer, last: UnsafeMutableRawPointer, count: Int) -> Bool {
        var word = pointee.threadFree.load(ordering: .relaxed)
        while true {
            last.storeBytes(of: UnsafeMutableRawPointer(bitPattern: word & Self.threadFreeHeadMask),
                            as: UnsafeMutableRawPointer?.self)
            // Sequentially consistent (on x86 the same lock cmpxchg): with the load of
            // `heap` after it and the abandon/adopt steps (`Heap.detach`,
            // `Heap.reclaimAbandoned`) it orders "pushed, then read owner H" against
            // "owner H abandons the page, then an adopter collects it" — see `sendRemote`.
            let desired = (word & ~Self.threadFreeHeadMask) &+ UInt(count) << Self.threadFreeCountShift
                | UInt(bitPattern: first)
            let r = pointee.threadFree.compareExchange(expected: word, desired: desired, ordering: .sequentiallyConsistent)
            if r.exchanged { return word == 0 }
            word = r.original
        }
    }

    /// Pushes the `count` blocks `first … last` to the page's thread-free list and, when the list was empty,
    /// tells the owning heap (if any) to look at its full pages; and tells the purger
    /// (`Purger.noteOthersFree`).
    ///
    /// Hand-off: once the compare-and-swap has published the blocks, the owner may collect
    /// them, retire the page, empty the segment and give it away; this thread touches none
    /// of those blocks again. It still reads `page.heap` after the CAS (reading it before
    /// could name a heap that abandoned the page meanwhile, and the adopter would never be
    /// told): that is safe because a normal segment is never unmapped (an empty one is
    /// cached or retained with its header mapped, see `Segment.retireEmpty`), so the load
    /// reads mapped memory — the owner, a later owner, 0, or a reformatted page's heap
    /// (a spurious hint costs one scan of that heap's full pages) — and heap records, where
    /// the hint is stored, are never unmapped either.
    func sendRemote(first: UnsafeMutableRawPointer, last: UnsafeMutableRawPointer, count: Int) {
        let wasEmpty = pushThreadFree(first: first, last: last, count: count)
        #if DEBUG
        runRemoteFreeHook()
        #endif
        if wasEmpty {
            // If this reads the heap that is abandoning the page, the push comes before the
            // abandon in the total order, so the adopter's collect (after the abandon) sees
            // it; if it reads the adopter, the hint goes to the adopter.
            let owner = pointee.heap.load(ordering: .sequentiallyConsistent)
            if owner != 0 {
                // Release: an owner whose exchange of the hint reads this 1 sees the push
                // (see `Heap.collectRemoteFrees`). An exchange, not a store: a read-modify-
                // write continues the release sequence of an earlier pusher's 1, so an
                // owner that reads ours also sees that pusher's page (a plain store would
                // cut the sequence: on a weakly ordered CPU the owner could miss the other
                // page, whose list is then never empty again to raise a new hint).
                _ = Heap(UnsafeMutableRawPointer(bitPattern: owner).unsafelyUnwrapped).state.pointee.remotePending
                    .exchange(1, ordering: .releasing)
            }
        }
        // The owner may sleep, or allocate from other classes only, and never collect
        // this page: the purger looks at it (`Heap.releaseOthersFrees`). Every push, not
        // only the first into an empty list: the one that frees a page's last block may
        // come to a list the purger saw already (review R72: a sleeping owner's pages,
        // emptied by a trickle of frees, stayed for good).
        Purger.noteOthersFree()
    }

    #if DEBUG
    /// Debug builds: calls the test hook set with `swm_debug_set_remote_hook`, if any,
    /// with this page, whose blocks were just published.
    @inline(never)
    func runRemoteFreeHook() {
        guard let hook = Globals.remoteFreeHook.pointee else { return }
        typealias Hook = @convention(c) (UnsafeMutableRawPointer?) -> Void
        unsafeBitCast(hook, to: Hook.self)(UnsafeMutableRawPointer(self))
    }
    #endif

    /// The segment that holds this descriptor.
    @inline(__always)
    var segment: UnsafeMutablePointer<Segment> {
        UnsafeMutablePointer<Segment>(bitPattern: UInt(bitPattern: self) & ~Geometry.segmentMask).unsafelyUnwrapped
    }
}
