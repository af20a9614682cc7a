// C API exports of the statistics and maintenance functions (include/swmalloc.h).

/// Fills `swm_stats_t`.
@c(swm_stats_get)
public func swm_stats_get(_ out: UnsafeMutableRawPointer?) -> Int32 {
    guard let out else { return -1 }
    out.assumingMemoryBound(to: StatsSnapshot.self).pointee = Stats.snapshot()
    return 0
}

/// Number of small size classes.
@c(swm_class_count)
public func swm_class_count() -> UInt32 { UInt32(SizeClass.count) }

/// Block size of class `c`, 0 when out of range.
@c(swm_class_size)
public func swm_class_size(_ c: UInt32) -> Int {
    Int(c) < SizeClass.count ? SizeClass.blockSize(Int(c)) : 0
}

/// Class serving `size` bytes, or the class count when the size is not small.
@c(swm_class_of)
public func swm_class_of(_ size: Int) -> UInt32 {
    size < 0 || size > Geometry.smallMax ? UInt32(SizeClass.count) : UInt32(SizeClass.of(size))
}

/// Fills `swm_class_stats_t` for class `c`.
@c(swm_class_stats_get)
public func swm_class_stats_get(_ c: UInt32, _ out: UnsafeMutableRawPointer?) -> Int32 {
    guard let out, Int(c) < SizeClass.count else { return -1 }
    out.assumingMemoryBound(to: ClassSnapshot.self).pointee = Stats.classSnapshot(Int(c))
    return 0
}

/// Bytes allocated by the calling thread since it started.
@c(swm_thread_allocated)
public func swm_thread_allocated() -> UInt64 { UInt64(Stats.threadCounters().allocated) }

/// Bytes freed by the calling thread since it started.
@c(swm_thread_freed)
public func swm_thread_freed() -> UInt64 { UInt64(Stats.threadCounters().freed) }

/// Writes the statistics report to `fd`.
@c(swm_stats_print)
public func swm_stats_print(_ fd: Int32, _ json: Int32) {
    Stats.writeReport(to: fd, json: json != 0)
}

/// Sends the calling thread's pending remote frees, adopts every abandoned segment (so
/// blocks freed into exited threads' memory go back) and purges all free spans now.
@c(swm_collect)
public func swm_collect() {
    let current = Heap.current
    guard let heap = current.isEmpty ? Heap.attach() : current else { return }
    heap.sendRemoteBatch()
    heap.tidy(force: true)
}

/// Checks the calling thread's heap; returns the number of violations.
@c(swm_validate)
public func swm_validate() -> Int32 {
    let heap = Heap.current
    return heap.isEmpty ? 0 : Int32(heap.validate())
}
