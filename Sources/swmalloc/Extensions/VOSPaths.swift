// Extensions layer (VOS): allocation and free paths of the VOS API.
//
// Call tree:
//
//   VOS_MallocModule / VOS_MallocWithDebug ── VOS.allocate ─ fast: Heap.pop (malloc's pop),
//        │                                       VOS.chargeFast: the thread's table, the cached
//        │                                       site, VOSTable.countFast, VOSBlock.write
//        └─ VOS.allocateSlow ─ (no block yet: Heap.allocate(size + 16), chargeFast) ── VOS.charge
//                               ── VOS.account: VOSModules.currentTable (created on first use),
//                               VOSSites.id, the module's quota (admit), VOSTable.charge;
//                               VOSBlock.write
//   VOS_Realloc ── VOS.realloc ─┬ fits the block: VOS.account, VOS.release, VOSBlock.write
//                               ├ huge: VOS.account, Heap.reallocate, VOS.release, VOSBlock.write
//                               └ else VOS.allocate, copy, VOS.release, Heap.deallocate
//   VOS_Free_Debug ── VOS.free ─ fast: Heap.localPage (free's test), VOSBlock.read,
//        │                         VOSTable.countFast, Heap.pushToClassPage
//        └─ VOS.freeSlow ─┬ huge: SegmentMap.claim, VOS.releaseClaimedHuge, Huge.freeClaimed
//                          └ VOSBlock.locate (else abort) ── VOSTable.release ── Heap.deallocate
//   free() of a VOS block ── Heap.deallocateSlow ─┬ Extensions.freeInterior ── VOS.releaseFromFree
//                                                  └ huge: Huge.free ── VOS.releaseClaimedHuge
//
// No lock and no atomic read-modify-write on these paths, except for modules with a quota.

import CSwmShim

/// The VOS allocation paths, shared by the C exports.
enum VOS {
    /// VOS_FREE_ACCEPT_MALLOC: VOS_Free of a plain malloc block frees it instead of aborting.
    static let acceptMallocFlag: UInt = 1

    /// A VOS block of `size` bytes charged to `module` (and to the site `file`:`line` when
    /// `withSite`); NULL with ENOMEM when out of memory or over the module's quota.
    ///
    /// Fast path, for sizes 1 … 1008 (the request with its header indexes malloc's direct
    /// slots by size): malloc's pop, then `chargeFast`. It calls nothing; every other case
    /// continues in `allocateSlow`, with the block when the pop found one.
    @inline(__always)
    static func allocate(_ size: UInt, _ module: UInt, withSite: Bool,
                         file: UnsafePointer<UInt8>?, line: UInt32) -> UnsafeMutableRawPointer? {
        let heap = Heap.current
        // The slot of request(size) = size + 16 is (size + 31) / 16 = (size − 1) / 16 + 2;
        // size 0 wraps and fails the one compare.
        let t = size &- 1
        let slot = Int(bitPattern: t &>> 4) &+ 2
        let block = _fastPath(t < UInt(SizeClass.sizeIndexedMax - VOSBlock.headerSize))
            ? heap.pop(heap.page(slot: slot), slot: slot) : nil
        // A block from the direct slot: `heap` is the thread's own (`pop` found a block).
        if _fastPath(block != nil),
           let user = chargeFast(heap, block.unsafelyUnwrapped, size, module, withSite: withSite, file: file, line: line) {
            return user
        }
        return allocateSlow(block, size, module, withSite: withSite, file: file, line: line)
    }

    /// Charges `block` and writes its header when that takes only increments: the thread
    /// has a table, no module has a quota, the site (if any) is in the thread's cache and
    /// `VOSTable.countFast` succeeds. nil, having changed nothing, otherwise.
    @inline(__always)
    private static func chargeFast(_ heap: Heap, _ block: UnsafeMutableRawPointer, _ size: UInt, _ module: UInt,
                                   withSite: Bool, file: UnsafePointer<UInt8>?, line: UInt32) -> UnsafeMutableRawPointer? {
        guard let raw = heap.state.pointee.extensionData else { return nil }
        let table = VOSTable(raw)
        var header = VOSHeader(size: size, module: VOSModules.index(of: module), site: 0, quotaCounted: false)
        guard !table.quotasExist,
              !withSite || setCachedSite(&header, table, file: file, line: line),
              table.countFast(header, VOSTable.chargeWords) else { return nil }
        return VOSBlock.write(block, header)
    }

    /// Core bytes for a VOS request of `size`: the header, and at least one byte after it,
    /// so that `block + 16` lies inside the block (for size 0 it would be the next block's
    /// start, and free() would take it for that).
    @inline(__always)
    private static func request(_ size: UInt) -> Int {
        Int(bitPattern: Swift.max(size, 1) &+ UInt(VOSBlock.headerSize))
    }

    /// Puts the site id of (`header.module`, `file`, `line`) in `header` when the thread's
    /// cache holds it; false otherwise.
    @inline(__always)
    private static func setCachedSite(_ header: inout VOSHeader, _ table: VOSTable,
                                      file: UnsafePointer<UInt8>?, line: UInt32) -> Bool {
        guard let site = VOSSites.cachedId(table, module: header.module, file: file, line: line) else { return false }
        header.site = site
        return true
    }

    /// Everything `allocate`'s fast path does not finish: `block` is the core block it
    /// took (to be charged), or nil when it found none (any size, any thread). One call
    /// site, so the fast path needs no stack frame.
    @inline(never)
    private static func allocateSlow(_ block: UnsafeMutableRawPointer?, _ size: UInt, _ module: UInt, withSite: Bool,
                                     file: UnsafePointer<UInt8>?, line: UInt32) -> UnsafeMutableRawPointer? {
        if let block { return charge(block, size, module, withSite: withSite, file: file, line: line) }
        if size > VOSBlock.maxSize { return Heap.outOfMemory() }
        guard let block = Heap.allocate(request(size)) else { return nil }
        if let user = chargeFast(Heap.current, block, size, module, withSite: withSite, file: file, line: line) {
            return user
        }
        return charge(block, size, module, withSite: withSite, file: file, line: line)
    }

    /// Charges the core block `block` of a VOS request and writes its header (`account`).
    /// Frees the block, uncounted (`Stats.freeUncounted`), and returns NULL with ENOMEM
    /// when `account` refuses.
    @inline(never)
    private static func charge(_ block: UnsafeMutableRawPointer, _ size: UInt, _ module: UInt, withSite: Bool,
                               file: UnsafePointer<UInt8>?, line: UInt32) -> UnsafeMutableRawPointer? {
        if let header = account(size, module, withSite: withSite, file: file, line: line) {
            return VOSBlock.write(block, header)
        }
        Stats.freeUncounted(block)
        return Heap.outOfMemory()
    }

    /// Charges a VOS request of `size` bytes and returns the header that records it: the
    /// module's quota (`admit`), then the thread's table (created on first use) and the
    /// site (registered on first use; `chargeAdmitted`); a thread without a heap charges
    /// the global region. nil, having charged nothing, when there is no memory for the
    /// accounting or the quota refuses it.
    private static func account(_ size: UInt, _ module: UInt, withSite: Bool,
                                file: UnsafePointer<UInt8>?, line: UInt32) -> VOSHeader? {
        var header = VOSHeader(size: size, module: VOSModules.index(of: module), site: 0, quotaCounted: false)
        let table = VOSModules.currentTable()
        guard let global = admit(&header, table, raisingPeak: true) else { return nil }
        chargeAdmitted(&header, table, global, withSite: withSite, file: file, line: line)
        return header
    }

    /// `account`'s first step: admits `header` to its module's quota, if the module has
    /// one (marking the header counted), and returns the global region, or nil when the
    /// quota refuses or there is no memory for the accounting (no table on a thread that
    /// has a heap; no global region on one that has none). Admitted and `raisingPeak`
    /// false, the module's peak is left to the caller.
    private static func admit(_ header: inout VOSHeader, _ table: VOSTable?, raisingPeak: Bool) -> UnsafeMutableRawPointer? {
        if let table {
            if table.quotasExist && !VOSModules.admitQuota(table.global, &header, raisingPeak: raisingPeak) { return nil }
            return table.global
        }
        guard Heap.current.isEmpty, let global = VOSModules.global(),
              VOSModules.admitQuota(global, &header, raisingPeak: raisingPeak) else { return nil }
        return global
    }

    /// `account`'s second step, which cannot fail: registers the site (`withSite`) and
    /// charges the admitted `header` to the thread's table, or to the global region when
    /// the thread has none.
    private static func chargeAdmitted(_ header: inout VOSHeader, _ table: VOSTable?, _ global: UnsafeMutableRawPointer,
                                       withSite: Bool, file: UnsafePointer<UInt8>?, line: UInt32) {
        guard let table else {
            return VOSModules.orphanCharge(&header, global, withSite: withSite, file: file, line: line)
        }
        if withSite { header.site = VOSSites.id(table, module: header.module, file: file, line: line) }
        table.charge(header)
    }

    /// Frees a VOS block (NULL is a no-op). A pointer that is not a live VOS block aborts
    /// naming it and the caller's file:line, unless `flags` has `acceptMallocFlag`, in
    /// which case it is handed to free().
    ///
    /// Fast path: the core block lies in a class page of this thread
    /// (`Heap.localClassPage`), which also makes its header readable; the header's check
    /// (keyed on the address: only a live VOS block's start carries a valid one, so it
    /// also stands for free's block-start and double-free tests); the credit when it needs
    /// only increments and the block has no quota; then free's push. It calls nothing
    /// (the page emptied leaves through a tail call); every other case goes to
    /// `freeSlow`, which checks everything again.
    @inline(__always)
    static func free(_ user: UnsafeMutableRawPointer?, flags: UInt, file: UnsafePointer<UInt8>?, line: UInt32) {
        guard let user else { return }
        let block = user - VOSBlock.headerSize
        let heap = Heap.current
        if _fastPath(UInt(bitPattern: user) & 15 == 0 && SegmentMap.inRange(UInt(bitPattern: block))),
           let page = heap.localClassPage(holding: UInt(bitPattern: block)),
           let raw = heap.state.pointee.extensionData, let header = VOSBlock.read(user),
           !header.quotaCounted, VOSTable(raw).countFast(header, VOSTable.creditWords) {
            if _fastPath(!heap.pushToClassPage(page, block)) { return }
            return Heap.freeSlow(block, emptied: page)
        }
        freeSlow(user, flags: flags, file: file, line: line)
    }

    /// VOS_Free of anything the fast path does not take: a block of another thread, of a
    /// full or large page, a huge block, the slow counting cases, or a pointer that is
    /// not a VOS block.
    ///
    /// A huge block's mapping is claimed (`SegmentMap.claim`) before its header is read,
    /// as free() does: of two threads freeing it at once, the loser must not read the
    /// header the winner may have unmapped. Only a pointer that can be a huge VOS
    /// block's is taken that way (`mayBeHugeBlock`): a claim of the mapping below an
    /// over-aligned block (4 MiB-aligned, its `user − 16` in the segment under it) made
    /// another thread's free of that mapping's own block abort meanwhile (an outside
    /// review).
    @inline(never)
    static func freeSlow(_ user: UnsafeMutableRawPointer, flags: UInt, file: UnsafePointer<UInt8>?, line: UInt32) {
        let block = user - VOSBlock.headerSize
        if UInt(bitPattern: user) & 15 == 0 && Huge.mayBeBlockStart(block) && SegmentMap.containsHuge(UInt(bitPattern: block)) {
            let segment = UnsafeMutablePointer<Segment>.of(UInt(bitPattern: block))
            if SegmentMap.claim(segment.base) {
                if releaseClaimedHuge(user, blockStart: segment.base + segment.pointee.hugeOffset) {
                    return Huge.freeClaimed(segment, heap: Heap.current)
                }
                SegmentMap.insert(segment.base, SegmentMap.huge)
                if flags & acceptMallocFlag != 0 { return Heap.deallocate(user) }
            }
            misuse("VOS_Free(): not a block from VOS_Malloc, or already freed", user, file, line)
        }
        guard let header = VOSBlock.locate(user) else {
            if flags & acceptMallocFlag != 0 { return Heap.deallocate(user) }
            misuse("VOS_Free(): not a block from VOS_Malloc, or already freed", user, file, line)
        }
        release(header)
        Heap.deallocate(block)
    }

    /// Credits a block's module and site on the calling thread.
    @inline(__always)
    static func release(_ header: VOSHeader) {
        if let table = VOSModules.currentTable() { table.release(header) } else { VOSModules.orphanRelease(header) }
    }

    /// free() of `pointer`, which the core found not to be a block start: if it is a VOS
    /// block, it is credited and freed, and the result is true.
    static func releaseFromFree(_ pointer: UnsafeMutableRawPointer) -> Bool {
        guard let header = VOSBlock.locate(pointer) else { return false }
        release(header)
        Heap.deallocate(pointer - VOSBlock.headerSize)
        return true
    }

    /// free() or VOS_Free of `pointer` in a huge mapping the caller claimed, whose block
    /// starts at `blockStart`: when `pointer` is that block's caller pointer and its
    /// header is valid, credits the block and returns true (the caller frees the mapping).
    static func releaseClaimedHuge(_ pointer: UnsafeMutableRawPointer, blockStart: UnsafeMutableRawPointer) -> Bool {
        guard pointer == blockStart + VOSBlock.headerSize, let header = VOSBlock.read(pointer) else { return false }
        release(header)
        return true
    }

    /// `count × size` zeroed bytes; NULL with ENOMEM when the product overflows.
    static func calloc(_ count: UInt, _ size: UInt, _ module: UInt, withSite: Bool,
                       file: UnsafePointer<UInt8>?, line: UInt32) -> UnsafeMutableRawPointer? {
        let (total, overflow) = count.multipliedReportingOverflow(by: size)
        if overflow || total > VOSBlock.maxSize { return Heap.outOfMemory() }
        if request(total) > Geometry.largeMax {
            // A huge block: zeroed where it comes from (a fresh mapping is; one reused from
            // the huge cache is cleared), as for calloc.
            guard let block = Heap.allocateHuge(request(total), zeroed: true) else { return nil }
            return charge(block, total, module, withSite: withSite, file: file, line: line)
        }
        guard let p = allocate(total, module, withSite: withSite, file: file, line: line) else { return nil }
        p.initializeMemory(as: UInt8.self, repeating: 0, count: Int(total))
        return p
    }

    /// realloc for VOS blocks: NULL → allocate; size 0 → free, NULL; in place when the
    /// block fits (below); a huge block as realloc resizes one; otherwise a new block
    /// charged to `module` (and the site), the bytes copied, the old block freed. Either
    /// way the call counts as an allocation and a free of the module (and site). On
    /// failure NULL with ENOMEM and the old block untouched. A huge block is claimed
    /// before it is copied, as realloc claims one (review R17: a VOS_Free of the same
    /// block on another thread, a program race, unmapped it under the copy: SIGSEGV).
    static func realloc(_ user: UnsafeMutableRawPointer?, _ size: UInt, _ module: UInt, withSite: Bool,
                        file: UnsafePointer<UInt8>?, line: UInt32) -> UnsafeMutableRawPointer? {
        guard let user else { return allocate(size, module, withSite: withSite, file: file, line: line) }
        // Read before the header (see `Heap.reallocate`).
        let block = user - VOSBlock.headerSize
        let huge = Huge.mayBeBlockStart(block) && SegmentMap.containsHuge(UInt(bitPattern: block))
        guard let old = VOSBlock.locate(user) else {
            misuse("VOS_Realloc(): not a block from VOS_Malloc, or already freed", user, file, line)
        }
        if size == 0 {
            free(user, flags: 0, file: file, line: line)
            return nil
        }
        // In place when the request with its header still fits the core block and fills at
        // least half of it, as realloc decides (`resizeInPlace`). Before, every call copied.
        if !huge && size <= VOSBlock.maxSize {
            let b = UInt(bitPattern: block)
            let capacity = Int(UnsafeMutablePointer<Segment>.of(b).page(containing: b).pointee.blockSize)
            let needed = request(size)
            if needed <= capacity && needed >= capacity / 2 {
                return resizeInPlace(old, size, module, withSite: withSite, file: file, line: line) { block }
            }
        }
        // A huge block goes through realloc's own path, which keeps it in place where it
        // can (a shrink gives its mapping's end back, a growth `mremap`s) and claims it
        // before any copy; the header moves with the bytes and is written again. The new
        // size is accounted as above, and the accounting undone when realloc has no memory.
        // Before, every call copied into a new block (a 10 MiB block shrunk by 16 bytes
        // held both for a moment: review R45).
        if huge && size <= VOSBlock.maxSize {
            return resizeInPlace(old, size, module, withSite: withSite, file: file, line: line) {
                Heap.reallocate(block, request(size))
            }
        }
        guard let fresh = allocate(size, module, withSite: withSite, file: file, line: line) else { return nil }
        fresh.copyMemory(from: user, byteCount: Int(size < old.size ? size : old.size))
        release(old)
        Heap.deallocate(block)
        return fresh
    }

    /// VOS_Realloc of a block whose core block `resize` keeps where it is (or resizes
    /// itself, returning it, or nil when out of memory): the block's header `old` gives way
    /// to one of `size` bytes charged to `module` (and the site), and the header is
    /// rewritten.
    ///
    /// Only the quota is asked first: the new size is admitted to its module's quota before
    /// the resize (so, as for a copy, the old and new bytes must fit it together for a
    /// moment), without raising the module's peak, and a refused resize takes the
    /// admission back. Everything else is counted once the resize succeeded: the old
    /// header is credited, then the new one charged and the quota's peak raised, so the
    /// module's peak sees the old size or the new one, not both (review R61: a 20 MiB block
    /// shrunk in place to 12 MiB raised the peak to 32 MiB; review R82: so it did still
    /// while any other module had a quota). A refused resize leaves the statistics as they
    /// were (review R116: the new size, charged before the resize and credited after its
    /// refusal, raised a 5 MiB block's module's peak to the 30 GiB refused, for good, and
    /// counted two allocations and two frees that never happened; review R87: a
    /// quota-counted block credited first left the quota's count). NULL with ENOMEM,
    /// nothing counted but the refusal, when the quota refuses.
    private static func resizeInPlace(_ old: VOSHeader, _ size: UInt, _ module: UInt, withSite: Bool,
                                      file: UnsafePointer<UInt8>?, line: UInt32,
                                      _ resize: () -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        var header = VOSHeader(size: size, module: VOSModules.index(of: module), site: 0, quotaCounted: false)
        let table = VOSModules.currentTable()
        guard let global = admit(&header, table, raisingPeak: false) else { return Heap.outOfMemory() }
        guard let block = resize() else {
            VOSModules.unadmit(global, header)
            return nil
        }
        release(old)
        chargeAdmitted(&header, table, global, withSite: withSite, file: file, line: line)
        if header.quotaCounted { VOSModules.raiseQuotaPeak(global, header.module) }
        return VOSBlock.write(block, header)
    }

    /// Aborts with one line: `swmalloc: <message> (pointer 0x…) at file:line`.
    @inline(never)
    static func misuse(_ message: StaticString, _ pointer: UnsafeMutableRawPointer,
                       _ file: UnsafePointer<UInt8>?, _ line: UInt32) -> Never {
        OS.beginFatal()
        var text = LineBuffer()
        text.append("swmalloc: ")
        text.append(message)
        text.append(" (pointer ")
        text.appendHex(UInt(bitPattern: pointer))
        text.append(")")
        if let file {
            text.append(" at ")
            text.append(cString: UnsafeRawPointer(file).assumingMemoryBound(to: CChar.self))
            text.append(":")
            text.append(UInt(line))
        }
        text.append("\n")
        text.write(to: 2)
        OS.abortFatal()
    }
}
