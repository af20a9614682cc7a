// Thread-heap layer: the heap record and its lists.

import CSwmShim
import Synchronization

/// A thread's heap: one record per thread, reached by one TLS load.
///
/// Record layout (8 KiB, from a pool of records that is never unmapped, so a stale heap
/// address read by another thread is always safe memory):
///
///     +0      direct page table: 122 page pointers (`SizeClass.directSlots`), each the
///             head of its class's page list (the empty page when the list is empty;
///             the last slot is always empty)
///     +1024   HeapState
///     +8128   the span lock's futex word (see `spanLock`), on a cache line of its own
///
/// The direct table is what malloc's fast path indexes; the shim's `swmshim_empty_heap`
/// has the same first 122 words, so a thread without a heap takes the slow path through
/// the same single test.
struct Heap {
    /// The record's address (also the owner tag stored in its pages).
    let raw: UnsafeMutableRawPointer

    @inline(__always) init(_ raw: UnsafeMutableRawPointer) { self.raw = raw }

    static let stateOffset = 1024
    static let spanLockOffset = 8128
    static let recordSize = 8192

    /// Guards this heap's spans and segment lists against the purger. The owner holds it
    /// on every slow path that takes or returns spans (`slowPath`, a page emptied by
    /// free, `swm_collect`, `detach`), never on a fast path; the purger and other threads'
    /// `swm_collect` only *try* it, and skip a heap whose owner is busy (that owner purges
    /// its own spans). The owner changes class lists' links and heads only under it;
    /// its fast paths push and pop on page free lists without it. Another thread that
    /// holds it may also collect and retire a full page or a class page behind its head
    /// whose every block other threads freed (`releaseOthersFrees`), never a head.
    @inline(__always)
    var spanLock: FutexLock { FutexLock((raw + Heap.spanLockOffset).assumingMemoryBound(to: UInt32.self)) }

    /// The current thread's heap (the empty heap until its first allocation).
    @inline(__always)
    static var current: Heap { Heap(swmshim_heap_get().unsafelyUnwrapped) }

    /// The shared empty page every empty direct slot points at.
    @inline(__always)
    static var emptyPage: UnsafeMutablePointer<Page> {
        swmshim_empty_heap_address().load(as: UnsafeMutablePointer<Page>.self)
    }

    /// True when the thread has no heap: it has not allocated yet (the shim's empty heap),
    /// or its heap was detached at its exit (the exited heap).
    @inline(__always)
    var isEmpty: Bool { raw == swmshim_empty_heap_address() || raw == swmshim_exited_heap_address() }

    /// True for the exited heap: the thread's key destructor ran, and a heap attached now
    /// would never be detached (see `Heap.withHeapOnce`).
    @inline(__always)
    var isExited: Bool { raw == swmshim_exited_heap_address() }

    /// The owner tag of this heap's pages.
    @inline(__always)
    var tag: UInt { UInt(bitPattern: raw) }

    @inline(__always)
    var state: UnsafeMutablePointer<HeapState> {
        (raw + Heap.stateOffset).assumingMemoryBound(to: HeapState.self)
    }

    /// The page direct slot `slot` points at (malloc's fast path).
    @inline(__always)
    func page(slot: Int) -> UnsafeMutablePointer<Page> {
        raw.load(fromByteOffset: slot &<< 3, as: UnsafeMutablePointer<Page>.self)
    }

    /// Head of class `c`'s page list.
    @inline(__always)
    func page(class c: Int) -> UnsafeMutablePointer<Page> { page(slot: SizeClass.slot(ofClass: c)) }

    /// Makes `page` the head of class `c`'s page list, in every slot of the class.
    @inline(__always)
    func setPage(class c: Int, _ page: UnsafeMutablePointer<Page>) {
        for slot in SizeClass.slots(ofClass: c) {
            raw.storeBytes(of: page, toByteOffset: slot &<< 3, as: UnsafeMutablePointer<Page>.self)
        }
    }

    static func checkLayout() {
        if SizeClass.directSlots > Heap.stateOffset / 8 || Int(SWM_DIRECT_SLOTS) != SizeClass.directSlots
            || Heap.stateOffset + MemoryLayout<HeapState>.size > Heap.spanLockOffset
            || Int(SWM_CLASS_COUNT) != SizeClass.count {
            OS.fatal("internal error: heap record layout does not fit", pointer: nil)
        }
    }
}

/// Blocks freed by one thread into another thread's page, chained through their first
/// word and not yet sent to it: `first` … `last`, `count` blocks, all of `page`.
struct RemoteBatch {
    var page: UnsafeMutablePointer<Page>?
    var first: UnsafeMutableRawPointer?
    var last: UnsafeMutableRawPointer?
    var count: Int
}

/// The heap's state after its direct page table. Only the owning thread writes it, except
/// `remotePending`; other threads read the counters for statistics.
struct HeapState: ~Copyable {
    /// Small allocations by this thread per direct slot (malloc's fast path counts here;
    /// `classAllocs` sums a class's slots).
    var slotAllocs: InlineArray<122, UInt>
    /// Small frees per size class by this thread, its own blocks or others'.
    var classFrees: InlineArray<88, UInt>
    /// Bytes of large and huge blocks allocated / freed by this thread.
    var bigAllocated: UInt
    var bigFreed: UInt
    /// Large and huge blocks allocated / freed by this thread.
    var bigAllocs: UInt
    var bigFrees: UInt
    /// Last page of each class list (nil when the list is empty): a full page that gets a
    /// block back joins its class list at the end (`appendClass`).
    var classTails: InlineArray<88, UnsafeMutablePointer<Page>?>
    /// Pages with no free block (and large pages), outside the class lists.
    var fullPages: UnsafeMutablePointer<Page>?
    /// Segments with free slices, and segments without.
    var segments: UnsafeMutablePointer<Segment>?
    var fullSegments: UnsafeMutablePointer<Segment>?
    /// One empty segment kept mapped (purged after the delay) to avoid map/unmap churn.
    var spare: UnsafeMutablePointer<Segment>?
    /// Segments on the two lists above (`linkSegment`, `unlinkSegment`).
    var segmentCount: Int
    /// A segment of `segments` where the next walk for resident memory starts, in a heap
    /// with more segments than one walk visits (`Heap.takeOwnSpan`); nil: the head.
    var segmentCursor: UnsafeMutablePointer<Segment>?
    /// Set (by other threads) when a full page got its first remote free.
    let remotePending: Atomic<UInt>
    /// Blocks this thread freed into other threads' small pages, not yet sent: one batch
    /// per slot, the slot chosen by the page's class (`Heap.batchSlot`), each sent to its
    /// page with one atomic operation (see `Heap.batchRemote` for when).
    var batches: InlineArray<32, RemoteBatch>
    /// Bytes of blocks in all batches: Σ over slots of count × the page's block size.
    var batchedBytes: Int
    /// Slices of this heap's pages in use, and their high-water mark since the last purge
    /// that a fall in use triggered (see `Heap.retire`). Pages of adopted segments count
    /// from their adoption.
    var activeSlices: Int
    var activePeak: Int
    /// Some free span waits for its purge delay.
    var purgeWaiting: Bool
    /// Earliest time of the next purge pass.
    var nextPurge: UInt64
    /// Registry links (all live heaps, under `Globals.heapsLock`).
    var nextLive: UnsafeMutableRawPointer?
    var prevLive: UnsafeMutableRawPointer?
    /// Extension data (VOS per-thread module counters), owned by the extension.
    var extensionData: UnsafeMutableRawPointer?
    /// The last `Heap.keptMax` class pages kept when they emptied as their class's only
    /// page (a ring; `keptNext` is the next slot to reuse). See `Heap.pageEmptied`.
    var kept: InlineArray<64, UnsafeMutablePointer<Page>?>
    var keptNext: Int
    /// The same for pages of more than one slice (classes above 8 KiB), bounded by the
    /// memory they may hold resident too (`Heap.keptWideBytes`); `keptWideNext` is the
    /// next slot to reuse.
    var keptWide: InlineArray<32, UnsafeMutablePointer<Page>?>
    var keptWideNext: Int
    /// Slow paths left before the next periodic housekeeping (see `Heap.maintain`).
    var periodicCountdown: Int
    /// Raised by another thread's `swm_collect`: at its next slow path the owner sends its
    /// remote batches and retires its empty class pages (only the owner may touch those).
    let collectRequested: Atomic<UInt>
    /// Parked: its thread exited and the heap waits, whole, for a new thread (see
    /// `Heap.park`); when, and the parked list's link (under `Globals.heapsLock`).
    var parked: Bool
    var parkedAt: UInt64
    /// In a fork child: the heap of a thread that was not copied, to be let go
    /// (`Heap.reclaimForkOrphans`); set in `Process.forkChild`, while the child has one
    /// thread.
    var forkOrphan: Bool
    var nextParked: UnsafeMutableRawPointer?
    /// The thread whose exit handler will give this heap up: its process id << 32 | its
    /// kernel thread id (0: none — parked, or attached for one call), under
    /// `Globals.heapsLock` (see `Heap.reapDeadOwners`).
    var ownerTask: UInt64
    /// The class list the periodic sweep looks at next (`Heap.sweepClasses`; any value
    /// is taken modulo the class count).
    var sweepClass: Int
}

extension UnsafeMutablePointer where Pointee == HeapState {
    /// Allocation counter of direct slot `slot`.
    @inline(__always)
    func allocCounter(slot: Int) -> UnsafeMutablePointer<UInt> {
        UnsafeMutableRawPointer(self).assumingMemoryBound(to: UInt.self) + slot
    }
    /// Allocations of class `c`: the sum of its slots' counters.
    func classAllocs(_ c: Int) -> UInt {
        var n: UInt = 0
        for slot in SizeClass.slots(ofClass: c) { n &+= allocCounter(slot: slot).pointee }
        return n
    }
    /// Free counter of class `c`.
    @inline(__always)
    func freeCounter(_ c: Int) -> UnsafeMutablePointer<UInt> {
        UnsafeMutableRawPointer(self).assumingMemoryBound(to: UInt.self) + SizeClass.directSlots + c
    }
}

// MARK: - Page lists

extension Heap {
    /// Puts `page` at the head of its class list (it becomes the page malloc serves from).
    func pushClass(_ page: UnsafeMutablePointer<Page>) {
        let c = Int(page.pointee.classIndex)
        let head = self.page(class: c)
        page.pointee.prev = nil
        page.pointee.next = head == Heap.emptyPage ? nil : head
        if head != Heap.emptyPage { head.pointee.prev = page } else { state.pointee.classTails[c] = page }
        setPage(class: c, page)
        page.pointee.inFullList = false
        page.pointee.ownerTag.store(tag, ordering: .relaxed)
    }

    /// Puts `page` at the end of its class list: a full page that got a block back. At the
    /// head it would serve the next malloc with that one block, go full again at once and
    /// come back on the next free, a slow path on each side for every block; at the end it
    /// gathers frees until the pages before it are used up (mimalloc puts such pages at the
    /// end too). alloc-test 1 (mimalloc-bench): 7.2–8.6 s → 5.0–5.5 s.
    func appendClass(_ page: UnsafeMutablePointer<Page>) {
        let c = Int(page.pointee.classIndex)
        guard let tail = state.pointee.classTails[c] else { return pushClass(page) }
        page.pointee.prev = tail
        page.pointee.next = nil
        tail.pointee.next = page
        state.pointee.classTails[c] = page
        page.pointee.inFullList = false
        page.pointee.ownerTag.store(tag, ordering: .relaxed)
    }

    /// Takes `page` out of its class list.
    func unlinkClass(_ page: UnsafeMutablePointer<Page>) {
        let c = Int(page.pointee.classIndex)
        if let prev = page.pointee.prev { prev.pointee.next = page.pointee.next }
        else { setPage(class: c, page.pointee.next ?? Heap.emptyPage) }
        if let next = page.pointee.next { next.pointee.prev = page.pointee.prev }
        else { state.pointee.classTails[c] = page.pointee.prev }
        page.pointee.next = nil
        page.pointee.prev = nil
    }

    /// Puts `page` on the full list; frees to it then take the slow path (tag | 1).
    ///
    /// A page kept empty and then filled again may still sit in a kept ring: it stops
    /// being a kept page here (keptEmpty ⇒ not on the full list). The purger retires
    /// full-list pages that other threads emptied (`releaseOthersFrees`, under the span
    /// lock), while the owner reads its rings without that lock: found there still marked
    /// kept, with `used` just brought to 0 by the purger, the page passed for a kept empty
    /// one, and the owner could purge its span (`purgeTail`) after the purger had given
    /// the span back (an outside review, read in the code).
    func pushFull(_ page: UnsafeMutablePointer<Page>) {
        let s = state
        page.pointee.keptEmpty = false
        page.pointee.prev = nil
        page.pointee.next = s.pointee.fullPages
        s.pointee.fullPages?.pointee.prev = page
        s.pointee.fullPages = page
        page.pointee.inFullList = true
        page.pointee.ownerTag.store(tag | 1, ordering: .relaxed)
    }

    /// Takes `page` out of the full list.
    func unlinkFull(_ page: UnsafeMutablePointer<Page>) {
        if let prev = page.pointee.prev { prev.pointee.next = page.pointee.next }
        else { state.pointee.fullPages = page.pointee.next }
        if let next = page.pointee.next { next.pointee.prev = page.pointee.prev }
        page.pointee.next = nil
        page.pointee.prev = nil
    }
}

// MARK: - Segment lists

extension Heap {
    /// Head of the available (`full == false`) or full segment list.
    private func segmentHead(full: Bool) -> UnsafeMutablePointer<Segment>? {
        full ? state.pointee.fullSegments : state.pointee.segments
    }

    private func setSegmentHead(full: Bool, _ seg: UnsafeMutablePointer<Segment>?) {
        if full { state.pointee.fullSegments = seg } else { state.pointee.segments = seg }
    }

    /// Adds `seg` to the available or the full segment list, by its free slices.
    func linkSegment(_ seg: UnsafeMutablePointer<Segment>) {
        let full = seg.pointee.usedSlices == Geometry.usableSlices
        let head = segmentHead(full: full)
        seg.pointee.isFull = full
        seg.pointee.prev = nil
        seg.pointee.next = head
        head?.pointee.prev = seg
        setSegmentHead(full: full, seg)
        state.pointee.segmentCount += 1
    }

    /// Removes `seg` from its segment list.
    func unlinkSegment(_ seg: UnsafeMutablePointer<Segment>) {
        if seg == state.pointee.segmentCursor { state.pointee.segmentCursor = seg.pointee.next }
        if let prev = seg.pointee.prev { prev.pointee.next = seg.pointee.next }
        else { setSegmentHead(full: seg.pointee.isFull, seg.pointee.next) }
        if let next = seg.pointee.next { next.pointee.prev = seg.pointee.prev }
        seg.pointee.next = nil
        seg.pointee.prev = nil
        state.pointee.segmentCount -= 1
    }

    /// Moves `seg` to the right list after its free slices changed.
    func relinkSegment(_ seg: UnsafeMutablePointer<Segment>) {
        if seg.pointee.isFull != (seg.pointee.usedSlices == Geometry.usableSlices) {
            unlinkSegment(seg)
            linkSegment(seg)
        }
    }
}
