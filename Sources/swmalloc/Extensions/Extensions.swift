// Extensions layer: the hooks the core calls into (statistics reports, VOS accounting).

import CSwmShim

/// Where the core hands control to the extensions, at moments that are rare and off the
/// fast paths: process start, a thread's heap detaching, and fork.
enum Extensions {
    /// After the first heap exists: report-at-exit and report-on-signal registration, and
    /// a duplicate of their descriptor kept for them.
    static func processStarted() {
        let options = Options.current.pointee
        if options.statsPrint || options.statsSignal != 0 {
            swmshim_report_fd_keep(options.statsFD, options.statsFDInode)
        }
        if options.statsPrint { _ = swmshim_atexit { Stats.printReport(atExit: true) } }
        else if options.statsSignal != 0 { _ = swmshim_atexit { Stats.endReports() } }
        if options.statsSignal != 0 { SignalReport.install(options.statsSignal) }
    }

    /// At the top of every allocation slow path: a statistics report requested by a signal
    /// in a fork child, where no reporter thread runs yet, starts one. Cost: one load.
    @inline(__always)
    static func slowPath() { SignalReport.poll() }

    /// A thread's heap is about to be detached: its VOS counters are folded into the
    /// process-wide ones and its table goes back to the pool.
    static func heapDetaching(_ heap: Heap) { VOSModules.detach(heap) }

    /// free() found `pointer` inside a block, not at its start: true when it was a VOS
    /// block (16 bytes past the block start), which is then credited and freed; false
    /// and the core reports the invalid free.
    static func freeInterior(_ pointer: UnsafeMutableRawPointer) -> Bool { VOS.releaseFromFree(pointer) }

    /// True when `pointer` is the caller pointer of a live VOS block (realloc and
    /// malloc_usable_size name such a misuse in their abort).
    static func isExtensionBlock(_ pointer: UnsafeMutableRawPointer) -> Bool { VOSBlock.locate(pointer) != nil }

    /// How far into its block the pointer an extension hands out lies (a VOS block's,
    /// past its header): free() of such a pointer whose block is free names a double free.
    static let interiorOffset = VOSBlock.headerSize

    /// free() of `pointer` in a huge mapping whose block starts at `blockStart` (not at
    /// `pointer`), the mapping claimed by the caller: true when it is a VOS block's caller
    /// pointer, which is then credited (the caller frees the mapping); false and the core
    /// reports the invalid free.
    static func releaseClaimedHuge(_ pointer: UnsafeMutableRawPointer, blockStart: UnsafeMutableRawPointer) -> Bool {
        VOS.releaseClaimedHuge(pointer, blockStart: blockStart)
    }

    /// Before fork: take the VOS locks (after the core's).
    static func forkPrepare() {
        VOSModules.lock.lockForFork()
        VOSModules.siteLock.lockForFork()
    }

    /// After fork, in the parent: release them.
    static func forkParent() {
        VOSModules.siteLock.unlock()
        VOSModules.lock.unlock()
    }

    /// After fork, in the child: reset them (their holders do not exist there), and close
    /// the reports' duplicate descriptor (`swmshim_report_fd_forget`).
    static func forkChild() {
        VOSModules.siteLock.reset()
        VOSModules.lock.reset()
        SignalReport.forkChild()
        swmshim_report_fd_forget()
    }

    /// Appends the extensions' sections to a statistics report: the VOS module table and
    /// leak report (JSON: `,"modules":[…],"sites":[…]`).
    static func writeReport(to fd: Int32, json: Bool) { VOSReport.write(to: fd, json: json) }
}
