// Memory layer: the sizes everything else is measured in.

/// Address-space geometry of swmalloc.
///
/// Memory comes from the OS in *segments* of 4 MiB aligned to 4 MiB, so the segment of
/// any pointer is `p & ~(segmentSize - 1)`. A segment is cut into 64 *slices* of 64 KiB;
/// slice 0 holds the segment header and page descriptors, the other 63 are handed out as
/// *pages* (spans of whole slices). Huge blocks get a segment of their own.
enum Geometry {
    static let segmentShift = 22
    static let segmentSize = 1 << segmentShift                // 4 MiB
    static let segmentMask = UInt(segmentSize - 1)
    static let sliceShift = 16
    static let sliceSize = 1 << sliceShift                    // 64 KiB
    static let slicesPerSegment = segmentSize >> sliceShift   // 64
    /// Slices a normal segment can hand out (slice 0 is its header).
    static let usableSlices = slicesPerSegment - 1
    /// User addresses are below 2^47 on x86-64/arm64 Linux with 4-level page tables.
    static let addressBits = 47
    /// Blocks above this size get a page of their own ("large": a span of slices).
    static let smallMax = 128 * 1024
    /// Blocks above this size get a segment of their own ("huge": mapped directly).
    static let largeMax = 2 * 1024 * 1024

    /// Slices that hold `bytes` bytes: whole slices, at least one.
    @inline(__always)
    static func slices(for bytes: Int) -> Int {
        bytes <= sliceSize ? 1 : (bytes + sliceSize - 1) >> sliceShift
    }
}
