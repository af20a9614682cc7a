// Extensions layer (VOS): per-module and per-site counters, per thread, without locks.
//
// Every thread that uses VOS has a *thread table* (one mapping, virtual until touched,
// hung off `HeapState.extensionData`): 32-byte entries for each module (charge room,
// allocs, frees, credit room) and each site (bytes charged, allocs, frees, bytes
// credited), only ever written by its thread. Allocation and free update different
// words, so a malloc/free loop does not chain each operation to the previous one through
// one memory word. A module entry counts the bytes charged (credited) since the last
// publication as the *room* left before the next one, so that one subtraction and one
// sign test both count a block and tell whether the fast path may: a room is 0 while the
// entry is unarmed (nothing counted yet: its group may be unmarked), else
// `publishThreshold` − bytes, in 1 … `publishThreshold`. The process-wide *global
// region* holds what was published or folded from tables, with relaxed atomics:
//
//     charged(room)  = room == 0 ? 0 : publishThreshold − room            (credited alike)
//     live bytes[m]  = published[m] + Σ_threads (charged(table[m][0]) − credited(table[m][3]))
//     allocs[m]      = folded allocs[m] + Σ_threads table[m].allocs      (frees alike)
//     live blocks[m] = allocs[m] − frees[m]
//
// A free is charged to the freeing thread's table, so a block freed by another thread
// makes one table's net bytes negative and another's positive: the sums stay exact. A
// thread's net bytes are *published* (added to `published[m]`, then both rooms made
// full, under `lock`) whenever it has charged or credited `publishThreshold` bytes since the
// last publication (so |unpublished net bytes| ≤ 64 KiB per thread and module), and folded entirely when the thread exits; the
// peak is the atomic maximum of `published[m]` after each publication, of the exact
// merged value at each statistics read, and (for modules with a quota) of the exact
// quota counter after each allocation. Readers hold `lock`, which only thread exit
// (fold), table creation, publications (once per 64 KiB a thread moves in a module) and
// fork also take; malloc and free otherwise never do.

import CSwmShim
import Synchronization

/// Where the VOS state lives: the global region, the thread tables and the locks.
enum VOSModules {
    /// Module indexes 0 ..< 65536 are module IDs; every larger ID shares index 65536.
    static let moduleCount = 65_537
    /// Site ids 1 ..< 65536 (0 = no site).
    static let siteCapacity = 65_536
    /// Bytes a thread charges (or credits) to a module before it publishes its net (64 KiB).
    static let publishThreshold = 64 * 1024
    /// Entry size in a thread table: charge room (a site: bytes charged), allocs, frees,
    /// credit room (a site: bytes credited).
    static let entrySize = 32

    // Global region layout (one mapping, made once).
    /// +0: module group bitmap (a bit per 64 modules that have published or folded counts).
    static let globalModuleGroupsOffset = 0
    /// Per-module global entry (64 bytes, one cache line): published, allocs, frees, peak,
    /// quota, quota live bytes, quota refusals.
    static let globalModulesOffset = 4096
    /// Bytes per global module entry.
    static let globalModuleStride = 64
    /// Per-site record (64 bytes): file, line, module, folded bytes, allocs, frees.
    static let globalSitesOffset = globalModulesOffset + roundUp(moduleCount * globalModuleStride)
    /// Bytes per global site record.
    static let globalSiteStride = 64
    /// Site hash index: `siteIndexSlots` words, each 0 or a site id.
    static let siteIndexOffset = globalSitesOffset + siteCapacity * globalSiteStride
    /// Slots of the site hash index: twice the sites, so a probe always ends.
    static let siteIndexSlots = 2 * siteCapacity
    /// Size of the global region.
    static let globalBytes = siteIndexOffset + siteIndexSlots * 8

    // Thread table layout.
    /// +0: next table in the registry; +8: the global region; +16: nonzero once any module
    /// has a quota (set in every table by `setQuota`, copied at attach), so allocations
    /// test one word of the table they already hold instead of the module's global entry.
    /// +64: module group bitmap (a bit per 64 modules this thread touched), 17 words.
    static let tableModuleGroupsOffset = 64
    /// +256: site group bitmap, 16 words.
    static let tableSiteGroupsOffset = 256
    /// +1024: the site cache (see `VOSSites`), 256 entries of 24 bytes (not table entries). It stays valid
    /// when the table is recycled: site ids are process-wide and never reused.
    static let tableSiteCacheOffset = 1024
    /// +8192: the module entries, then the site entries.
    static let tableModulesOffset = 8192
    static let tableSitesOffset = tableModulesOffset + roundUp(moduleCount * entrySize)
    /// Size of a thread table (about 4 MiB of address space; untouched pages cost nothing).
    static let tableBytes = tableSitesOffset + roundUp(siteCapacity * entrySize)

    /// `n` rounded up to whole pages.
    static func roundUp(_ n: Int) -> Int { (n + OS.pageSize - 1) & ~(OS.pageSize - 1) }

    // Process-wide words, in the extension part of the shim's static storage.
    /// The first of them (bytes 8192 ... 8255 of the shim's storage).
    private static var slots: UnsafeMutableRawPointer { Globals.base + Globals.extensionOffset }
    /// The global region, nil until the first VOS call.
    static var globalWord: AtomicWord { AtomicWord(slots) }
    /// Guards the table registry, the pool, folding and merged reads.
    static var lock: FutexLock { FutexLock((slots + 8).assumingMemoryBound(to: UInt32.self)) }
    /// Guards site registration (see `VOSSites`).
    static var siteLock: FutexLock { FutexLock((slots + 16).assumingMemoryBound(to: UInt32.self)) }
    /// Head of the registry of tables attached to threads (under `lock`).
    private static var tablesHead: UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        (slots + 24).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    }
    /// Head of the pool of zeroed tables of exited threads (under `lock`).
    private static var poolHead: UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        (slots + 32).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    }
    /// Number of registered sites + 1 (next site id); see `VOSSites`.
    static var siteCountWord: AtomicWord { AtomicWord(slots + 40) }
    /// Nonzero once any module has had a quota (under `lock`).
    private static var quotasExist: UnsafeMutablePointer<UInt> { (slots + 48).assumingMemoryBound(to: UInt.self) }
    /// Next free byte and end of the chunk that holds copies of site file names (under
    /// `siteLock`; see `VOSSites`).
    static var nameNext: UnsafeMutablePointer<UInt> { (slots + 56).assumingMemoryBound(to: UInt.self) }
    static var nameEnd: UnsafeMutablePointer<UInt> { (slots + 64).assumingMemoryBound(to: UInt.self) }

    /// Module index of a module ID.
    @inline(__always)
    static func index(of module: UInt) -> Int { module < UInt(moduleCount - 1) ? Int(module) : moduleCount - 1 }

    /// The global region, mapping it on first use; nil when the OS has no memory.
    ///
    /// Mapped before `lock` is taken: after a refusal the mapping gives the caches'
    /// address space back, under the segment and huge cache locks, which a fork takes
    /// before this one (mapped under it, a fork and a first VOS call under a memory limit
    /// waited for each other for ever: an outside review). Of two threads mapping it at
    /// once, the one that comes second unmaps its own.
    static func global() -> UnsafeMutableRawPointer? {
        if let g = UnsafeMutableRawPointer(bitPattern: globalWord.load()) { return g }
        guard let fresh = mapRecords(globalBytes) else { return globalIfMapped }
        lock.lock()
        if let g = UnsafeMutableRawPointer(bitPattern: globalWord.load()) {
            lock.unlock()
            OS.unmap(fresh, globalBytes)
            return g
        }
        siteCountWord.store(1)
        globalWord.store(UInt(bitPattern: fresh))
        lock.unlock()
        return fresh
    }

    /// The global region if it exists.
    @inline(__always)
    static var globalIfMapped: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: globalWord.load()) }

    /// Global word `field` (0 published, 1 allocs, 2 frees, 3 peak, 4 quota, 5 quota live,
    /// 6 quota refusals, 7 nonzero once a quota was set) of module index `m`.
    @inline(__always)
    static func globalModule(_ g: UnsafeMutableRawPointer, _ m: Int, _ field: Int) -> AtomicWord {
        AtomicWord(g + globalModulesOffset + m &* globalModuleStride + field &* 8)
    }

    /// Sets the global group bit of module index `m`.
    static func markGlobalModule(_ g: UnsafeMutableRawPointer, _ m: Int) {
        AtomicWord(g + globalModuleGroupsOffset + (m >> 12) * 8).or(1 << UInt((m >> 6) & 63))
    }

    /// Raises module `m`'s peak to `value` if it is higher. For a module with a quota only
    /// the quota counter raises it (`fromQuota`, in `admit`): that counter is exact, while
    /// a publication or a merged read may count one thread's frees before another's
    /// allocations and so exceed the true peak (by up to 64 KiB per thread; 16 threads
    /// showed 125 KB under a 100 KB quota).
    static func raisePeak(_ g: UnsafeMutableRawPointer, _ m: Int, _ value: Int, fromQuota: Bool = false) {
        if value <= 0 { return }
        if !fromQuota && globalModule(g, m, 4).loadRelaxed() != 0 { return }
        let peak = globalModule(g, m, 3)
        var seen = peak.loadRelaxed()
        while UInt(value) > seen {
            let r = peak.compareExchange(expected: seen, desired: UInt(value))
            if r.exchanged { return }
            seen = r.original
        }
    }

    // MARK: - Thread tables

    /// The calling thread's table, nil when it has no heap (never allocated, or exiting)
    /// or no memory for a table.
    @inline(__always)
    static func currentTable() -> VOSTable? {
        let heap = Heap.current
        if _slowPath(heap.isEmpty) { return nil }
        if let raw = heap.state.pointee.extensionData { return VOSTable(raw) }
        return attachTable(heap)
    }

    /// `size` bytes for the module records, mapped with no allocator lock held: after a
    /// refusal, what the process holds free goes back and the mapping is tried once more
    /// (`Heap.collectForRetry`; before, the first VOS_Malloc after a thread freed what
    /// filled a 20 MB limit failed until `malloc_trim`: an outside review).
    private static func mapRecords(_ size: Int) -> UnsafeMutableRawPointer? {
        if let raw = OSMemory.mapRecords(size) { return raw }
        return Heap.collectForRetry(size: size) ? OSMemory.mapRecords(size) : nil
    }

    /// Gives `heap` a table: from the pool, or freshly mapped; registers it.
    @inline(never)
    private static func attachTable(_ heap: Heap) -> VOSTable? {
        guard let g = global() else { return nil }
        lock.lock()
        var raw = poolHead.pointee
        if let r = raw { poolHead.pointee = r.load(as: UnsafeMutableRawPointer?.self) }
        lock.unlock()
        if raw == nil { raw = mapRecords(tableBytes) }
        guard let raw else { return nil }
        raw.storeBytes(of: g, toByteOffset: 8, as: UnsafeMutableRawPointer.self)
        lock.lock()
        raw.storeBytes(of: quotasExist.pointee, toByteOffset: 16, as: UInt.self)
        raw.storeBytes(of: tablesHead.pointee, as: UnsafeMutableRawPointer?.self)
        tablesHead.pointee = raw
        lock.unlock()
        heap.state.pointee.extensionData = raw
        return VOSTable(raw)
    }

    /// Calls `body` with every registered table; the caller holds `lock`.
    static func forEachTable(_ body: (VOSTable) -> Void) {
        var cursor = tablesHead.pointee
        while let raw = cursor {
            body(VOSTable(raw))
            cursor = raw.load(as: UnsafeMutableRawPointer?.self)
        }
    }

    /// Folds the table of an exiting thread's heap into the global region, zeroes it and
    /// returns it to the pool. Afterwards Σ over tables + global is unchanged.
    ///
    /// Its module and site entries go back to the OS (they read as zero again, which
    /// `foldAndClear`'s zeroing also ensures where the kernel refuses): a pooled table
    /// kept every page its thread touched, for good (review R91: 16 exited threads that
    /// had used modules 0 … 65,535 kept 73.6 MiB resident, `swm_collect` included).
    static func detach(_ heap: Heap) {
        guard let raw = heap.state.pointee.extensionData else { return }
        heap.state.pointee.extensionData = nil
        let table = VOSTable(raw)
        lock.lock()
        var link = tablesHead
        while let cursor = link.pointee, cursor != raw {
            link = cursor.assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
        }
        link.pointee = raw.load(as: UnsafeMutableRawPointer?.self)
        table.foldAndClear()
        _ = OS.purge(raw + tableModulesOffset, tableBytes - tableModulesOffset)
        raw.storeBytes(of: poolHead.pointee, as: UnsafeMutableRawPointer?.self)
        poolHead.pointee = raw
        lock.unlock()
    }

    // MARK: - Quota

    /// Sets the quota of module index `m` in bytes (0 = none). The first quota ever set
    /// raises the quota flag of every table: from then on allocations look at their
    /// module's global entry. An allocation on another thread sees the quota once that
    /// thread sees the stores (at once with any synchronisation between the two threads).
    static func setQuota(_ m: Int, _ bytes: UInt) -> Bool {
        guard let g = global() else { return false }
        lock.lock()
        // The module's first quota restarts the peak from the quota counter (the peak of a
        // module with a quota is that counter's: `raisePeak`); before, the peak from before
        // the quota stayed, above it (an outside review). A quota set again after one was
        // removed keeps the peak (review R12). Publications and merged reads, the other
        // raisers, hold this lock.
        if bytes != 0 && globalModule(g, m, 7).loadRelaxed() == 0 {
            globalModule(g, m, 7).store(1)
            globalModule(g, m, 3).store(globalModule(g, m, 5).loadRelaxed())
        }
        globalModule(g, m, 4).store(bytes)
        markGlobalModule(g, m)
        if quotasExist.pointee == 0 {
            quotasExist.pointee = 1
            forEachTable { t in t.raw.storeBytes(of: 1, toByteOffset: 16, as: UInt.self) }
        }
        lock.unlock()
        return true
    }

    /// Whether module `m` has a quota now.
    static func hasQuota(_ g: UnsafeMutableRawPointer, _ m: Int) -> Bool {
        globalModule(g, m, 4).loadRelaxed() != 0
    }

    /// When `header`'s module has a quota: charges the block to it (`admit`) and marks the
    /// header as counted; false when the quota refuses it. True, changing nothing, when
    /// the module has none. `raisingPeak` false leaves the module's peak to the caller
    /// (`raiseQuotaPeak`).
    static func admitQuota(_ g: UnsafeMutableRawPointer, _ header: inout VOSHeader, raisingPeak: Bool) -> Bool {
        let quota = globalModule(g, header.module, 4).loadRelaxed()
        if quota == 0 { return true }
        if !admit(g, header.module, header.size, quota: quota, raisingPeak: raisingPeak) { return false }
        header.quotaCounted = true
        return true
    }

    /// Raises module `m`'s peak to its quota counter as it is now: the peak of an admission
    /// made without raising it (`admitQuota`), once the block it admitted exists.
    static func raiseQuotaPeak(_ g: UnsafeMutableRawPointer, _ m: Int) {
        raisePeak(g, m, Int(bitPattern: globalModule(g, m, 5).loadRelaxed()), fromQuota: true)
    }

    /// Takes back the admission of `header` (if its quota counted it) whose block never
    /// came: a refused resize (`VOS.resizeInPlace`).
    static func unadmit(_ g: UnsafeMutableRawPointer, _ header: VOSHeader) {
        if header.quotaCounted { globalModule(g, header.module, 5).subtract(header.size) }
    }

    /// Charges `size` bytes to module `m`'s exact quota counter; false (counted as a
    /// refusal) when the live bytes counted against the quota would exceed it.
    ///
    /// Checked and added in one compare-and-swap: adding first and taking a refused
    /// request back after made it count against the quota for that moment, and another
    /// thread's request that fit was refused (an outside review: a thread asking for
    /// 2 MiB over a 1 MiB quota made up to 2.6 % of another's 64-byte requests fail).
    @inline(never)
    static func admit(_ g: UnsafeMutableRawPointer, _ m: Int, _ size: UInt, quota: UInt, raisingPeak: Bool) -> Bool {
        let live = globalModule(g, m, 5)
        var current = live.loadRelaxed()
        while true {
            let (after, overflow) = current.addingReportingOverflow(size)
            if overflow || after > quota {
                globalModule(g, m, 6).add(1)
                return false
            }
            let (exchanged, original) = live.compareExchange(expected: current, desired: after)
            if exchanged {
                if raisingPeak { raisePeak(g, m, Int(bitPattern: after), fromQuota: true) }
                return true
            }
            current = original
        }
    }

    // MARK: - Allocations and frees by threads without a table

    /// An allocation on a thread without a heap (a key destructor that runs after the
    /// thread gave its heap up; the block comes from a temporary heap), admitted to its
    /// quota (`VOS.admit`): charged straight to the global region `g`, as `orphanRelease`
    /// credits, its site registered there. Before, such allocations failed with ENOMEM
    /// (an outside review).
    @inline(never)
    static func orphanCharge(_ header: inout VOSHeader, _ g: UnsafeMutableRawPointer, withSite: Bool,
                             file: UnsafePointer<UInt8>?, line: UInt32) {
        let m = header.module
        if withSite { header.site = VOSSites.globalId(g, module: m, file: file, line: line) }
        let after = Int(bitPattern: globalModule(g, m, 0).add(header.size) &+ header.size)
        raisePeak(g, m, after)
        globalModule(g, m, 1).add(1)
        markGlobalModule(g, m)
        if header.site != 0 {
            VOSSites.record(g, header.site, 3).add(header.size)
            VOSSites.record(g, header.site, 4).add(1)
        }
    }

    /// A free on a thread without a heap: charged straight to the global region.
    @inline(never)
    static func orphanRelease(_ header: VOSHeader) {
        guard let g = globalIfMapped else { return }
        globalModule(g, header.module, 0).subtract(header.size)
        globalModule(g, header.module, 2).add(1)
        markGlobalModule(g, header.module)
        if header.site != 0 {
            VOSSites.record(g, header.site, 3).subtract(header.size)
            VOSSites.record(g, header.site, 5).add(1)
        }
        if header.quotaCounted { globalModule(g, header.module, 5).subtract(header.size) }
    }
}

/// A handle on one thread's table: written by its thread only, read by merges.
struct VOSTable {
    /// The table's mapping.
    let raw: UnsafeMutableRawPointer

    /// A handle on the table at `raw`.
    @inline(__always) init(_ raw: UnsafeMutableRawPointer) { self.raw = raw }

    /// The global region.
    @inline(__always)
    var global: UnsafeMutableRawPointer { raw.load(fromByteOffset: 8, as: UnsafeMutableRawPointer.self) }

    /// True once any module has a quota (see `VOSModules.setQuota`).
    @inline(__always)
    var quotasExist: Bool { raw.load(fromByteOffset: 16, as: UInt.self) != 0 }

    /// Entry of module index `m`: [0] charge room, [1] allocs, [2] frees, [3] credit room
    /// (see the top of this file: the bytes since the last publication, as what is left
    /// of `publishThreshold`; 0 while unarmed), counts since the thread's start.
    @inline(__always)
    func module(_ m: Int) -> UnsafeMutablePointer<Int> {
        (raw + VOSModules.tableModulesOffset + m &* VOSModules.entrySize).assumingMemoryBound(to: Int.self)
    }

    /// Entry of site `s`.
    @inline(__always)
    func site(_ s: Int) -> UnsafeMutablePointer<Int> {
        (raw + VOSModules.tableSitesOffset + s &* VOSModules.entrySize).assumingMemoryBound(to: Int.self)
    }

    /// Word `i` of the module group bitmap.
    @inline(__always)
    func moduleGroups(_ i: Int) -> UnsafeMutablePointer<UInt> {
        (raw + VOSModules.tableModuleGroupsOffset + i &* 8).assumingMemoryBound(to: UInt.self)
    }

    /// Word `i` of the site group bitmap.
    @inline(__always)
    func siteGroups(_ i: Int) -> UnsafeMutablePointer<UInt> {
        (raw + VOSModules.tableSiteGroupsOffset + i &* 8).assumingMemoryBound(to: UInt.self)
    }

    /// Words of the module group bitmap (a bit per 64 modules).
    static let moduleGroupWords = (VOSModules.moduleCount + 4095) / 4096
    /// Words of the site group bitmap.
    static let siteGroupWords = VOSModules.siteCapacity / 4096

    /// Net bytes of a site entry: charged − credited.
    @inline(__always)
    static func net(_ e: UnsafeMutablePointer<Int>) -> Int { e[0] &- e[3] }

    /// Bytes counted since the last publication by a module entry's room (0: unarmed).
    @inline(__always)
    static func spent(_ room: Int) -> Int { room == 0 ? 0 : VOSModules.publishThreshold &- room }

    /// Net bytes of a module entry not yet published: charged − credited.
    @inline(__always)
    static func moduleNet(_ e: UnsafeMutablePointer<Int>) -> Int { spent(e[0]) &- spent(e[3]) }

    /// Marks the group of entry `i` (module or site) as touched.
    func touch(_ groups: UnsafeMutablePointer<UInt>, _ i: Int) {
        groups[i >> 12] |= 1 << UInt((i >> 6) & 63)
    }

    /// Entry words a charge updates: allocs and the charge room (a site: bytes charged).
    static let chargeWords = (count: 1, bytes: 0)
    /// Entry words a credit updates: frees and the credit room (a site: bytes credited).
    static let creditWords = (count: 2, bytes: 3)

    /// Charges a new block to its module (and site).
    @inline(__always)
    func charge(_ header: VOSHeader) {
        if !countFast(header, VOSTable.chargeWords) { countSlow(header, VOSTable.chargeWords) }
    }

    /// Credits a freed block (whichever thread allocated it).
    @inline(__always)
    func release(_ header: VOSHeader) {
        if !countFast(header, VOSTable.creditWords) { countSlow(header, VOSTable.creditWords) }
        if _slowPath(header.quotaCounted) { VOSModules.globalModule(global, header.module, 5).subtract(header.size) }
    }

    /// Counts a block in the `words` of its module's (and site's) entries when plain
    /// updates are all it takes: the module's room stays above 0 (so the entry was armed,
    /// its group marked, and no publication is due) and the site's entry counted a block
    /// before. Returns false, having changed nothing, otherwise. It calls nothing, so the
    /// VOS fast paths that use it need no stack frame. The module's test is one
    /// subtraction and one sign test (a room of 0, unarmed, fails it too): a count and a
    /// threshold test cost 5 more instructions a call.
    @inline(__always)
    func countFast(_ header: VOSHeader, _ words: (count: Int, bytes: Int)) -> Bool {
        let e = module(header.module)
        let room = e[words.bytes] &- Int(bitPattern: header.size)
        if _slowPath(room <= 0) { return false }
        if header.site != 0 {
            let s = site(header.site)
            if _slowPath(s[words.count] == 0) { return false }
            s[words.count] &+= 1
            s[words.bytes] &+= Int(bitPattern: header.size)
        }
        e[words.count] &+= 1
        e[words.bytes] = room
        return true
    }

    /// `countFast` for the other cases: marks first-touched groups, arms the module's
    /// entry, and publishes the module's bytes when its room runs out.
    @inline(never)
    func countSlow(_ header: VOSHeader, _ words: (count: Int, bytes: Int)) {
        let e = module(header.module)
        if e[words.count] == 0 { touch(moduleGroups(0), header.module) }
        e[words.count] &+= 1
        let armed = e[words.bytes] == 0 ? VOSModules.publishThreshold : e[words.bytes]
        let room = armed &- Int(bitPattern: header.size)
        if room > 0 { e[words.bytes] = room } else { publish(header.module, words: words, room: room) }
        if header.site != 0 {
            let s = site(header.site)
            if s[words.count] == 0 { touch(siteGroups(0), header.site) }
            s[words.count] &+= 1
            s[words.bytes] &+= Int(bitPattern: header.size)
        }
    }

    /// Moves module `m`'s unpublished bytes to the global counter and raises the peak,
    /// under `VOSModules.lock`, which statistics reads and fork hold too: a read that ran
    /// between the add and the reset counted the bytes twice, and raised the peak with
    /// that sum for good (an outside review: a poller made the peak 2 … 3 × the true
    /// one), and a fork between them left the child counting them twice for good
    /// (another). A publication comes once per 64 KiB a thread charges or credits in a
    /// module, so the lock costs little; it waits while a read sums. The room of `words`
    /// is `room` (at most 0: it ran out, which the entry cannot hold), the other one is
    /// the entry's; both are armed again, full.
    @inline(never)
    func publish(_ m: Int, words: (count: Int, bytes: Int), room: Int) {
        let g = global
        let e = module(m)
        VOSModules.lock.lock()
        let counted = VOSModules.publishThreshold &- room
        let bytes = words.bytes == VOSTable.chargeWords.bytes ? counted &- VOSTable.spent(e[3])
                                                              : VOSTable.spent(e[0]) &- counted
        let after = Int(bitPattern: VOSModules.globalModule(g, m, 0).add(UInt(bitPattern: bytes))) &+ bytes
        e[0] = VOSModules.publishThreshold
        e[3] = VOSModules.publishThreshold
        VOSModules.markGlobalModule(g, m)
        VOSModules.raisePeak(g, m, after)
        VOSModules.lock.unlock()
    }

    /// Calls `body(i)` for every entry index in a touched group of `words` bitmap words,
    /// below `limit`.
    func forEachTouched(_ groups: UnsafeMutablePointer<UInt>, words: Int, limit: Int, _ body: (Int) -> Void) {
        for w in 0..<words {
            var bits = groups[w]
            while bits != 0 {
                let b = bits.trailingZeroBitCount
                bits &= bits &- 1
                let first = (w << 12) | (b << 6)
                var i = first
                while i < first + 64 && i < limit { body(i); i += 1 }
            }
        }
    }

    /// Adds every entry into the global region, then zeroes the touched entries and bitmaps
    /// (called under `VOSModules.lock` at thread exit).
    func foldAndClear() {
        let g = global
        forEachTouched(moduleGroups(0), words: VOSTable.moduleGroupWords, limit: VOSModules.moduleCount) { m in
            let e = module(m)
            let bytes = VOSTable.moduleNet(e)
            if bytes != 0 {
                let after = Int(bitPattern: VOSModules.globalModule(g, m, 0).add(UInt(bitPattern: bytes))) &+ bytes
                VOSModules.raisePeak(g, m, after)
            }
            VOSModules.globalModule(g, m, 1).add(UInt(bitPattern: e[1]))
            VOSModules.globalModule(g, m, 2).add(UInt(bitPattern: e[2]))
            VOSModules.markGlobalModule(g, m)
            e[0] = 0; e[1] = 0; e[2] = 0; e[3] = 0
        }
        forEachTouched(siteGroups(0), words: VOSTable.siteGroupWords, limit: VOSModules.siteCapacity) { s in
            let e = site(s)
            VOSSites.record(g, s, 3).add(UInt(bitPattern: VOSTable.net(e)))
            VOSSites.record(g, s, 4).add(UInt(bitPattern: e[1]))
            VOSSites.record(g, s, 5).add(UInt(bitPattern: e[2]))
            e[0] = 0; e[1] = 0; e[2] = 0; e[3] = 0
        }
        for w in 0..<VOSTable.moduleGroupWords { moduleGroups(w).pointee = 0 }
        for w in 0..<VOSTable.siteGroupWords { siteGroups(w).pointee = 0 }
    }
}
