// Thread-heap layer: free's fast path and its slow path.
//
// Call tree:
//
//   swm_free ── Heap.deallocate ─────────── fast: segment-map test, the slice's descriptor,
//                  │                         owner test, block-start and double-free
//                  │                         tests, push on page.free
//                  └─ Heap.freeSlow ──────── the one exit from the fast path:
//                       ├─ Heap.pageEmptied ─── the last block of a page that is not its
//                       │                       class's only page came back: retire it
//                       ├─ Heap.invalidFree ─── not a swmalloc pointer: abort with it
//                       └─ Heap.deallocateSlow  checks, then: local free to a full or
//                                               large page, or past a class page's first
//                                               slice; another thread's page (atomic
//                                               push); a huge block (cached or unmapped)

import Synchronization

extension Heap {
    /// free's fast path (NULL included). Cost (x86-64, 33 instructions, no frame): the
    /// segment-map test (a shift, a mask, a byte test: `SegmentMap.pagesSegment(maskedFrom:)`),
    /// the descriptor of the pointer's slice (the segment's base shifted back from the
    /// map's index, a shift, a mask, an or: no load, see `Page`'s descriptor invariant and
    /// `Segment`'s layout), the TLS load and the owner test (a compare with memory: `ownerTagPlain`), the block-start
    /// test (a subtraction, a multiply, a rotate, a compare), the double-free test (a
    /// compare with memory), then the push: three stores, the per-class counter and the
    /// used count. No lock, no atomic read-modify-write. Every other case leaves through
    /// one call, `freeSlow`.
    @inline(__always)
    static func deallocate(_ pointer: UnsafeMutableRawPointer?) {
        // The bits as they are (`UInt(bitPattern:)` of an optional tests for nil first).
        let p = unsafeBitCast(pointer, to: UInt.self)
        var emptied: UnsafeMutablePointer<Page>? = nil
        let heap = Heap.current
        if let page = heap.localPage(of: p) {
            if _fastPath(!heap.pushToClassPage(page, pointer.unsafelyUnwrapped)) { return }
            emptied = page
        }
        freeSlow(pointer, emptied: emptied)
    }

    /// The fast path's test: the class page of this heap whose first slice holds the live
    /// block starting at `p`; nil for anything else (outside every segment, another
    /// thread's or a full page, not a block start, already freed, past the first slice).
    /// A page found proves that this is the thread's own heap and that the block's bytes
    /// are mapped.
    @inline(__always)
    func localPage(of p: UInt) -> UnsafeMutablePointer<Page>? {
        guard let page = localClassPage(holding: p),
              _fastPath(page.isBlockStart(p)
                        && UnsafeRawPointer(bitPattern: p).unsafelyUnwrapped.load(fromByteOffset: 8, as: UInt.self)
                            != page.freedMark) else { return nil }
        return page
    }

    /// The class page of this heap whose first slice holds the address `p` (nil for
    /// anything else), without `localPage`'s block tests: VOS_Free's fast path checks a
    /// header keyed on the address instead, which only a live VOS block's start carries
    /// (free overwrites its second word with the freed mark). For `p` below 2^47
    /// (`SegmentMap.inRange`) a page found proves that the bytes at `p` are mapped; above,
    /// the map's index wraps (`SegmentMap.pagesSegment(maskedFrom:)`) and the page found,
    /// if any, holds some other address: a caller reads at `p` only after a test that
    /// fails for such a `p` (free's block-start test) or after testing the range itself
    /// (VOS_Free).
    @inline(__always)
    func localClassPage(holding p: UInt) -> UnsafeMutablePointer<Page>? {
        guard let segment = SegmentMap.pagesSegment(maskedFrom: p) else { return nil }
        let page = segment.descriptor(ofSliceHolding: p)
        guard _fastPath(page.ownerTagPlain == tag) else { return nil }
        return page
    }

    /// Pushes `block` (checked) onto this heap's class-list page `page` and counts it.
    /// Returns true when the page must now be retired or kept (`pageEmptied`): its last
    /// block came back and it is not its class's only page already kept (a malloc/free
    /// loop empties that page on every free, and makes no call).
    ///
    /// It tests the count its own decrement left, not `used` read again: once this free
    /// left only other threads' frees in the page, the purger may collect them and
    /// retire the page (`releaseOthersFrees`), bringing `used` to 0 under this thread
    /// (review R70: a debug build read it again and took the retired page for one it
    /// emptied).
    @inline(__always)
    func pushToClassPage(_ page: UnsafeMutablePointer<Page>, _ block: UnsafeMutableRawPointer) -> Bool {
        state.freeCounter(Int(page.pointee.classIndex)).pointee &+= 1
        return _slowPath(page.pushLocal(block) == 0)
            && (page.pointee.prev != nil || page.pointee.next != nil || !page.pointee.keptEmpty)
    }

    /// free's one exit from the fast path: a page the fast path `emptied`, a pointer
    /// outside every segment, or anything but a plain local free to a page's first slice.
    @inline(never)
    static func freeSlow(_ pointer: UnsafeMutableRawPointer?, emptied: UnsafeMutablePointer<Page>?) {
        if let page = emptied { return Heap.current.pageEmptied(page) }
        guard let block = pointer else { return }
        let kind = SegmentMap.byte(UInt(bitPattern: block))
        if kind == 0 { return invalidFree(pointer) }
        deallocateSlow(block, heap: Heap.current, huge: kind == SegmentMap.huge)
    }

    /// A pointer outside every swmalloc segment: NULL (nothing to do), an over-aligned
    /// huge block (freed), or a pointer never returned by us or a huge block already freed
    /// (abort).
    @inline(never)
    static func invalidFree(_ pointer: UnsafeMutableRawPointer?) {
        guard let pointer else { return }
        if Huge.freeOverAligned(pointer) { return }
        OS.fatal("free(): invalid pointer: not allocated by swmalloc, or already freed", pointer: pointer)
    }

    /// The last block of a page came back. A page that is not its class's only page goes
    /// back to its segment. A class's only page is *kept* (a malloc/free loop must not
    /// retire and format a page on every turn), but only the last `keptMax` pages kept:
    /// keeping one takes the oldest out of the ring and retires it if it is still empty
    /// and alone. So a thread that frees everything and goes to sleep keeps at most
    /// `keptMax` empty pages, not one per size class it ever used, while loops over up to
    /// `keptMax` classes make no call at all once their pages are kept.
    ///
    /// Pages of more than one slice (blocks above 8 KiB: 2 … 16 slices) have a ring of
    /// their own (`keepWide`), one slot per class, bounded by the memory its empty pages
    /// may hold resident: in the shared ring, 64 of them could keep 64 MiB per sleeping
    /// thread (4 threads that used every class once kept 40 MB, 35 MB of it in these
    /// pages).
    ///
    /// Links are read and changed under the span lock: the purger unlinks and retires
    /// class pages behind a head that other threads emptied (`releaseOthersFrees`). Under
    /// it, the page must still be this heap's empty class page: a page whose last block
    /// this thread freed while the purger retired it is left alone.
    @inline(never)
    func pageEmptied(_ page: UnsafeMutablePointer<Page>) {
        spanLock.lock()
        if page.pointee.kind != .small || page.pointee.ownerTag.load(ordering: .relaxed) != tag
            || page.pointee.used != 0 {
            spanLock.unlock()
            return
        }
        if page.pointee.prev != nil || page.pointee.next != nil {
            unlinkClass(page)
            retire(page, now: OS.nowNanoseconds())
            spanLock.unlock()
            return
        }
        spanLock.unlock()
        let s = state
        if page.pointee.sliceCount > 1 { return keepWide(page) }
        let slot = s.pointee.keptNext
        if let old = s.pointee.kept[slot], old != page { releaseKept(old) }
        s.pointee.kept[slot] = page
        s.pointee.keptNext = (slot + 1) & (Heap.keptMax - 1)
        page.pointee.keptEmpty = true
    }

    /// Keeps `page`, an emptied only page of more than one slice, in the wide ring: it
    /// takes the next slot (releasing its page). Then, while the ring's empty pages may
    /// hold more than `keptWideBytes` resident (`keptResidentBytes`), the never-used ends
    /// of their spans go back to the OS, oldest page first (their blocks stay formatted;
    /// once only, see `Page.untouchedTail`), and then the oldest pages are released.
    ///
    /// The bound is on memory, not pages: a program that grows blocks through every class
    /// above 8 KiB (realloc by 1.5×, vectors by 2×) touches one or two blocks of each
    /// class's page and keeps them all, with at most 4 MiB resident; with a bound of 8
    /// pages or 4 MiB of spans it retired and set up a page at almost every step
    /// (`realloc-chain`: 9.7 pages set up per chain; now 84 in all, 0.120 → 0.074 s).
    private func keepWide(_ page: UnsafeMutablePointer<Page>) {
        let s = state
        var present = false
        for i in 0..<Heap.keptWideMax where s.pointee.keptWide[i] == page { present = true }
        if !present {
            let slot = s.pointee.keptWideNext
            if let old = s.pointee.keptWide[slot] { releaseKept(old) }
            s.pointee.keptWide[slot] = page
            s.pointee.keptWideNext = (slot + 1) % Heap.keptWideMax
        }
        page.pointee.keptEmpty = true
        var held = 0
        for i in 0..<Heap.keptWideMax {
            if let other = s.pointee.keptWide[i], isKeptEmpty(other) { held += keptResidentBytes(other) }
        }
        var slot = s.pointee.keptWideNext
        while held > Heap.keptWideBytes {
            if let other = s.pointee.keptWide[slot], isKeptEmpty(other), !other.pointee.untouchedTail {
                held -= keptResidentBytes(other)
                purgeTail(other)
                held += keptResidentBytes(other)
            }
            slot = (slot + 1) % Heap.keptWideMax
            if slot == s.pointee.keptWideNext { break }
        }
        while held > Heap.keptWideBytes {
            if let other = s.pointee.keptWide[slot], other != page, isKeptEmpty(other) {
                held -= keptResidentBytes(other)
                releaseKept(other)
                s.pointee.keptWide[slot] = nil
            }
            slot = (slot + 1) % Heap.keptWideMax
            if slot == s.pointee.keptWideNext { break }
        }
    }

    /// The most a kept empty page may hold resident: the blocks it ever handed out (whole
    /// OS pages), or its whole span while the rest may still be resident from the span's
    /// earlier use.
    func keptResidentBytes(_ page: UnsafeMutablePointer<Page>) -> Int {
        page.pointee.untouchedTail ? touchedBytes(page) : page.pointee.sliceCount << Geometry.sliceShift
    }

    /// Bytes from the start of `page`'s span through its last block ever handed out, in
    /// whole OS pages (at most the span).
    private func touchedBytes(_ page: UnsafeMutablePointer<Page>) -> Int {
        let span = page.pointee.sliceCount << Geometry.sliceShift
        let touched = OS.wholePages(page.pointee.capacity * Int(page.pointee.blockSize))
        return touched < span ? touched : span
    }

    /// Gives back the part of kept empty page `page`'s span past its blocks handed out so
    /// far. No one else touches it: no block there was ever handed out (a stray pointer
    /// into it fails every free's block-start test without a write), and the owner touches
    /// it again only when `extend` threads more blocks, as it would touch fresh memory.
    private func purgeTail(_ page: UnsafeMutablePointer<Page>) {
        let span = page.pointee.sliceCount << Geometry.sliceShift
        let touched = touchedBytes(page)
        if touched < span { OSMemory.purge(page.pointee.start.unsafelyUnwrapped + touched, span - touched) }
        page.pointee.untouchedTail = true
    }

    /// True when `page`, found in a kept ring, is still one of this heap's kept pages: the
    /// owner tag tells that it is still this heap's page (its descriptor may have been
    /// formatted again since it entered the ring; `keptEmpty` is cleared then).
    private func isKept(_ page: UnsafeMutablePointer<Page>) -> Bool {
        page.pointee.keptEmpty && page.pointee.ownerTag.load(ordering: .relaxed) & ~1 == tag
    }

    /// True when `page` is still kept and holds no block.
    private func isKeptEmpty(_ page: UnsafeMutablePointer<Page>) -> Bool {
        isKept(page) && page.pointee.used == 0
    }

    /// Takes `old` out of a kept ring: retired if it is still this heap's kept page, empty
    /// and its class's only page.
    private func releaseKept(_ old: UnsafeMutablePointer<Page>) {
        guard isKept(old) else { return }
        old.pointee.keptEmpty = false
        if old.pointee.used == 0 && old.pointee.prev == nil && old.pointee.next == nil
            && !old.pointee.inFullList && self.page(class: Int(old.pointee.classIndex)) == old {
            spanLock.lock()
            unlinkClass(old)
            retire(old, now: OS.nowNanoseconds())
            spanLock.unlock()
        }
    }

    /// Emptied only pages a heap keeps (a power of two, the size of `HeapState.kept`).
    static let keptMax = 64

    /// Emptied only pages of more than one slice a heap keeps (`HeapState.keptWide`): one
    /// per class above 8 KiB; and the most memory they may hold resident: 4 MiB. With
    /// 1 MiB, a loop over four classes of 20 … 120 KiB (38 slices of pages) retired and
    /// formatted a page on every call: 15 → 240 ns per malloc/free pair.
    static let keptWideMax = 32
    static let keptWideBytes = 4 << 20

    /// free's slow path: checks the pointer, then frees it by its kind and owner.
    @inline(never)
    static func deallocateSlow(_ pointer: UnsafeMutableRawPointer, heap: Heap, huge: Bool) {
        // A thread that only frees gets a heap too: its remote frees are then batched and
        // counted in its own counters instead of process-wide atomics (the parked heap
        // that owns the block, if any: see `attach`). Not a thread whose heap was detached
        // at its exit: nothing would detach a new one.
        let p = UInt(bitPattern: pointer)
        let segment = UnsafeMutablePointer<Segment>.of(p)
        // A huge mapping's header is read only once `Huge.free` has claimed it: another
        // thread freeing the same block at once may unmap it.
        let heap = heap.isEmpty && !heap.isExited
            ? (Heap.attach(registerExit: true, parked: huge ? .fresh : .owner(pointer)) ?? heap)
            : heap
        if huge {
            Huge.free(pointer, segment: segment, heap: heap)
            return
        }
        let page = segment.page(containing: p)
        let kind = page.pointee.kind
        if kind != .small && kind != .large {
            OS.fatal("free(): invalid pointer: not in an allocated block (or already freed)", pointer: pointer)
        }
        if !page.isBlockStart(p) {
            if Extensions.freeInterior(pointer) { return }
            // A VOS block's pointer given to free() a second time: its block carries the
            // freed mark (before, this said "not the start of an allocated block"). A plain
            // program's pointer 16 bytes into a freed block gets the same words.
            let start = p &- UInt(Extensions.interiorOffset)
            if page.isBlockStart(start),
               UnsafeRawPointer(bitPattern: start).unsafelyUnwrapped.load(fromByteOffset: 8, as: UInt.self) == page.freedMark {
                OS.fatal("free(): double free of a VOS block's pointer, or a pointer 16 bytes into a freed block",
                         pointer: pointer)
            }
            OS.fatal("free(): invalid pointer: not the start of an allocated block", pointer: pointer)
        }
        let mark = page.freedMark
        if pointer.load(fromByteOffset: 8, as: UInt.self) == mark {
            OS.fatal("free(): double free detected", pointer: pointer)
        }
        if page.pointee.ownerTag.load(ordering: .relaxed) == heap.tag {
            // A class page of ours: the block lies past the page's first slice.
            if heap.pushToClassPage(page, pointer) { heap.pageEmptied(page) }
            return
        }
        let size = UInt(page.pointee.blockSize)
        if !heap.isEmpty {
            if kind == .large {
                heap.state.pointee.bigFreed &+= size
                heap.state.pointee.bigFrees &+= 1
            } else {
                heap.state.freeCounter(Int(page.pointee.classIndex)).pointee &+= 1
            }
        } else {
            Stats.countOrphanFree(kind: kind, classIndex: Int(page.pointee.classIndex), size: size)
        }
        if page.pointee.ownerTag.load(ordering: .relaxed) == (heap.tag | 1) {
            // Our own full or large page: under the span lock, as every step on a full page
            // (another thread may retire it, see `releaseOthersFrees`).
            heap.spanLock.lock()
            page.pushLocal(pointer)
            heap.unlinkFull(page)
            if page.pointee.used == 0 {
                heap.retire(page, now: OS.nowNanoseconds())
            } else {
                heap.appendClass(page)
            }
            heap.spanLock.unlock()
            return
        }
        // Another thread's page, or an abandoned one. A large block is sent at once: a
        // batch waits for the next block to the same page, and a thread that then goes
        // idle would keep a whole large page from its owner.
        pointer.storeBytes(of: mark, toByteOffset: 8, as: UInt.self)
        if heap.isEmpty || kind == .large {
            page.sendRemote(first: pointer, last: pointer, count: 1)
        } else {
            heap.batchRemote(pointer, page: page)
        }
    }

    /// Most blocks a thread chains for one remote page before sending them, and most bytes
    /// it holds back in all its batches: an idle thread keeps at most that much of other
    /// threads' memory from coming back.
    static let remoteBatchMax = 64
    static let remoteBatchBytes = 32 * 1024

    /// The batch slot of `page`'s blocks: its class, folded onto the 32 slots. The classes up
    /// to 1 KiB (0 … 31) have a slot each, so a thread that frees blocks of mixed sizes
    /// that other threads allocated (a consumer of a producer's messages, larson) batches
    /// each class's current page apart: with one batch for the last page, a batch changed
    /// at almost every free of such a stream, one atomic operation per block.
    @inline(__always)
    static func batchSlot(_ page: UnsafeMutablePointer<Page>) -> Int { Int(page.pointee.classIndex) & 31 }

    /// Adds a block freed into another thread's small page to this heap's remote batch of
    /// that page. The slot's batch is sent first when it holds another page's blocks or
    /// `remoteBatchMax` blocks; all batches are sent when they hold more than
    /// `remoteBatchBytes`, on this thread's malloc slow path, and at its exit.
    ///
    /// The owner cannot retire or format `page` while a batch holds its blocks: they still
    /// count in its `used`, so it does not empty until they are sent.
    @inline(__always)
    func batchRemote(_ block: UnsafeMutableRawPointer, page: UnsafeMutablePointer<Page>) {
        let s = state
        let slot = Heap.batchSlot(page)
        if s.pointee.batches[slot].page != page || s.pointee.batches[slot].count == Heap.remoteBatchMax {
            sendRemoteBatch(slot)
            s.pointee.batches[slot].page = page
            s.pointee.batches[slot].last = block
        }
        block.storeBytes(of: s.pointee.batches[slot].first, as: UnsafeMutableRawPointer?.self)
        s.pointee.batches[slot].first = block
        s.pointee.batches[slot].count += 1
        s.pointee.batchedBytes += Int(page.pointee.blockSize)
        if s.pointee.batchedBytes > Heap.remoteBatchBytes { sendRemoteBatches() }
    }

    /// Sends every remote batch to its page.
    func sendRemoteBatches() {
        for slot in 0..<32 where state.pointee.batches[slot].page != nil { sendRemoteBatch(slot) }
    }

    /// Sends the remote batch of slot `slot`, if any, to its page.
    private func sendRemoteBatch(_ slot: Int) {
        let s = state
        guard let page = s.pointee.batches[slot].page else { return }
        let count = s.pointee.batches[slot].count
        s.pointee.batchedBytes -= count &* Int(page.pointee.blockSize)
        page.sendRemote(first: s.pointee.batches[slot].first.unsafelyUnwrapped,
                        last: s.pointee.batches[slot].last.unsafelyUnwrapped, count: count)
        s.pointee.batches[slot] = RemoteBatch(page: nil, first: nil, last: nil, count: 0)
    }
}
