// C API exports: glibc's malloc extensions, answered from swmalloc's own state
// (Sources/CSwmShim/exports.c wraps the ones that return structures or take a FILE *).
// A program that calls them while swmalloc is its malloc must not reach glibc's idle
// allocator, which would report nothing true and trim nothing.

import Synchronization

/// `malloc_trim(pad)`: gives back everything purgeable in the process (`swm_collect`);
/// returns 1 when any memory went back, 0 otherwise. `pad` is ignored: swmalloc keeps no
/// "top" of a heap to leave padded.
@c(swmimpl_malloc_trim)
func swm_malloc_trim(_ pad: Int) -> Int32 {
    swm_collect() > 0 ? 1 : 0
}

/// `mallinfo2()`'s ten fields from the statistics, written to `out` (ten `size_t`):
///
/// | field    | swmalloc's value |
/// |----------|------------------|
/// | arena    | bytes mapped for segments (all memory but huge blocks' mappings) |
/// | ordblks  | 0 (free spans are not counted) |
/// | smblks   | 0 (no fastbins) |
/// | hblks    | huge blocks (above 2 MiB) live |
/// | hblkhd   | bytes mapped for live huge blocks |
/// | usmblks  | 0 (as in glibc) |
/// | fsmblks  | 0 (no fastbins) |
/// | uordblks | bytes in live blocks inside segments |
/// | fordblks | arena − uordblks: bytes of segments in no live block |
/// | keepcost | bytes resident but in no block, and cached huge mappings: what `malloc_trim` would give back now |
@c(swmimpl_mallinfo2)
func swm_mallinfo2(_ out: UnsafeMutablePointer<UInt>?) {
    guard let out else { return }
    Process.initialize()
    let v = Stats.glibcView()
    out[0] = v.arena
    out[1] = 0
    out[2] = 0
    out[3] = v.totals.hugeBlocks
    out[4] = v.hugeMapped
    out[5] = 0
    out[6] = 0
    out[7] = v.inBlocks
    out[8] = v.arena &- v.inBlocks
    out[9] = v.purgeable
}

/// `malloc_stats()`: the text statistics report on stderr, as glibc prints its own there.
@c(swmimpl_malloc_stats)
func swm_malloc_stats() {
    Process.initialize()
    Stats.writeReport(to: 2, json: false)
}

/// `malloc_info(0, stream)`'s body, written to the stream's descriptor (the C wrapper has
/// flushed the stream): an XML report in glibc's shape. Returns 0, or -1 when a write
/// failed.
@c(swmimpl_malloc_info_fd)
func swm_malloc_info_fd(_ fd: Int32) -> Int32 {
    Process.initialize()
    return Stats.writeMallocInfo(to: fd) ? 0 : -1
}

/// `mallopt(param, value)`: 1 when the parameter maps onto an option of swmalloc and was
/// applied, 0 otherwise (as glibc answers a parameter it does not know). The one that
/// maps: `M_TRIM_THRESHOLD` (-1) with value 0, "give back every free byte at once", sets
/// `purge_delay_ms=0`. Every other parameter — arenas, mmap threshold, top pad, fastbins,
/// perturb, check action — tunes structures swmalloc does not have: 0.
@c(swmimpl_mallopt)
func swm_mallopt(_ param: Int32, _ value: Int32) -> Int32 {
    Process.initialize()
    let trimThreshold: Int32 = -1
    if param == trimThreshold && value == 0 {
        Options.current.pointee.purgeDelayMs = 0
        return 1
    }
    return 0
}
