// C API exports: glibc's malloc extensions, answered from swmalloc's own state
// (Sources/CSwmShim/exports.c wraps the ones that return structures or take a FILE *).
// A program that calls them while swmalloc is its malloc must not reach glibc's idle
// allocator, which would report nothing true and trim nothing.

import Synchronization

import CSwmShim

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
/// | keepcost | bytes resident but in no block, and cached huge mappings: a lower bound of what `malloc_trim` gives back (it also purges the OS pages inside free blocks above 4 KiB of pages with live blocks) |
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

/// `malloc_stats()`'s body, written to the descriptor of `stderr` (the C wrapper has
/// flushed the stream): the text statistics report, as glibc prints its own there, and
/// as glibc's without waiting when that descriptor is non-blocking and full.
/// Returns 0, or -1 when a write failed.
@c(swmimpl_malloc_stats_fd)
func swm_malloc_stats_fd(_ fd: Int32) -> Int32 {
    Process.initialize()
    Stats.writeReport(to: fd, json: false, waitingForRoom: false)
    return swmshim_last_write_error() == 0 ? 0 : -1   // cleared by the wrapper
}

/// `malloc_info(0, stream)`'s body, written to the stream's descriptor (the C wrapper has
/// flushed the stream): an XML report in glibc's shape. Returns 0, or -1 when a write
/// failed.
@c(swmimpl_malloc_info_fd)
func swm_malloc_info_fd(_ fd: Int32) -> Int32 {
    Process.initialize()
    return Stats.writeMallocInfo(to: fd) ? 0 : -1
}

/// `mallopt(param, value)`: glibc's answers (1, success, for every parameter, unknown ones
/// included; 0 for `M_MXFAST` outside 0 … 160), so that programs that stop when a tuning
/// call fails (LinuxCNC's `rtapi_app` checks `M_TRIM_THRESHOLD` -1 and `M_MMAP_MAX` 0) run;
/// before, every parameter but one answered 0. What maps onto swmalloc: `M_TRIM_THRESHOLD`
/// (-1) 0, "give back every free byte at once", sets the purge delay to 1 ms, and any
/// other threshold puts the default delay back; a `purge_delay_ms` in `SWMALLOC_OPTIONS`
/// (the user's choice) wins over both. Not 0: glibc's threshold trims only the top of its
/// heap, while a delay of 0 purges at every free what the next allocation faults in again
/// (an outside review's program, 4 threads replacing blocks of 1 … 70,000 bytes, ran 2 … 4×
/// slower than on glibc, most of it in the kernel); 1 ms gives the memory back as soon
/// and lets a free-then-allocate cycle reuse it; the purger starts at once, so that what
/// the program frees goes back even if it allocates nothing more. With `background=0`
/// (no purger to give it back later) the delay is 0. The other parameters tune structures
/// swmalloc does not have (arenas, mmap threshold, top pad, fastbins, perturb, check
/// action).
@c(swmimpl_mallopt)
func swm_mallopt(_ param: Int32, _ value: Int32) -> Int32 {
    Process.initialize()
    let fastbinLimit: Int32 = 1, trimThreshold: Int32 = -1
    if param == fastbinLimit { return value >= 0 && value <= 160 ? 1 : 0 }
    if param == trimThreshold && !Options.current.pointee.purgeDelayGiven {
        let background = Options.current.pointee.background
        Options.current.pointee.purgeDelayMs = value != 0 ? Options.defaults.purgeDelayMs : background ? 1 : 0
        if value == 0 { Purger.start() }
    }
    return 1
}
