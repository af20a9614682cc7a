// Extensions layer: statistics — process totals, per size class, per thread — and the
// text and JSON reports, all without calling malloc.
//
// Counting happens where it is cheapest: malloc's and free's fast paths bump one
// per-thread, per-class counter; large and huge blocks are counted in bytes on their slow
// paths; segment and mapping counters live in `Counters`. A thread's counters are folded
// into the exited totals when it exits, so the sums over live heaps plus the exited
// totals are exact for the whole process (a block freed by another thread is counted
// there, and the totals still balance).

import CSwmShim
import Synchronization

/// Process totals, the layout of `swm_stats_t` in include/swmalloc.h.
struct StatsSnapshot {
    var allocated: UInt = 0       // bytes in live blocks (by usable size)
    var active: UInt = 0          // bytes of pages holding blocks, plus huge mappings
    var resident: UInt = 0        // mapped minus purged: the most swmalloc keeps resident
    var mapped: UInt = 0          // bytes mapped from the OS
    var returned: UInt = 0        // bytes given back with madvise since start (cumulative)
    var segments: UInt = 0        // 4 MiB segments mapped
    var hugeBlocks: UInt = 0      // live huge blocks
    var heaps: UInt = 0           // thread heaps in use
    var abandoned: UInt = 0       // segments of exited threads not yet reclaimed
    var mallocs: UInt = 0         // allocations since start
    var frees: UInt = 0           // frees since start
    var outOfMemory: UInt = 0     // allocations refused with ENOMEM
}

/// Per-class counters, the layout of `swm_class_stats_t`.
struct ClassSnapshot {
    var blockSize: UInt = 0
    var allocs: UInt = 0
    var frees: UInt = 0
    var live: UInt = 0
}

enum Stats {
    /// Small-block pages set up since start (`swm_pages_formatted`).
    static var pagesFormatted: UInt { Counters.shared.pointee.pagesFormatted.load(ordering: .relaxed) }

    private static let bigAllocatedWord = 2 * SizeClass.count
    private static let bigFreedWord = bigAllocatedWord + 1
    private static let bigAllocsWord = bigAllocatedWord + 2
    private static let bigFreesWord = bigAllocatedWord + 3

    @inline(__always)
    private static func exited(_ word: Int) -> AtomicWord {
        AtomicWord(UnsafeMutableRawPointer(Globals.exitedCounters + word))
    }

    /// Folds an exiting thread's counters into the exited totals.
    static func foldExited(_ heap: Heap) {
        let s = heap.state
        for c in 0..<SizeClass.count {
            exited(c).add(s.classAllocs(c))
            exited(SizeClass.count + c).add(s.freeCounter(c).pointee)
        }
        exited(bigAllocatedWord).add(s.pointee.bigAllocated)
        exited(bigFreedWord).add(s.pointee.bigFreed)
        exited(bigAllocsWord).add(s.pointee.bigAllocs)
        exited(bigFreesWord).add(s.pointee.bigFrees)
    }

    /// Folds `heap`'s counters into the exited totals and zeroes them: its thread exited
    /// and the heap is parked for another thread, which counts from zero. Under the
    /// registry lock, so that a reader never counts the same allocations twice.
    static func foldParked(_ heap: Heap) {
        foldExited(heap)
        let s = heap.state
        s.pointee.slotAllocs = InlineArray(repeating: 0)
        s.pointee.classFrees = InlineArray(repeating: 0)
        s.pointee.bigAllocated = 0
        s.pointee.bigFreed = 0
        s.pointee.bigAllocs = 0
        s.pointee.bigFrees = 0
    }

    /// A free by a thread that has no heap (it never allocated, or is exiting).
    static func countOrphanFree(kind: PageKind, classIndex: Int, size: UInt) {
        if kind == .small {
            exited(SizeClass.count + classIndex).add(1)
        } else {
            exited(bigFreedWord).add(size)
            exited(bigFreesWord).add(1)
        }
    }

    /// Frees `block`, which the calling thread allocated and never handed out, as if it had
    /// never been allocated: a VOS request its module's quota refused once the block was
    /// taken (review R116: 1,000 refused requests counted 1,000 mallocs and 1,000 frees,
    /// and 224,000 bytes in `swm_thread_allocated` and `swm_thread_freed`). The free
    /// counts on this thread's heap, as any free by it does; what it counted is taken out
    /// of the frees, and the same out of the allocations. A thread without a heap (its key
    /// destructors ran) frees it counted, as its allocation was.
    static func freeUncounted(_ block: UnsafeMutableRawPointer) {
        let heap = Heap.current
        if heap.isEmpty { return Heap.deallocate(block) }
        let p = UInt(bitPattern: block)
        var smallClass = -1
        if SegmentMap.byte(p) == SegmentMap.pages {
            let page = UnsafeMutablePointer<Segment>.of(p).page(containing: p)
            if page.pointee.kind == .small { smallClass = Int(page.pointee.classIndex) }
        }
        let s = heap.state
        let bigFreed = s.pointee.bigFreed
        let bigFrees = s.pointee.bigFrees
        Heap.deallocate(block)
        if smallClass >= 0 {
            s.freeCounter(smallClass).pointee &-= 1
            s.allocCounter(slot: SizeClass.slot(ofClass: smallClass)).pointee &-= 1
        } else {
            s.pointee.bigAllocated &-= s.pointee.bigFreed &- bigFreed
            s.pointee.bigAllocs &-= s.pointee.bigFrees &- bigFrees
            s.pointee.bigFreed = bigFreed
            s.pointee.bigFrees = bigFrees
        }
    }

    /// A huge allocation by a thread without a heap.
    static func countOrphanHuge(allocated: UInt) {
        exited(bigAllocatedWord).add(allocated)
        exited(bigAllocsWord).add(1)
    }

    /// Calls `start`, then `body` with every live heap, all under the registry lock. A
    /// heap's counters move to the exited totals and the heap leaves the registry under
    /// that lock in one step (`Stats.foldExited` in `Heap.release`, `foldParked`), so
    /// totals read in `start` and the heaps walked after count every thread once. Read
    /// before the lock (an outside review), a thread that exited in between was in
    /// neither: `allocated` and the cumulative `mallocs` fell by its whole share for one
    /// read.
    private static func withLiveHeaps(_ start: () -> Void, _ body: (Heap) -> Void) {
        Globals.heapsLock.lock()
        start()
        var cursor = Globals.liveHeaps.pointee
        while let raw = cursor {
            body(Heap(raw))
            cursor = Heap(raw).state.pointee.nextLive
        }
        Globals.heapsLock.unlock()
    }

    /// Class `c`'s allocs and frees of the exited threads (the totals they folded into).
    private static func exitedCounts(_ c: Int, into out: inout ClassSnapshot) {
        out.allocs = exited(c).loadRelaxed()
        out.frees = exited(SizeClass.count + c).loadRelaxed()
    }

    /// Adds class `c`'s allocs and frees of live `heap` to `out`.
    private static func addCounts(_ c: Int, of heap: Heap, to out: inout ClassSnapshot) {
        out.allocs &+= heap.state.classAllocs(c)
        out.frees &+= heap.state.freeCounter(c).pointee
    }

    /// Counters of class `c` summed over all threads.
    static func classSnapshot(_ c: Int) -> ClassSnapshot {
        var out = ClassSnapshot()
        out.blockSize = UInt(SizeClass.blockSize(c))
        withLiveHeaps({ exitedCounts(c, into: &out) }) { heap in addCounts(c, of: heap, to: &out) }
        out.live = out.allocs >= out.frees ? out.allocs - out.frees : 0
        return out
    }

    /// Process totals.
    static func snapshot() -> StatsSnapshot {
        var out = StatsSnapshot()
        var classes = InlineArray<88, ClassSnapshot>(repeating: ClassSnapshot())
        var bigAllocated: UInt = 0
        var bigFreed: UInt = 0
        withLiveHeaps({
            bigAllocated = exited(bigAllocatedWord).loadRelaxed()
            bigFreed = exited(bigFreedWord).loadRelaxed()
            out.mallocs = exited(bigAllocsWord).loadRelaxed()
            out.frees = exited(bigFreesWord).loadRelaxed()
            for c in 0..<SizeClass.count { exitedCounts(c, into: &classes[c]) }
        }) { heap in
            bigAllocated &+= heap.state.pointee.bigAllocated
            bigFreed &+= heap.state.pointee.bigFreed
            out.mallocs &+= heap.state.pointee.bigAllocs
            out.frees &+= heap.state.pointee.bigFrees
            for c in 0..<SizeClass.count { addCounts(c, of: heap, to: &classes[c]) }
        }
        for c in 0..<SizeClass.count {
            let cs = classes[c]
            let live = cs.allocs >= cs.frees ? cs.allocs - cs.frees : 0
            out.allocated &+= live &* UInt(SizeClass.blockSize(c))
            out.mallocs &+= cs.allocs
            out.frees &+= cs.frees
        }
        out.allocated &+= bigAllocated >= bigFreed ? bigAllocated - bigFreed : 0
        let counters = Counters.shared
        out.mapped = counters.pointee.mapped.load(ordering: .relaxed)
        let purged = counters.pointee.purgedNow.load(ordering: .relaxed)
        out.resident = out.mapped >= purged ? out.mapped - purged : 0
        out.active = counters.pointee.activeBytes.load(ordering: .relaxed)
            &+ counters.pointee.hugeBytes.load(ordering: .relaxed)
        out.returned = counters.pointee.purgedTotal.load(ordering: .relaxed)
        out.segments = counters.pointee.segments.load(ordering: .relaxed)
        out.hugeBlocks = counters.pointee.hugeBlocks.load(ordering: .relaxed)
        out.heaps = counters.pointee.heaps.load(ordering: .relaxed)
        out.abandoned = counters.pointee.abandoned.load(ordering: .relaxed)
        out.outOfMemory = counters.pointee.outOfMemory.load(ordering: .relaxed)
        return out
    }

    /// Bytes allocated and freed by the calling thread since it started (by usable size).
    static func threadCounters() -> (allocated: UInt, freed: UInt) {
        let heap = Heap.current
        if heap.isEmpty { return (0, 0) }
        var allocated = heap.state.pointee.bigAllocated
        var freed = heap.state.pointee.bigFreed
        for c in 0..<SizeClass.count {
            let size = UInt(SizeClass.blockSize(c))
            allocated &+= heap.state.classAllocs(c) &* size
            freed &+= heap.state.freeCounter(c).pointee &* size
        }
        return (allocated, freed)
    }

    /// Prints the report chosen by the options (text or JSON) to their descriptor (or to
    /// its duplicate, when the program closed it or put a file of its own on its number;
    /// nowhere when it was closed at start-up: `swmshim_report_fd`): the
    /// report of `stats_signal`, or (`atExit`) the one of `stats_print`. A signal's report
    /// that would come after the one at exit is left out: the process ends while it is
    /// written, and it would be cut short. To a pipe, the report holds a record lock on it
    /// while it writes (`swmshim_report_lock`): the reports of processes that share the pipe
    /// (`swmalloc stats -- make -j2`) interleaved, and the tool could not read them.
    ///
    /// At exit it waits for another report in progress at most `exitWaitNanoseconds`
    /// (`serialized(atExit:)`), then says in one line that it leaves its report out; and
    /// its own writes wait as long at most for the descriptor to take bytes, then the rest
    /// is left out: to a pipe that nobody reads, the program never ended (an outside
    /// review, R35; glibc writes no report there).
    static func printReport(atExit: Bool) {
        let options = Options.current.pointee
        if atExit { swmshim_write_patience(exitWaitNanoseconds) }
        let wrote = serialized(atExit: atExit) {
            if Globals.exitReported.pointee != 0 { return }
            if atExit { Globals.exitReported.pointee = 1 }
            let fd = swmshim_report_fd(options.statsFD)
            let locked = swmshim_report_lock(fd)
            writeReportUnlocked(to: fd, json: options.statsJSON)
            if locked != 0 { swmshim_report_unlock(fd) }
        }
        if !wrote {
            var line = LineBuffer()
            line.append("swmalloc: statistics at exit left out: another report has been in progress for 1 s\n")
            line.write(to: swmshim_report_fd(options.statsFD))
        }
        if atExit { swmshim_write_patience(0) }
    }

    /// At exit without a report of its own (stats_signal without stats_print): a signal's
    /// report in progress is finished first, and none starts after (it would be cut short
    /// by the process's end). Before, exit did not wait, and the JSON on the descriptor
    /// ended inside an entry (an outside review).
    static func endReports() {
        if !serialized(atExit: true, { Globals.exitReported.pointee = 1 }) { Globals.exitReported.pointee = 1 }
    }

    /// Writes the report to `fd`, without calling malloc, under the report lock.
    static func writeReport(to fd: Int32, json: Bool, waitingForRoom: Bool = true) {
        serialized(waitingForRoom: waitingForRoom) { writeReportUnlocked(to: fd, json: json) }
    }

    /// Runs `body`, which writes a report, under the report lock: a report is written in
    /// several `write` calls, which another report must not come between. The thread
    /// cannot be cancelled meanwhile (as glibc's `malloc_stats`): `write` is a
    /// cancellation point, and a thread cancelled there left the lock held, so every
    /// later report (the one at exit included) waited for ever. SIGPIPE is blocked
    /// meanwhile (and one the writes raise is discarded): a report to a pipe whose reader
    /// went away (`prog 2>&1 | head`) gets EPIPE and ends, where the report at exit killed
    /// the program (exit status 141 instead of 0; an outside review).
    ///
    /// To a non-blocking descriptor that is full, each write waits for room, at most a
    /// second, and the report is cut short after one that ran out, instead of losing the
    /// chunks that came while it was full (`swmshim_report_writes`); `waitingForRoom`
    /// false: it does not wait, and is cut short at its first write that finds the
    /// descriptor full (`malloc_stats`, which glibc writes to stderr without waiting: a
    /// program calling it often on a full non-blocking stderr waited a second a call,
    /// review R118; before it was cut short there, a later, shorter chunk that fitted left
    /// a hole, review R122).
    ///
    /// `atExit`: waits for the lock at most `exitWaitNanoseconds`, and returns false
    /// without running `body` when it did not come free: a thread blocked in a report's
    /// `write` (to a pipe nobody reads) holds it for as long as that lasts, and the exit
    /// waited with it for ever (an outside review). True when `body` ran.
    @discardableResult
    static func serialized(atExit: Bool = false, waitingForRoom: Bool = true, _ body: () -> Void) -> Bool {
        let cancelState = swmshim_cancel_disable()
        let pipeState = swmshim_sigpipe_block()
        let locked: Bool
        if atExit {
            locked = Globals.reportLock.lock(timeout: exitWaitNanoseconds)
        } else {
            Globals.reportLock.lock()
            locked = true
        }
        if locked {
            swmshim_report_writes(Int32(waitingForRoom ? SWMSHIM_REPORT_WAITS : SWMSHIM_REPORT_CUT))
            body()
            swmshim_report_writes(Int32(SWMSHIM_REPORT_OFF))
            Globals.reportLock.unlock()
        }
        swmshim_sigpipe_restore(pipeState)
        swmshim_cancel_restore(cancelState)
        return locked
    }

    /// How long the exit waits for a report in progress.
    static var exitWaitNanoseconds: UInt64 { 1_000_000_000 }

    /// `writeReport`'s body.
    private static func writeReportUnlocked(to fd: Int32, json: Bool) {
        let s = snapshot()
        var line = LineBuffer()
        if json {
            line.append("{\"swmalloc\":{\"allocated\":"); line.append(s.allocated)
            line.append(",\"active\":"); line.append(s.active)
            line.append(",\"resident\":"); line.append(s.resident)
            line.append(",\"mapped\":"); line.append(s.mapped)
            line.append(",\"returned\":"); line.append(s.returned)
            // In two writes: the 17 members, their numbers 20 digits wide, could pass the
            // buffer's 512 bytes, and what does not fit is dropped.
            line.write(to: fd)
            line.append(",\"segments\":"); line.append(s.segments)
            line.append(",\"huge_blocks\":"); line.append(s.hugeBlocks)
            line.append(",\"heaps\":"); line.append(s.heaps)
            line.append(",\"abandoned_segments\":"); line.append(s.abandoned)
            line.append(",\"mallocs\":"); line.append(s.mallocs)
            line.append(",\"frees\":"); line.append(s.frees)
            line.append(",\"out_of_memory\":"); line.append(s.outOfMemory)
            line.append(",\"huge_cached\":"); line.append(Counters.shared.pointee.hugeCached.load(ordering: .relaxed))
            line.append(",\"purger\":\""); appendPurgerState(&line)
            line.append("\",\"purger_wakeups\":"); line.append(Counters.shared.pointee.purgerWakeups.load(ordering: .relaxed))
            line.append(",\"pages_formatted\":"); line.append(pagesFormatted)
            line.append(",\"classes\":[")
            var first = true
            for c in 0..<SizeClass.count {
                let cs = classSnapshot(c)
                if cs.allocs == 0 { continue }
                line.flushIfFull(to: fd)
                if !first { line.append(",") }
                first = false
                line.append("{\"size\":"); line.append(cs.blockSize)
                line.append(",\"allocs\":"); line.append(cs.allocs)
                line.append(",\"frees\":"); line.append(cs.frees)
                line.append(",\"live\":"); line.append(cs.live)
                line.append("}")
            }
            line.append("]")
            line.write(to: fd)
            Extensions.writeReport(to: fd, json: true)
            line.append("}}\n")
            line.write(to: fd)
            return
        }
        line.append("swmalloc statistics\n")
        line.append("  allocated  "); line.append(s.allocated); line.append(" bytes in live blocks\n")
        line.append("  active     "); line.append(s.active); line.append(" bytes in pages the heaps hold (kept empty ones too) and huge blocks\n")
        line.append("  resident   "); line.append(s.resident); line.append(" bytes mapped and not purged\n")
        line.append("  mapped     "); line.append(s.mapped); line.append(" bytes\n")
        line.write(to: fd)
        line.append("  returned   "); line.append(s.returned); line.append(" bytes given back (madvise, total)\n")
        line.append("  segments   "); line.append(s.segments); line.append(", huge blocks "); line.append(s.hugeBlocks)
        line.append(", heaps "); line.append(s.heaps); line.append(", abandoned segments "); line.append(s.abandoned); line.append("\n")
        line.append("  mallocs    "); line.append(s.mallocs); line.append(", frees "); line.append(s.frees)
        line.append(", out of memory "); line.append(s.outOfMemory); line.append("\n")
        line.append("  cached     "); line.append(Counters.shared.pointee.hugeCached.load(ordering: .relaxed))
        line.append(" bytes of freed huge mappings kept for reuse\n")
        line.append("  purger     "); appendPurgerState(&line); line.append(", ")
        line.append(Counters.shared.pointee.purgerWakeups.load(ordering: .relaxed)); line.append(" wakeups\n")
        line.append("  pages      "); line.append(pagesFormatted)
        line.append(" small-block pages set up\n")
        line.write(to: fd)
        line.append("  class      size       allocs        frees         live\n")
        for c in 0..<SizeClass.count {
            let cs = classSnapshot(c)
            if cs.allocs == 0 { continue }
            line.flushIfFull(to: fd)
            line.append("  "); pad(&line, UInt(c), 5)
            pad(&line, cs.blockSize, 10); pad(&line, cs.allocs, 13); pad(&line, cs.frees, 13); pad(&line, cs.live, 13)
            line.append("\n")
        }
        line.write(to: fd)
        Extensions.writeReport(to: fd, json: false)
    }

    /// The process totals in the terms of glibc's extensions (`mallinfo2`, `malloc_info`):
    /// `arena`, the bytes mapped for segments (not for huge blocks, live or cached);
    /// `inBlocks`, the bytes of live blocks inside them (≤ arena); `hugeMapped`, the bytes
    /// mapped for live huge blocks; `purgeable`, what `malloc_trim` would give back now
    /// (resident bytes in no page in use, and the huge cache).
    struct GlibcView {
        var totals: StatsSnapshot
        var arena: UInt
        var inBlocks: UInt
        var hugeMapped: UInt
        var purgeable: UInt
    }

    static func glibcView() -> GlibcView {
        let s = snapshot()
        let counters = Counters.shared
        let hugeMapped = counters.pointee.hugeBytes.load(ordering: .relaxed)
        let hugeCached = counters.pointee.hugeCached.load(ordering: .relaxed)
        let hugeUsable = counters.pointee.hugeUsable.load(ordering: .relaxed)
        let arena = s.mapped > hugeMapped &+ hugeCached ? s.mapped &- hugeMapped &- hugeCached : 0
        let inBlocks = s.allocated > hugeUsable ? min(s.allocated &- hugeUsable, arena) : 0
        // Pages in use, each segment's header slice, and the header page each retained
        // segment keeps (`Segment.retain`) are resident and not purgeable (review R91:
        // after a trim, 20,000 retained segments' headers read as 78 MiB of keepcost).
        let retained = UInt(max(Globals.retainedCount.pointee, 0))
        let inUse = s.active &+ UInt(Geometry.sliceSize) &* s.segments &+ UInt(OS.pageSize) &* retained
        return GlibcView(totals: s, arena: arena, inBlocks: inBlocks, hugeMapped: hugeMapped,
                         purgeable: s.resident > inUse ? s.resident &- inUse : 0)
    }

    /// The `malloc_info` XML report in glibc's shape (one heap; `sizes` is empty: free
    /// blocks are not counted per size), written to `fd` without calling malloc; false
    /// when a write failed. "rest" is the bytes of segments in no live block, "mmap" the
    /// live huge blocks, "current"/"max"/"total" the bytes mapped (no peak is kept).
    /// Written under the report lock, waiting for room as the other reports (review R122:
    /// it was not, and its XML landed in the middle of another thread's report to the
    /// same pipe).
    static func writeMallocInfo(to fd: Int32) -> Bool {
        var ok = false
        serialized { ok = writeMallocInfoUnlocked(to: fd) }
        return ok
    }

    /// `writeMallocInfo`'s body.
    private static func writeMallocInfoUnlocked(to fd: Int32) -> Bool {
        let v = glibcView()
        let s = v.totals
        let arena = v.arena
        let hugeMapped = v.hugeMapped
        let free = arena &- v.inBlocks
        var line = LineBuffer()
        var ok = true
        func system(_ line: inout LineBuffer) {
            line.append("<system type=\"current\" size=\""); line.append(arena); line.append("\"/>\n")
            line.append("<system type=\"max\" size=\""); line.append(arena); line.append("\"/>\n")
            line.append("<aspace type=\"total\" size=\""); line.append(s.mapped); line.append("\"/>\n")
            line.append("<aspace type=\"mprotect\" size=\""); line.append(s.mapped); line.append("\"/>\n")
        }
        line.append("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n</sizes>\n")
        line.append("<total type=\"fast\" count=\"0\" size=\"0\"/>\n")
        line.append("<total type=\"rest\" count=\"0\" size=\""); line.append(free); line.append("\"/>\n")
        system(&line)
        line.append("</heap>\n")
        ok = line.write(to: fd) && ok
        line.append("<total type=\"fast\" count=\"0\" size=\"0\"/>\n")
        line.append("<total type=\"rest\" count=\"0\" size=\""); line.append(free); line.append("\"/>\n")
        line.append("<total type=\"mmap\" count=\""); line.append(s.hugeBlocks)
        line.append("\" size=\""); line.append(hugeMapped); line.append("\"/>\n")
        system(&line)
        line.append("</malloc>\n")
        ok = line.write(to: fd) && ok
        return ok
    }

    /// Appends the background purger's state: `running`, `off` or `not started`.
    private static func appendPurgerState(_ line: inout LineBuffer) {
        switch Globals.purgerState.loadRelaxed() {
        case 1: line.append("running")
        case 2: line.append("off")
        default: line.append("not started")
        }
    }

    /// Appends `value` right-aligned in `width` columns, after at least one space: a
    /// value as wide as its column or wider must not run into the one before it (a
    /// review found a VOS module's peak and quota printed as one number).
    static func pad(_ line: inout LineBuffer, _ value: UInt, _ width: Int) {
        padding(&line, digits: digits(of: value), width)
        line.append(value)
    }

    /// Appends a signed `value` as `pad` does.
    static func padSigned(_ line: inout LineBuffer, _ value: Int, _ width: Int) {
        if value >= 0 { return pad(&line, UInt(value), width) }
        padding(&line, digits: digits(of: 0 &- UInt(bitPattern: value)) &+ 1, width)
        line.append(value)
    }

    /// Decimal digits of `value`.
    private static func digits(of value: UInt) -> Int {
        var digits = 1
        var n = value
        while n >= 10 { n /= 10; digits += 1 }
        return digits
    }

    /// The spaces in front of a value `digits` characters wide in a column of `width`:
    /// at least one.
    private static func padding(_ line: inout LineBuffer, digits: Int, _ width: Int) {
        var i = digits
        repeat { line.append(" "); i += 1 } while i < width
    }
}
