// Thread-heap layer: malloc's fast path and its slow path.
//
// Call tree:
//
//   swm_malloc ── Heap.allocate ─────────────── fast: TLS load, size-class slot, pop page.free
//                      └─ Heap.allocateSlow ─── @inline(never): no heap yet, page empty, size 0,
//                            │                   large or huge
//                            ├─ Heap.attach ───── first allocation of the thread
//                            ├─ findPage ──────── collect frees → extend page → full list →
//                            │                    fresh page (acquireSpan: own segment,
//                            │                    abandoned segment, new segment)
//                            ├─ allocateLarge ─── one block in a span of 64 KiB slices
//                            └─ Huge.allocate ─── its own mapping

import Synchronization

import CSwmShim

extension Heap {
    /// malloc's fast path. Cost: one TLS load, the direct slot (up to 1 KiB a compare, an
    /// add and a shift; above, a shift, a compare and a byte load), two loads to reach the
    /// page's free list, one unlikely exit (two branches: the list is empty, or its first
    /// block lacks the freed mark), then the pop: three stores (page.free, the block's
    /// freed-mark word, the page's used count), the slot's counter and a prefetch of the
    /// next block (see `pop`). No lock, no atomic. 19 instructions up to 1 KiB, 25 above.
    @inline(__always)
    static func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        guard let block = Heap.current.allocateFast(size) else { return allocateSlow(size) }
        return block
    }

    /// The fast path's pop: a block of `size` bytes from this heap's direct slot, nil when
    /// its page has none (then `allocateSlow`). A block found proves that this is the
    /// thread's own heap: the empty and exited heaps' slots all point at the empty page.
    @inline(__always)
    func allocateFast(_ size: Int) -> UnsafeMutableRawPointer? {
        let slot = SizeClass.slot(size)
        return pop(page(slot: slot), slot: slot)
    }

    /// Takes the first block of `page`'s free list: clears the block's freed mark, counts
    /// it in the page and in the heap's direct slot `slot`. Nil when the list is empty,
    /// or when its first block lacks the freed mark (the slow paths tell the two apart:
    /// `popChecking`).
    ///
    /// Every block on a free list carries its page's freed mark (invariant, checked by the
    /// validator), so a block without it was written to by the program while free: after
    /// free (use after free), or a write past the end of the block before it overwrote its
    /// link, which then leads to whatever the program wrote, typically a live block.
    /// Handing that out would give the program one block twice (review R16: a 65-byte
    /// `strcpy` into a 64-byte block made the second malloc return a live block). The test
    /// is a compare with memory on the line the link is loaded from and a branch to the
    /// same slow path as the empty list's: 2 instructions, no call, so no stack frame. A
    /// link overwritten with a pointer to unmapped memory still faults on its first load,
    /// as in any allocator that does not encode its links.
    ///
    /// It prefetches the new head: the next pop loads that block's first word, and when the
    /// list runs through memory out of this core's cache (blocks other threads freed, or
    /// freed long ago) the misses would otherwise come one after the other, each stalling
    /// a malloc. One instruction; a prefetch never faults (NULL included).
    @inline(__always)
    func pop(_ page: UnsafeMutablePointer<Page>, slot: Int) -> UnsafeMutableRawPointer? {
        guard let block = page.pointee.free,
              _fastPath(block.load(fromByteOffset: 8, as: UInt.self) == page.freedMark) else { return nil }
        let next = block.load(as: UnsafeMutableRawPointer?.self)
        page.pointee.free = next
        swmshim_prefetch(next)
        block.storeBytes(of: 0, toByteOffset: 8, as: UInt.self)
        page.pointee.used &+= 1
        state.allocCounter(slot: slot).pointee &+= 1
        return block
    }

    /// The slow paths' `pop`: a first block without its freed mark aborts naming it
    /// (`freeListCorrupted`) instead of reading as an empty list.
    @inline(__always)
    func popChecking(_ page: UnsafeMutablePointer<Page>, slot: Int) -> UnsafeMutableRawPointer? {
        if let head = page.pointee.free { Heap.checkFreedMark(head, page) }
        return pop(page, slot: slot)
    }

    /// Aborts naming `block`, the first block of `page`'s free list, when it lacks the
    /// freed mark (see `pop`).
    @inline(__always)
    static func checkFreedMark(_ block: UnsafeMutableRawPointer, _ page: UnsafeMutablePointer<Page>) {
        if _slowPath(block.load(fromByteOffset: 8, as: UInt.self) != page.freedMark) { freeListCorrupted(block) }
    }

    /// malloc's slow path: everything the fast path's tests send here (an empty direct
    /// page, or one whose first free block lacks its mark, which aborts here).
    ///
    /// Its first lane: the direct page ran dry but has never-used blocks left and no other
    /// thread's frees to collect; it threads the next few (`extend`, one OS page of them)
    /// and pops one, without the housekeeping and the page search. A fresh page is
    /// extended 4 KiB at a time, so a class a thread uses little touches little memory,
    /// and this lane keeps that cheap (about 40 instructions a call instead of 210 through
    /// `findPage`). The empty and exited heaps' pages have no blocks left to thread.
    ///
    /// The extension still runs under the span lock, as every extension does: a fork
    /// child takes over the pages of a heap whose span lock was free at the fork
    /// (`reclaimForkOrphans`), which must not hold a half-done extension (`free` already
    /// pointing at blocks that `capacity` does not count yet). Without the lock the debug
    /// library's validator caught that once in `forkFromThreads`.
    @inline(never)
    static func allocateSlow(_ size: Int) -> UnsafeMutableRawPointer? {
        if UInt(bitPattern: size) <= UInt(Geometry.smallMax) {
            let heap = Heap.current
            let slot = SizeClass.slot(size)
            let page = heap.page(slot: slot)
            // The fast path's pop found this list empty, or its first block without the
            // freed mark: that case aborts here.
            if let head = page.pointee.free { checkFreedMark(head, page) }
            if page.canExtend && page.pointee.threadFree.load(ordering: .relaxed) == 0 {
                heap.spanLock.lock()
                page.extend()
                heap.spanLock.unlock()
                return heap.pop(page, slot: slot)   // blocks just threaded, marked
            }
        }
        if size < 0 { return outOfMemory() }   // a size_t above PTRDIFF_MAX
        return withHeap(size: size) { heap in
            if size <= Geometry.smallMax {
                let c = SizeClass.of(size)
                guard let page = heap.findPage(c) else { return outOfMemory() }
                return heap.popChecking(page, slot: SizeClass.slot(ofClass: c))
            }
            if size <= Geometry.largeMax { return heap.allocateLarge(size, alignment: Geometry.sliceSize) }
            return Huge.allocate(size, alignment: 0)
        }
    }

    /// Runs an allocation slow path `body` with the calling thread's heap, after its
    /// housekeeping (`maintain`). A thread without a heap gets one. A thread whose heap was
    /// detached at its exit (a pthread key destructor of a later round, glibc's
    /// `__libc_thread_freeres`) is served by a heap attached for this one call and
    /// detached at once, so that nothing stays attached to a thread that is going away;
    /// the segment holding the block is abandoned and adopted by the next thread that
    /// needs memory. That case is rare, so its cost does not matter.
    ///
    /// When `body` finds no memory for the `size` bytes asked for, what the process holds
    /// free goes back and `body` runs once more (`retryingAfterCollect`).
    @inline(__always)
    static func withHeap(size: Int, _ body: (Heap) -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        retryingAfterCollect(size: size) { withHeapOnce(body) }
    }

    /// `withHeap` without the retry.
    ///
    /// A thread whose heap was detached is served by a heap attached for the call and
    /// detached after it, except when the process ends in that thread: glibc counts no
    /// thread (`swmshim_process_exiting`), so this is the last thread, running `exit` and
    /// its `atexit` handlers after the main thread's `pthread_exit`, and nothing outlives
    /// it. There the heap stays attached and the thread's later calls take the fast paths:
    /// a heap attached and detached for each made such a handler's malloc/free loop 30×
    /// slower than under glibc (1.11 s against 0.037 s for a million pairs; review R114).
    @inline(__always)
    private static func withHeapOnce(_ body: (Heap) -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        let current = Heap.current
        if !current.isEmpty { return current.slowPath(body) }
        if current.isExited {
            guard let heap = Heap.attach(registerExit: false) else { return outOfMemory() }
            let block = heap.slowPath(body)
            if swmshim_process_exiting() == 0 { heap.detach() }
            return block
        }
        guard let heap = Heap.attach(registerExit: true) else { return outOfMemory() }
        return heap.slowPath(body)
    }

    /// Runs `body` after the housekeeping that needs no lock (`maintain`), under the span
    /// lock, after the housekeeping that does (`maintainLocked`).
    @inline(__always)
    func slowPath(_ body: (Heap) -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        let periodic = maintain()
        spanLock.lock()
        maintainLocked(periodic: periodic)
        let block = body(self)
        spanLock.unlock()
        Purger.startIfMapped()
        return block
    }

    /// A huge block for calloc: zeroed (a fresh mapping is, a cached one is cleared).
    @inline(never)
    static func allocateHuge(_ size: Int, zeroed: Bool) -> UnsafeMutableRawPointer? {
        withHeap(size: size) { _ in Huge.allocate(size, alignment: 0, zeroed: zeroed) }
    }

    /// The page of class `c` to allocate from, its free list non-empty; nil when out of memory.
    ///
    /// Its class list first, then again after collecting other threads' frees into full
    /// pages, then again after adopting abandoned segments until one brings a page of
    /// the class (`adoptForClass`); only then a fresh span. Adopted pages of every class
    /// join this heap's lists, so a heap that adopted for a span and then formatted a fresh
    /// page anyway (as `acquireSpan` does when no adopted segment has a free span) kept
    /// adopting pages it never used: an outside review's long-lived thread, among
    /// short-lived ones, grew its class lists without bound.
    func findPage(_ c: Int) -> UnsafeMutablePointer<Page>? {
        for attempt in 0..<3 {
            var cursor = page(class: c)
            while cursor != Heap.emptyPage {
                let page = cursor
                cursor = page.pointee.next ?? Heap.emptyPage
                page.collect()
                if page.canExtend { page.extend() }
                if page.pointee.free != nil {
                    if page.pointee.prev != nil { unlinkClass(page); pushClass(page) }
                    // One load when the list's last page has no other threads' frees.
                    if let tail = state.pointee.classTails[c], tail.pointee.threadFree.load(ordering: .relaxed) != 0 {
                        sweepTail(c, limit: Heap.sweepPages)
                    }
                    return page
                }
                unlinkClass(page)
                pushFull(page)
            }
            if attempt == 0 && collectRemoteFrees() { continue }
            if attempt == 2 || !adoptForClass(c) { break }
        }
        guard let span = acquireSpan(SizeClass.pageSlices(c)) else { return nil }
        span.format(segment: span.segment, heapTag: tag, classIndex: c, blockSize: SizeClass.blockSize(c))
        pushClass(span)
        span.extend()
        return span
    }

    /// Adopts abandoned segments (at most `Heap.adoptLimit`) until one brings a page of
    /// class `c` with a free or never-used block; true when one did. Not while the heap
    /// has room of its own (`hasRoom`, see `acquireSpan`), looked at before each adoption:
    /// looked at once, a heap adopted up to 16 segments at a go, and the program of
    /// `rare_allocators_among_short` mapped 4.1 GB instead of 3.2.
    func adoptForClass(_ c: Int) -> Bool {
        var adopted = 0
        while adopted < Heap.adoptLimit && Globals.abandonedHead.pointee != nil && !hasRoom() {
            adopted += 1
            _ = reclaimAbandoned()
            let head = page(class: c)
            if head != Heap.emptyPage && (head.pointee.free != nil || head.canExtend
                                          || head.pointee.threadFree.load(ordering: .relaxed) != 0) { return true }
        }
        return false
    }

    /// Looks at the pages at the end of class `c`'s list, behind its head, while they have
    /// other threads' frees to collect (at most `limit`): each is collected, and retired
    /// when that emptied it, or moves right behind the head, where malloc goes next (it
    /// got blocks back). `findPage` calls it each time a class's page runs dry and the
    /// list's last page has such frees: a thread that frees its own blocks pays one load.
    ///
    /// Why: `findPage` serves from the first page with a free block, and a head page that
    /// other threads keep refilling is found again on every slow path, so the pages behind
    /// it were never collected. An outside review found a thread whose class lists held
    /// 11,000 pages of 1 GiB, almost every block in them freed by other threads and never
    /// collected (a long-lived thread and a stream of short-lived ones freeing each
    /// other's blocks, `purge_delay_ms=0`). Pages without such frees stay where they are:
    /// the end of a list is where a full page that got one block back waits
    /// (`appendClass`), and moving it forward made it serve that block, go full and take
    /// the slow path again (findPage calls +77 %, an outside review). Span lock held.
    @inline(never)
    func sweepTail(_ c: Int, limit: Int) {
        let head = page(class: c)
        for _ in 0..<limit {
            guard let tail = state.pointee.classTails[c], tail != head, tail.pointee.prev != head,
                  tail.pointee.threadFree.load(ordering: .relaxed) != 0 else { return }
            if retireIfEmptied(tail, now: OS.nowNanoseconds()) { continue }
            // Behind the head: head.next exists (the tail was not right behind it).
            unlinkClass(tail)
            let second = head.pointee.next.unsafelyUnwrapped
            tail.pointee.prev = head
            tail.pointee.next = second
            second.pointee.prev = tail
            head.pointee.next = tail
        }
    }

    /// Pages `findPage` sweeps per call.
    static let sweepPages = 2

    /// The periodic sweep (every `periodicSlowPaths`-th slow path): up to
    /// `periodicSweepPages` pages of up to `periodicSweepClasses` class lists, class after
    /// class from where the last sweep stopped, each list from its end towards its head:
    /// a page with other threads' frees is collected, and retired when that emptied it;
    /// no page moves. So a page other threads emptied is retired even in a class whose
    /// pages this thread no longer runs dry, or behind pages without such frees. Span
    /// lock held.
    func sweepClasses() {
        var budget = Heap.periodicSweepPages
        var c = state.pointee.sweepClass % SizeClass.count
        for _ in 0..<Heap.periodicSweepClasses {
            let head = page(class: c)
            var cursor = state.pointee.classTails[c]
            while budget > 0, let page = cursor, page != head {
                budget -= 1
                cursor = page.pointee.prev
                retireIfEmptied(page, now: OS.nowNanoseconds())
            }
            c = c == SizeClass.count - 1 ? 0 : c + 1
            if budget == 0 { break }
        }
        state.pointee.sweepClass = c
    }

    /// Most pages, and class lists, one periodic sweep looks at.
    static let periodicSweepPages = 32
    static let periodicSweepClasses = 4

    /// Collects other threads' frees into full pages after a remote free hinted at them:
    /// pages that got blocks back return to their class lists, empty ones retire.
    /// Returns true when it found any.
    func collectRemoteFrees() -> Bool {
        // The relaxed load only filters; the exchange orders the scan. A pusher publishes its
        // blocks (CAS, release), then stores the hint (release). If the exchange reads that
        // 1, acquire makes the pushed list visible to the loads below; if it does not, the
        // pusher's store comes after it and the hint stays set for the next call. (A plain
        // store of 0 could be reordered after the loads below and erase a hint whose
        // blocks they missed: the page would be skipped for ever.)
        if state.pointee.remotePending.load(ordering: .relaxed) == 0 { return false }
        if state.pointee.remotePending.exchange(0, ordering: .acquiring) == 0 { return false }
        var found = false
        var cursor = state.pointee.fullPages
        let now = OS.nowNanoseconds()
        while let page = cursor {
            cursor = page.pointee.next
            if page.pointee.threadFree.load(ordering: .relaxed) == 0 { continue }
            found = true
            page.collect()
            if page.pointee.used == 0 {
                unlinkFull(page)
                retire(page, now: now)
            } else if page.pointee.kind == .small {
                unlinkFull(page)
                pushClass(page)
            }
        }
        return found
    }

    /// Gives back what other threads freed into this heap's pages and the owner has not
    /// collected: it retires the pages every block of which they freed (their thread-free
    /// lists hold `used` blocks): full pages at once, class pages behind their class's
    /// head once the list stayed as it was for `delay` (a busy owner collects and reuses
    /// them); in the other pages it purges the blocks of thread-free lists that stayed as
    /// they were for `delay` (`purgeStaleRemoteFrees`), at most `remotePurgesPerPass`
    /// lists a call. Returns when the first list still waiting is due (`UInt64.max`:
    /// none waits).
    ///
    /// Under the span lock, by the owner or by another thread that took the lock (the
    /// purger, `swm_collect`): an owner that sleeps, or allocates on fast paths only or
    /// from other classes, would otherwise keep this memory for ever — a producer whose
    /// consumers freed 64 MiB kept all of it, `swm_collect` included; and 8 threads that
    /// replaced each other's 9 … 64 KiB blocks and then 16 … 128-byte ones kept 56 … 104
    /// MiB of the first size's pages, for 0.3 MiB live, once they slept (`retention
    /// pool_idle`).
    ///
    /// Retiring is safe from another thread, since no thread may free a block of such a
    /// page any more, all of them having been freed, and:
    /// - a full page: the owner touches it only under the span lock (its fast paths never
    ///   reach one: no direct slot holds it, and free's test needs the class-page tag, not
    ///   `tag | 1`);
    /// - a class page behind the head: malloc's fast path pops from a class's head only
    ///   (the direct slots), and the owner changes heads and links only under the span
    ///   lock (`findPage`, `sweepTail`, `collectRemoteFrees`, `pageEmptied`,
    ///   `releaseKept`); free's fast path pushes onto any class page, but only a block the
    ///   owner holds, and it holds none of this page's (the owner's last free into it
    ///   tests the count its own decrement left, and `pageEmptied` checks the page again
    ///   under the lock). A page in a kept ring is left: the owner reads the rings without
    ///   the lock (see `pushFull`). A class's head is left too: its owner pops from it at
    ///   any time.
    /// A page found otherwise is left to its owner.
    func releaseOthersFrees(now: UInt64, delay: UInt64) -> UInt64 {
        var due = UInt64.max
        // `delay` 0 only for `swm_collect` / `malloc_trim` (`Purger.pass`), which give back
        // everything at once.
        var budget = delay == 0 ? Int.max : Heap.remotePurgesPerPass
        var cursor = state.pointee.fullPages
        while let page = cursor {
            cursor = page.pointee.next
            if Heap.collectIfFreedByOthers(page) {
                unlinkFull(page)
                retire(page, now: now)
            } else {
                due = min(due, Heap.purgeStaleRemoteFrees(page, now: now, delay: delay, retirable: true, budget: &budget))
            }
        }
        for c in 0..<SizeClass.count {
            let head = page(class: c)
            var behind = state.pointee.classTails[c]
            while let page = behind {
                behind = page == head ? nil : page.pointee.prev
                let word = page.pointee.threadFree.load(ordering: .acquiring)
                if page != head && !page.pointee.keptEmpty && Heap.holdsEveryBlock(page, word) {
                    let when = Heap.remoteDue(page, word, now: now, delay: delay)
                    if when > now {
                        due = min(due, when)
                    } else if Heap.collectIfFreedByOthers(page) {
                        unlinkClass(page)
                        retire(page, now: now)
                    }
                } else {
                    due = min(due, Heap.purgeStaleRemoteFrees(page, now: now, delay: delay,
                                                              retirable: page != head && !page.pointee.keptEmpty,
                                                              budget: &budget))
                }
            }
        }
        return due
    }

    /// Most thread-free lists one `releaseOthersFrees` purges (a `madvise` per block, under
    /// the owner's span lock), but for `swm_collect`; the rest wait for the next pass. Without a bound, an owner's
    /// slow path waited up to 60 ms for a pass that purged 100,000 blocks (review R70).
    static let remotePurgesPerPass = 32

    /// True when `page`'s thread-free list, whose word is `word`, holds every block the
    /// page handed out (`used`, a count no thread changes then), one at least. The
    /// acquire fence pairs with `pushLocal`'s release: the owner's last free into the
    /// page, whose `used` this read saw, is seen whole by the collect that follows.
    private static func holdsEveryBlock(_ page: UnsafeMutablePointer<Page>, _ word: UInt) -> Bool {
        let pending = Int(word >> UnsafeMutablePointer<Page>.threadFreeCountShift)
        let used = Int(page.pointee.used)
        atomicMemoryFence(ordering: .acquiring)
        return pending != 0 && pending == used
    }

    /// Collects `page`'s thread-free list when it holds every block the page handed out
    /// and returns true: the page is empty.
    private static func collectIfFreedByOthers(_ page: UnsafeMutablePointer<Page>) -> Bool {
        if !holdsEveryBlock(page, page.pointee.threadFree.load(ordering: .acquiring)) { return false }
        page.collectThreadFree()
        return page.pointee.used == 0
    }

    /// When `page`'s thread-free list, whose word now is `word`, is due for the purger:
    /// `delay` after the purger first saw that word (the list is the same while no block
    /// is pushed and none collected). Records a word it has not seen. Span lock held (for
    /// an abandoned page's free list, `Purger.purgeStaleFreeBlocks`: the abandoned list's
    /// lock).
    static func remoteDue(_ page: UnsafeMutablePointer<Page>, _ word: UInt, now: UInt64, delay: UInt64) -> UInt64 {
        if page.pointee.remoteSeen & ~Page.remotePurged != word {
            page.pointee.remoteSeen = word
            page.pointee.remoteSeenAt = now
        }
        return page.pointee.remoteSeenAt &+ delay
    }

    /// Decay for the blocks other threads freed into a page of blocks above
    /// `Page.smallestPurgedBlock` (any page of this heap, its class's head included): when
    /// its thread-free list is the one seen `delay` ago (`remoteDue`), the OS pages inside
    /// its blocks go back (`Page.purgeBlocks`), once. Returns when a list still waiting is
    /// due (`UInt64.max`: none waits); with no `budget` left, a list due now waits for the
    /// next pass (due: `now`).
    ///
    /// A page of smaller blocks that the walk may retire (`retirable`: a full page, a
    /// class page behind its head) gets one more look `delay` after its list was first
    /// seen: the owner's own last frees into it, which no note announces, make it hold
    /// every block, and that look retires it. Without it, an owner that freed its blocks
    /// just after the walk and then slept kept the page for good (review R107, `retention
    /// owner_last_after_purger_walk`: 66.5 MiB of 64 MiB freed stayed). One look per
    /// list: an owner whose last frees come later still keeps it until a note, its own
    /// slow path or a trim.
    ///
    /// Safe under the owner's span lock from any thread: only the owner's collect, which
    /// takes that lock, takes blocks off a thread-free list; other threads' frees push in
    /// front of the word read here, and their compare-and-swap (sequentially consistent)
    /// published each block's link before the block joined the list, which the acquiring
    /// load sees. The blocks keep their first OS page (link, freed mark, purged mark); the
    /// rest reads zero once the owner collects and hands them out again. The descriptor's
    /// `remoteSeen` fields are written under the span lock only.
    private static func purgeStaleRemoteFrees(_ page: UnsafeMutablePointer<Page>, now: UInt64, delay: UInt64,
                                              retirable: Bool, budget: inout Int) -> UInt64 {
        if page.pointee.kind != .small { return .max }
        let word = page.pointee.threadFree.load(ordering: .acquiring)
        if Int(page.pointee.blockSize) <= Page.smallestPurgedBlock {
            if word == 0 || !retirable { return .max }
            let when = remoteDue(page, word, now: now, delay: delay)
            return when > now ? when : .max
        }
        if word == 0 || page.pointee.remoteSeen == word | Page.remotePurged { return .max }
        let when = remoteDue(page, word, now: now, delay: delay)
        if when > now { return when }
        if budget == 0 { return now }
        budget -= 1
        page.purgeBlocks(chain: UnsafeMutableRawPointer(bitPattern: word & UnsafeMutablePointer<Page>.threadFreeHeadMask))
        page.pointee.remoteSeen = word | Page.remotePurged
        return .max
    }

    /// A block of `size` bytes in a page of its own, rounded up to whole 64 KiB slices and
    /// starting at a multiple of `alignment` (64 KiB … 2 MiB, a power of two); used for
    /// `Geometry.smallMax` < size ≤ `Geometry.largeMax`, and for aligned requests above
    /// 64 KiB that fit a segment. Nil with ENOMEM when out of memory.
    func allocateLarge(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        let slices = Geometry.slices(for: size)
        guard let span = acquireSpan(slices, alignment: alignment >> Geometry.sliceShift) else {
            return Heap.outOfMemory()
        }
        // The block's usable size is the request in whole OS pages, not the whole span:
        // realloc copies (and so touches) only those, and may grow the block in place up
        // to the span's end.
        span.format(segment: span.segment, heapTag: tag, classIndex: -1, blockSize: OS.wholePages(size))
        span.pointee.capacity = 1
        span.pointee.used = 1
        pushFull(span)
        let block = span.pointee.start.unsafelyUnwrapped
        block.storeBytes(of: 0, toByteOffset: 8, as: UInt.self)
        state.pointee.bigAllocated &+= UInt(span.pointee.blockSize)
        state.pointee.bigAllocs &+= 1
        return block
    }

    /// `pop` found a block without its freed mark on a free list: abort naming it.
    @inline(never)
    static func freeListCorrupted(_ block: UnsafeMutableRawPointer) -> Never {
        OS.fatal("malloc(): free list corrupted: a free block was written to (after free, or past the end of the block before it)",
                 pointer: block)
    }

    /// The out-of-memory result: NULL with errno = ENOMEM, counted.
    @inline(never)
    static func outOfMemory() -> UnsafeMutableRawPointer? {
        Counters.shared.pointee.outOfMemory.wrappingAdd(1, ordering: .relaxed)
        OS.setErrno(Int32(SWM_ENOMEM))
        return nil
    }

    /// Runs `attempt`, an allocation of `size` bytes; when it finds no memory, gives back
    /// what the process holds free (`collectForRetry`) and runs it once more. The call
    /// counts one refusal, not two, and one that succeeds at the second try leaves errno
    /// as it found it. The caller holds no allocator lock.
    @inline(__always)
    static func retryingAfterCollect(size: Int, _ attempt: () -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        let saved = OS.errno()
        if let block = attempt() { return block }
        return retryAfterCollect(size: size, errno: saved, attempt)
    }

    @inline(never)
    private static func retryAfterCollect(size: Int, errno saved: Int32,
                                          _ attempt: () -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        if !collectForRetry(size: size) { return nil }
        guard let block = attempt() else {
            Counters.shared.pointee.outOfMemory.wrappingSubtract(1, ordering: .relaxed)
            return nil
        }
        withdrawOutOfMemory(errno: saved)
        return block
    }

    /// After the OS refused memory for a request of `size` bytes, from a caller that holds
    /// no allocator lock: gives back everything the process holds free, as
    /// `malloc_trim(0)` does (`Purger.collectAll`: the calling thread's empty pages and
    /// segments too, and under an address-space limit their address space), so that one
    /// more try may fit. The mapping's own retry (`OSMemory.retryAfterReleasingCaches`,
    /// under the span lock) reaches only the caches: a thread that freed 45 MB of 100 KB
    /// blocks under a 48 MB `ulimit -v` could not get 24 MB until it called
    /// `malloc_trim` (an outside review; oom.c `refill_without_trim`). False, and nothing
    /// done, for a request above sixteen times what the process has mapped (terabytes, a
    /// program probing for NULL): no collect makes room for it, and it would only cost
    /// the caches the program still uses.
    static func collectForRetry(size: Int) -> Bool {
        if size < 0 || UInt(size) / 16 > Counters.shared.pointee.mapped.load(ordering: .relaxed) { return false }
        _ = Purger.collectAll()
        return true
    }

    /// Takes back an `outOfMemory` whose caller did without the block after all (a
    /// realloc that shrinks keeps its block): the refusal is not counted, and errno is
    /// `saved` again (a call that succeeds leaves errno as it found it).
    static func withdrawOutOfMemory(errno saved: Int32) {
        Counters.shared.pointee.outOfMemory.wrappingSubtract(1, ordering: .relaxed)
        OS.setErrno(saved)
    }

    /// `size` bytes aligned to `alignment`, a power of two (as a `size_t`: 2^63 arrives
    /// negative and fails with ENOMEM, as glibc answers).
    /// - up to 64 KiB the ordinary path serves it: every class is a multiple of the largest
    ///   power of two dividing it, and pages start 64 KiB-aligned, so rounding the size up
    ///   to the alignment is enough;
    /// - up to 2 MiB, when the block fits a segment at an aligned slice, a large page at
    ///   that slice (no mapping of its own: thousands of them cost no kernel mappings);
    /// - above, a huge block placed at the alignment (`Huge`).
    static func allocateAligned(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
        if alignment <= 16 && alignment >= 0 { return allocate(size) }
        if alignment < 0 || alignment > Huge.maxAlignment || size < 0 || size > Int.max / 2 { return outOfMemory() }
        if alignment <= Geometry.sliceSize {
            let rounded = (size + alignment - 1) & ~(alignment - 1)
            return allocate(rounded == 0 ? alignment : rounded)
        }
        let slices = Geometry.slices(for: size)
        if alignment <= Geometry.largeMax && alignment >> Geometry.sliceShift + slices <= Geometry.slicesPerSegment {
            return allocateAlignedLarge(size, alignment: alignment)
        }
        return allocateAlignedHuge(size, alignment: alignment)
    }

    /// A huge block placed at `alignment`, counted in the calling thread's heap (attached
    /// here when this is its first allocation; before, such a block was counted in no
    /// thread's counters, and an over-aligned one never: an outside review).
    @inline(never)
    private static func allocateAlignedHuge(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        // The retry's size test takes the mapping the alignment needs: an alignment no
        // address space holds (2^45) must not make every call collect (review R12).
        withHeap(size: size &+ alignment) { _ in Huge.allocate(size, alignment: alignment) }
    }

    @inline(never)
    private static func allocateAlignedLarge(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        withHeap(size: size) { $0.allocateLarge(size, alignment: alignment) }
    }
}
