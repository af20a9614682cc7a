// Extensions layer: the hooks the core calls into (statistics reports, VOS accounting).

import CSwmShim

/// Where the core hands control to the extensions, at moments that are rare and off the
/// fast paths: process start, a thread's heap detaching, and fork.
enum Extensions {
    /// After the first heap exists: report-at-exit and report-on-signal registration.
    static func processStarted() {
        let options = Options.current.pointee
        if options.statsPrint { _ = swmshim_atexit { Stats.printReport() } }
        if options.statsSignal != 0 { _ = swmshim_signal(options.statsSignal) { _ in Stats.printReport() } }
    }

    /// A thread's heap is about to be detached.
    static func heapDetaching(_ heap: Heap) {}

    static func forkPrepare() {}
    static func forkParent() {}
    static func forkChild() {}

    /// Appends the extensions' sections to a statistics report.
    static func writeReport(to fd: Int32, json: Bool) {}
}
