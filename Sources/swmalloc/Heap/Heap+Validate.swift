// Thread-heap layer: the invariant checker (swm_validate; run at every thread exit in
// debug builds, and by the stress tests).

import Synchronization

extension Heap {
    /// Checks this heap (the caller's own) against its invariants and returns the number
    /// of violations, printing one line for each:
    ///
    ///  segments   seg.heap == self; the segment map has it; spans tile slices 1…63
    ///             (Σ sliceCount == 63, sliceMap[s] == first slice of s's span);
    ///             usedSlices == Σ sliceCount of non-free spans; isFull == (usedSlices == 63);
    ///             descriptors inside a span (not its first) have ownerTag == 0;
    ///             ownerTagPlain == ownerTag (the fast path's plain load reads the field)
    ///  pages      used == capacity − |free|; |threadFree| ≤ used (snapshot), and
    ///             |threadFree| == the count in the word's top bits;
    ///             capacity ≤ reserved; every listed block is a block start of the page
    ///             and carries the freed mark;
    ///             small: blockSize == SizeClass.blockSize(classIndex)
    ///  lists      class list c holds pages of class c tagged self, and classTails[c] is
    ///             its last page; the full list holds pages tagged self|1; every non-free
    ///             page is on exactly one list
    func validate() -> Int {
        var errors = 0
        var listed = 0
        for c in 0..<SizeClass.count {
            var cursor = page(class: c)
            var prev: UnsafeMutablePointer<Page>? = nil
            while cursor != Heap.emptyPage {
                let page = cursor
                if page.pointee.kind != .small || Int(page.pointee.classIndex) != c || page.pointee.inFullList
                    || page.pointee.ownerTag.load(ordering: .relaxed) != tag || page.pointee.prev != prev {
                    errors += report("page in a class list is not a small page of that class tagged with its heap", page)
                }
                if page.ownerTagPlain != page.pointee.ownerTag.load(ordering: .relaxed) {
                    errors += report("Page.ownerTagOffset is not where the descriptor keeps its owner tag", page)
                }
                listed += 1
                prev = page
                cursor = page.pointee.next ?? Heap.emptyPage
            }
            if state.pointee.classTails[c] != prev {
                errors += report("a class list's tail is not its last page", prev)
            }
        }
        if page(slot: SizeClass.overflowSlot) != Heap.emptyPage {
            errors += report("overflow slot does not point at the empty page", nil)
        }
        for c in 0..<SizeClass.count {
            for slot in SizeClass.slots(ofClass: c) where page(slot: slot) != page(class: c) {
                errors += report("a class's direct slots point at different pages", page(class: c))
            }
        }
        var full = state.pointee.fullPages
        while let page = full {
            if !page.pointee.inFullList || page.pointee.ownerTag.load(ordering: .relaxed) != tag | 1 {
                errors += report("page in the full list is not tagged as full", page)
            }
            if page.pointee.keptEmpty {
                errors += report("page in the full list is marked as a kept empty page", page)
            }
            listed += 1
            full = page.pointee.next
        }
        var pages = 0
        var segments = 0
        var cursorListed = state.pointee.segmentCursor == nil
        for pass in 0..<2 {
            var cursor = pass == 0 ? state.pointee.segments : state.pointee.fullSegments
            while let seg = cursor {
                if pass == 0 && seg == state.pointee.segmentCursor { cursorListed = true }
                errors += validate(segment: seg, full: pass == 1, pages: &pages)
                segments += 1
                cursor = seg.pointee.next
            }
        }
        if pages != listed { errors += report("pages in segments differ from pages on lists", nil) }
        // segmentCount = |segments| + |fullSegments|
        if segments != state.pointee.segmentCount { errors += report("segment count differs from the lists", nil) }
        // segmentCursor ∈ segments ∪ {nil}
        if !cursorListed { errors += report("resident walk's cursor is not on the segment list", nil) }
        return errors
    }

    private func validate(segment seg: UnsafeMutablePointer<Segment>, full: Bool, pages: inout Int) -> Int {
        var errors = 0
        if seg.pointee.heap != raw || !SegmentMap.contains(UInt(bitPattern: seg)) || seg.pointee.isFull != full {
            errors += report("segment not owned by its heap, not in the segment map, or on the wrong list", nil)
        }
        var i = 1
        var used = 0
        while i < Geometry.slicesPerSegment {
            let span = seg.page(at: i)
            let count = span.pointee.sliceCount
            if count <= 0 || span.pointee.sliceIndex != i || i + count > Geometry.slicesPerSegment {
                return errors + report("spans do not tile the segment", span)
            }
            for s in i..<(i + count) {
                let address = UInt(bitPattern: seg) + UInt(s << Geometry.sliceShift)
                if seg.page(containing: address) != span { errors += report("slice map points outside its span", span) }
                if s != i && seg.page(at: s).pointee.ownerTag.load(ordering: .relaxed) != 0 {
                    errors += report("a descriptor inside a span carries an owner tag", span)
                }
            }
            if span.pointee.kind != .freeSpan {
                used += count
                pages += 1
                errors += validate(page: span)
            }
            i += count
        }
        if used != seg.pointee.usedSlices { errors += report("usedSlices differs from the pages' slices", nil) }
        if seg.pointee.isFull != (used == Geometry.usableSlices) { errors += report("segment on the wrong list", nil) }
        return errors
    }

    private func validate(page: UnsafeMutablePointer<Page>) -> Int {
        var errors = 0
        if page.pointee.kind == .small && Int(page.pointee.blockSize) != SizeClass.blockSize(Int(page.pointee.classIndex)) {
            errors += report("small page's block size differs from its class", page)
        }
        if page.pointee.capacity > Int(page.pointee.reserved) {
            errors += report("page capacity exceeds its reserve", page)
        }
        let threadList = page.threadFreeSnapshot()
        let threadHead = threadList.head
        var counts = (0, 0)
        for list in 0..<2 {
            var block = list == 0 ? page.pointee.free : threadHead
            var n = 0
            while let b = block {
                if !page.isBlockStart(UInt(bitPattern: b)) { return errors + report("free list holds a pointer that is not a block of its page", page) }
                if b.load(fromByteOffset: 8, as: UInt.self) != page.freedMark {
                    return errors + report("a block on a free list lacks the freed mark", page)
                }
                n += 1
                if n > Int(page.pointee.capacity) { return errors + report("a free list holds more blocks than the page's capacity (cycle?)", page) }
                block = b.load(as: UnsafeMutableRawPointer?.self)
            }
            if list == 0 { counts.0 = n } else { counts.1 = n }
        }
        // A fork orphan's page may be off by one block: its owner's fast path may have been
        // cut between the list update and the count (see `Heap.reclaimForkOrphans`).
        let drift = Int(page.pointee.used) - (Int(page.pointee.capacity) - counts.0)
        if drift != 0 && !(page.pointee.forkOrphaned && (drift == 1 || drift == -1)) {
            errors += report("used != capacity - |free|", page)
        }
        if counts.1 > Int(page.pointee.used) { errors += report("|threadFree| > used", page) }
        // The list below a head read once never changes (pushes go on top of it).
        if counts.1 != threadList.count { errors += report("thread-free count differs from its list", page) }
        return errors
    }

    /// Prints one violation and returns 1.
    private func report(_ message: StaticString, _ page: UnsafeMutablePointer<Page>?) -> Int {
        OS.reportLine("validate: ", message, label: "page", value: page.map { UnsafeRawPointer($0) })
        return 1
    }
}
