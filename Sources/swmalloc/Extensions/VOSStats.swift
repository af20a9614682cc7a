// Extensions layer (VOS): merged reads of the per-thread counters.
//
// A read holds `VOSModules.lock` (so no table is folded or recycled meanwhile) and sums
// the global region and every registered table. The sums are exact when the threads
// using a module are not allocating or freeing in it during the read; otherwise each
// value is one that the counters held during the read, give or take the operations in
// flight (a read is not a snapshot of all threads at one instant).

/// One module's merged counters, the layout of `swm_vos_module_stats_t`.
struct VOSModuleSnapshot {
    var module: UInt = 0          // module ID (65536: every ID ≥ 65536)
    var liveBytes: Int = 0        // requested bytes of live blocks
    var liveBlocks: UInt = 0      // allocs − frees
    var allocs: UInt = 0          // allocations since start
    var frees: UInt = 0           // frees since start (by any thread)
    var peakBytes: UInt = 0       // see docs/vos.md: published, read and quota maxima
    var quotaBytes: UInt = 0      // 0 = no quota
    var quotaLiveBytes: UInt = 0  // live bytes counted against the quota
    var quotaRefused: UInt = 0    // allocations refused by the quota
}

/// One site's merged counters, the layout of `swm_vos_site_stats_t`.
struct VOSSiteSnapshot {
    var file: UnsafePointer<CChar>? = nil  // the __FILE__ of the site
    var line: UInt = 0
    var module: UInt = 0
    var liveBytes: Int = 0
    var liveBlocks: UInt = 0
    var allocs: UInt = 0
    var frees: UInt = 0
}

/// Merged reads.
enum VOSStats {
    /// Module index `m` summed over the global region and all tables; raises its peak to
    /// the merged live bytes. The caller holds `VOSModules.lock`, so no table is folded
    /// and no publication moves bytes between a table and the global counter meanwhile
    /// (`VOSTable.publish` takes the lock): the sum counts each byte once.
    static func moduleLocked(_ g: UnsafeMutableRawPointer, _ m: Int) -> VOSModuleSnapshot {
        var out = VOSModuleSnapshot()
        out.module = UInt(m)
        var bytes = Int(bitPattern: VOSModules.globalModule(g, m, 0).loadRelaxed())
        out.allocs = VOSModules.globalModule(g, m, 1).loadRelaxed()
        out.frees = VOSModules.globalModule(g, m, 2).loadRelaxed()
        VOSModules.forEachTable { t in
            let e = t.module(m)
            bytes &+= VOSTable.moduleNet(e)
            out.allocs &+= UInt(bitPattern: e[1])
            out.frees &+= UInt(bitPattern: e[2])
        }
        out.liveBytes = bytes > 0 ? bytes : 0
        out.liveBlocks = liveBlocks(allocs: out.allocs, frees: out.frees)
        VOSModules.raisePeak(g, m, bytes)
        out.peakBytes = VOSModules.globalModule(g, m, 3).loadRelaxed()
        out.quotaBytes = VOSModules.globalModule(g, m, 4).loadRelaxed()
        out.quotaLiveBytes = VOSModules.globalModule(g, m, 5).loadRelaxed()
        out.quotaRefused = VOSModules.globalModule(g, m, 6).loadRelaxed()
        return out
    }

    /// The merged counters of a module ID.
    static func module(_ id: UInt) -> VOSModuleSnapshot {
        let m = VOSModules.index(of: id)
        guard let g = VOSModules.globalIfMapped else {
            var empty = VOSModuleSnapshot()
            empty.module = UInt(m)
            return empty
        }
        VOSModules.lock.lock()
        defer { VOSModules.lock.unlock() }
        return moduleLocked(g, m)
    }

    /// Live blocks from summed counters. The tables are summed one after another while
    /// their threads go on counting, so a sum may hold a consumer's frees of blocks whose
    /// allocation in a producer's table was read before it: the difference is then
    /// negative, and reads as 0 (it wrapped to 1.8e19 blocks in the reports and in
    /// `swm_vos_modules`: an outside review). Live bytes alike, where they are summed.
    @inline(__always)
    static func liveBlocks(allocs: UInt, frees: UInt) -> UInt {
        allocs > frees ? allocs &- frees : 0
    }

    /// Calls `body` with every module that has counts (quota refusals included) or a
    /// quota, in increasing order. The rows are taken under `VOSModules.lock` 32 at a time
    /// into a buffer on the stack (2.3 KB) and handed to `body` after it
    /// (no malloc, no mapping): a report writing them to a pipe that nobody drains must not
    /// hold the lock that allocating threads (at each 64 KiB publication), a thread's
    /// first VOS call, a thread's exit and `fork` take (an outside review: a report to a
    /// full pipe stalled every VOS thread, and deadlocked a program whose reader thread
    /// used VOS). A scratch mapping for the rows, the first fix, left the table empty, or
    /// took the lock again, when the OS refused it (two reviews after).
    static func forEachModule(_ body: (VOSModuleSnapshot) -> Void) {
        guard let g = VOSModules.globalIfMapped else { return }
        var rows = InlineArray<32, VOSModuleSnapshot>(repeating: VOSModuleSnapshot())
        var next = 0
        while true {
            var count = 0
            VOSModules.lock.lock()
            let complete = visitModulesLocked(g, from: next) { s in
                if count == rows.count { return false }
                rows[count] = s
                count += 1
                return true
            }
            VOSModules.lock.unlock()
            for i in 0..<count { body(rows[i]) }
            if complete || count == 0 { return }
            next = Int(rows[count - 1].module) + 1
        }
    }

    /// Calls `visit` with every module from index `start` on that has counts or a quota,
    /// in increasing order, until it returns false; returns whether it saw them all.
    /// `VOSModules.lock` held.
    private static func visitModulesLocked(_ g: UnsafeMutableRawPointer, from start: Int,
                                           _ visit: (VOSModuleSnapshot) -> Bool) -> Bool {
        var w = start >> 12
        while w < VOSTable.moduleGroupWords {
            var bits = (g + VOSModules.globalModuleGroupsOffset + w * 8).load(as: UInt.self)
            VOSModules.forEachTable { t in bits |= t.moduleGroups(w).pointee }
            if w == start >> 12 { bits &= UInt.max << ((start >> 6) & 63) }
            while bits != 0 {
                let first = (w << 12) | (bits.trailingZeroBitCount << 6)
                bits &= bits &- 1
                var m = max(first, start)
                while m < first + 64 && m < VOSModules.moduleCount {
                    let s = moduleLocked(g, m)
                    if s.allocs != 0 || s.frees != 0 || s.quotaBytes != 0 || s.quotaRefused != 0 {
                        if !visit(s) { return false }
                    }
                    m += 1
                }
            }
            w += 1
        }
        return true
    }

    /// Calls `body` with every registered site that has allocations, the largest live
    /// bytes first (ties: older site first). Works in a scratch mapping (no malloc);
    /// nothing is reported when the OS refuses it.
    static func forEachSite(_ body: (VOSSiteSnapshot) -> Void) {
        guard let g = VOSModules.globalIfMapped else { return }
        let n = VOSSites.count() + 1
        let countersBytes = VOSModules.roundUp(n * 24)
        let scratchBytes = countersBytes + VOSModules.roundUp(n * 8)
        guard let scratch = OS.map(scratchBytes) else { return }
        defer { OS.unmap(scratch, scratchBytes) }
        // sums[3s ... 3s+2]: live bytes, allocs, frees of site s; order: site ids to sort.
        let sums = scratch.assumingMemoryBound(to: Int.self)
        let order = (scratch + countersBytes).assumingMemoryBound(to: Int.self)
        VOSModules.lock.lock()
        for s in 1..<n {
            sums[3 * s] = Int(bitPattern: VOSSites.record(g, s, 3).loadRelaxed())
            sums[3 * s + 1] = Int(bitPattern: VOSSites.record(g, s, 4).loadRelaxed())
            sums[3 * s + 2] = Int(bitPattern: VOSSites.record(g, s, 5).loadRelaxed())
        }
        VOSModules.forEachTable { t in
            t.forEachTouched(t.siteGroups(0), words: VOSTable.siteGroupWords, limit: n) { s in
                let e = t.site(s)
                sums[3 * s] &+= VOSTable.net(e); sums[3 * s + 1] &+= e[1]; sums[3 * s + 2] &+= e[2]
            }
        }
        VOSModules.lock.unlock()
        var count = 0
        for s in 1..<n where sums[3 * s + 1] != 0 { order[count] = s; count += 1 }
        heapSort(order, count) { a, b in
            sums[3 * a] != sums[3 * b] ? sums[3 * a] > sums[3 * b] : a < b
        }
        for i in 0..<count {
            let s = order[i]
            var out = VOSSiteSnapshot()
            out.file = VOSSites.file(g, s)
            out.line = VOSSites.record(g, s, 1).loadRelaxed()
            out.module = VOSSites.record(g, s, 2).loadRelaxed()
            out.liveBytes = sums[3 * s] > 0 ? sums[3 * s] : 0
            out.allocs = UInt(bitPattern: sums[3 * s + 1])
            out.frees = UInt(bitPattern: sums[3 * s + 2])
            out.liveBlocks = liveBlocks(allocs: out.allocs, frees: out.frees)
            body(out)
        }
    }

    /// Sorts `items[0 ..< count]` so that `before(items[i], items[j])` for i < j
    /// (heapsort: in place, no allocation, O(n log n)).
    static func heapSort(_ items: UnsafeMutablePointer<Int>, _ count: Int, _ before: (Int, Int) -> Bool) {
        /// Exchanges items i and j.
        func swap(_ i: Int, _ j: Int) {
            let t = items[i]
            items[i] = items[j]
            items[j] = t
        }
        /// Restores the heap order below `start` within `items[0 ..< end]` (the root is the
        /// item that sorts last).
        func siftDown(_ start: Int, _ end: Int) {
            var root = start
            while 2 * root + 1 < end {
                var child = 2 * root + 1
                if child + 1 < end && before(items[child], items[child + 1]) { child += 1 }
                if !before(items[root], items[child]) { return }
                swap(root, child)
                root = child
            }
        }
        if count < 2 { return }
        var start = count / 2
        while start > 0 { start -= 1; siftDown(start, count) }
        var end = count
        while end > 1 {
            end -= 1
            swap(0, end)
            siftDown(0, end)
        }
    }
}
