// C API exports of the statistics and maintenance functions (include/swmalloc.h).

/// The library's version, major · 10,000 + minor · 100 + patch: `SWMALLOC_VERSION` of
/// include/swmalloc.h, whose macros a program compares with it
/// (`ToolTests.infoReportsWhatTheLibrarySays` checks that the two, and the tool's version,
/// agree).
@c(swmimpl_version)
func swm_version() -> UInt32 { 1_01_00 }

/// Fills `swm_stats_t`.
@c(swmimpl_stats_get)
func swm_stats_get(_ out: UnsafeMutableRawPointer?) -> Int32 {
    guard let out else { return -1 }
    out.assumingMemoryBound(to: StatsSnapshot.self).pointee = Stats.snapshot()
    return 0
}

/// Number of small size classes.
@c(swmimpl_class_count)
func swm_class_count() -> UInt32 { UInt32(SizeClass.count) }

/// Block size of class `c`, 0 when out of range.
@c(swmimpl_class_size)
func swm_class_size(_ c: UInt32) -> Int {
    Int(c) < SizeClass.count ? SizeClass.blockSize(Int(c)) : 0
}

/// Class serving `size` bytes, or the class count when the size is not small.
@c(swmimpl_class_of)
func swm_class_of(_ size: Int) -> UInt32 {
    size < 0 || size > Geometry.smallMax ? UInt32(SizeClass.count) : UInt32(SizeClass.of(size))
}

/// Fills `swm_class_stats_t` for class `c`.
@c(swmimpl_class_stats_get)
func swm_class_stats_get(_ c: UInt32, _ out: UnsafeMutableRawPointer?) -> Int32 {
    guard let out, Int(c) < SizeClass.count else { return -1 }
    out.assumingMemoryBound(to: ClassSnapshot.self).pointee = Stats.classSnapshot(Int(c))
    return 0
}

/// Bytes allocated by the calling thread since it started.
@c(swmimpl_thread_allocated)
func swm_thread_allocated() -> UInt64 { UInt64(Stats.threadCounters().allocated) }

/// Bytes freed by the calling thread since it started.
@c(swmimpl_thread_freed)
func swm_thread_freed() -> UInt64 { UInt64(Stats.threadCounters().freed) }

/// Writes the statistics report to `fd`.
@c(swmimpl_stats_print)
func swm_stats_print(_ fd: Int32, _ json: Int32) {
    Stats.writeReport(to: fd, json: json != 0)
}

/// Gives back to the OS everything that can go, process-wide, without waiting for the
/// purge delay: the calling thread's remote batches and empty pages (a class's only page
/// included), every heap's free spans (a heap whose owner is inside the allocator is
/// skipped: it purges on its own), the abandoned segments' empty pages, the segment cache
/// and the huge cache, then the address space of empty segments (`Purger.collectAll`).
/// Other threads retire their empty class pages at their next allocation slow path.
/// Returns the bytes given back.
@c(swmimpl_collect)
func swm_collect() -> Int {
    if Heap.current.isExited { return 0 }
    Process.initialize()
    return Int(Purger.collectAll())
}

/// Times the background purger woke up since the process started (0 when it never ran):
/// its whole CPU cost is these passes.
@c(swmimpl_purger_wakeups)
func swm_purger_wakeups() -> UInt64 {
    UInt64(Purger.wakeups)
}

/// Small-block pages set up since the process started (a span becoming a page of a size
/// class): a count that keeps rising while a program repeats the same work means pages
/// are retired and set up again.
@c(swmimpl_pages_formatted)
func swm_pages_formatted() -> UInt64 {
    UInt64(Stats.pagesFormatted)
}

/// Checks the calling thread's heap; returns the number of violations.
@c(swmimpl_validate)
func swm_validate() -> Int32 {
    let heap = Heap.current
    if heap.isEmpty { return 0 }
    heap.spanLock.lock()
    let violations = heap.validate()
    heap.spanLock.unlock()
    return Int32(violations)
}

#if DEBUG
/// Debug builds only: sets a function that every remote free calls right after the
/// compare-and-swap that publishes its blocks, with the page descriptor's address (NULL
/// removes it). Tests use it to hold that window open while the owner retires the page.
@c(swmimpl_debug_set_remote_hook)
func swm_debug_set_remote_hook(_ hook: UnsafeRawPointer?) {
    Globals.remoteFreeHook.pointee = hook
}

/// Debug builds only: sets a function that a heap's release (a thread's exit, when its
/// heap is not parked) calls after giving its segments up and before leaving the
/// registry, with the heap's address (NULL removes it). Tests use it to run purger passes
/// at that moment.
@c(swmimpl_debug_set_release_hook)
func swm_debug_set_release_hook(_ hook: UnsafeRawPointer?) {
    Globals.releaseHook.pointee = hook
}

/// Debug builds only: sets a function called at each walk of the abandoned segments (by
/// the purger, `swm_collect`, or a heap in the purger's place; NULL removes it). Tests
/// count the walks with it.
@c(swmimpl_debug_set_collect_hook)
func swm_debug_set_collect_hook(_ hook: UnsafeRawPointer?) {
    Globals.collectHook.pointee = hook
}

/// Debug builds only: segments visited by span requests since start (`Heap.takeOwnSpan`).
/// Tests check with it that one request visits a bounded number.
@c(swmimpl_debug_segment_visits)
func swm_debug_segment_visits() -> UInt {
    Globals.segmentVisitCount.loadRelaxed()
}
#endif
