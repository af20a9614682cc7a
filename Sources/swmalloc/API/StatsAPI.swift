// C API exports of the statistics and maintenance functions (include/swmalloc.h).

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

/// Sends the calling thread's pending remote frees, retires its empty pages (a class's only
/// page included), adopts every abandoned segment (so blocks freed into exited threads'
/// memory go back) and purges all free spans now.
@c(swmimpl_collect)
func swm_collect() {
    let current = Heap.current
    if current.isExited { return }
    guard let heap = current.isEmpty ? Heap.attach(registerExit: true) : current else { return }
    heap.sendRemoteBatch()
    heap.retireEmptyClassPages()
    heap.tidy(force: true)
}

/// Checks the calling thread's heap; returns the number of violations.
@c(swmimpl_validate)
func swm_validate() -> Int32 {
    let heap = Heap.current
    return heap.isEmpty ? 0 : Int32(heap.validate())
}

#if DEBUG
/// Debug builds only: sets a function that every remote free calls right after the
/// compare-and-swap that publishes its blocks, with the page descriptor's address (NULL
/// removes it). Tests use it to hold that window open while the owner retires the page.
@c(swmimpl_debug_set_remote_hook)
func swm_debug_set_remote_hook(_ hook: UnsafeRawPointer?) {
    Globals.remoteFreeHook.pointee = hook
}
#endif
