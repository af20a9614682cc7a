// C API exports: the only place where C's rules live (errno, overflow, size 0, NULL,
// alignment checks). Each function is the hidden entry point `swmimpl_NAME`; the C
// forwarders in CSwmShim/exports.c export it as `NAME` and `swm_NAME` with default
// visibility, so LD_PRELOAD or -lswmalloc replaces the system allocator, while `swm_NAME`
// can be called on its own.
//
// `size_t` arrives as `Int`: a value above PTRDIFF_MAX is negative and fails with ENOMEM.

import CSwmShim

/// Allocates `size` bytes (16-byte aligned; malloc(0) returns a unique pointer).
@c(swmimpl_malloc)
func swm_malloc(_ size: Int) -> UnsafeMutableRawPointer? {
    Heap.allocate(size)
}

/// C++ `operator new` and `operator new[]` (exports.c): malloc's fast path, inlined; a
/// miss tail-jumps to the shim's `swmshim_cxx_new_slow` (malloc's slow path, then the C++
/// rules when memory is out), so no Swift frame is on the stack when that throws
/// std::bad_alloc.
@c(swmimpl_cxx_new)
func swm_cxx_new(_ size: Int) -> UnsafeMutableRawPointer? {
    guard let block = Heap.current.allocateFast(size) else { return swmshim_cxx_new_slow(size) }
    return block
}

/// 1 when `p` lies in memory swmalloc mapped (a segment of pages or a huge block's first
/// 4 MiB), else 0: `operator new`'s out-of-memory path takes a block from a module's own
/// `operator new` only when it came from swmalloc (a module's pool would reach swmalloc's
/// `delete`, which must abort for it).
@c(swmimpl_holds)
func swm_holds(_ p: UnsafeMutableRawPointer?) -> Int32 {
    SegmentMap.contains(UInt(bitPattern: p)) ? 1 : 0
}

/// Frees a block (NULL is a no-op); an invalid or double free aborts naming the pointer.
@c(swmimpl_free)
func swm_free(_ pointer: UnsafeMutableRawPointer?) {
    Heap.deallocate(pointer)
}

/// Allocates `count × size` zeroed bytes; NULL with ENOMEM when the product overflows.
/// The block's whole usable size (`malloc_usable_size`, which a program may use) reads
/// zero, as with glibc, jemalloc and mimalloc: the class size of a small block, the
/// span's bytes of a large one.
@c(swmimpl_calloc)
func swm_calloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let total = byteCount(count, size) else { return Heap.outOfMemory() }
    if total > Geometry.largeMax { return Heap.allocateHuge(total, zeroed: true) }
    guard let p = Heap.allocate(total) else { return nil }
    let usable = total <= Geometry.smallMax ? SizeClass.blockSize(SizeClass.of(total)) : Heap.usableSize(p, for: .usableSize)
    p.initializeMemory(as: UInt8.self, repeating: 0, count: usable)
    return p
}

/// Resizes a block as glibc does: NULL → malloc; size 0 → free and return NULL; on
/// failure NULL with ENOMEM and the block untouched. A pointer that is not a live block's
/// start aborts naming it, for size 0 too: free() would take a VOS block's pointer (and
/// credit its module), realloc() must not (docs/vos.md).
@c(swmimpl_realloc)
func swm_realloc(_ pointer: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let pointer else { return Heap.allocate(size) }
    if size == 0 {
        // A huge block is checked after the claim that keeps another thread's free of it
        // from unmapping it meanwhile (`Huge.claimForRealloc`).
        let p = UInt(bitPattern: pointer)
        if SegmentMap.containsHuge(p) {
            let segment = UnsafeMutablePointer<Segment>.of(p)
            Huge.claimForRealloc(pointer, segment: segment)
            Huge.freeClaimed(segment, heap: Heap.current)
            return nil
        }
        _ = Heap.usableSize(pointer, for: .realloc)
        Heap.deallocate(pointer)
        return nil
    }
    return Heap.reallocate(pointer, size)
}

/// realloc of `count × size` bytes; NULL with ENOMEM when the product overflows.
@c(swmimpl_reallocarray)
func swm_reallocarray(_ pointer: UnsafeMutableRawPointer?, _ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let total = byteCount(count, size) else { return Heap.outOfMemory() }
    return swm_realloc(pointer, total)
}

/// `count × size` for calloc and reallocarray, the arguments read as `size_t` (above
/// `PTRDIFF_MAX` they arrive negative); nil when the product does not fit `PTRDIFF_MAX`.
/// A product of 0 is 0 whatever the other factor (`calloc(SIZE_MAX, 0)` is a valid
/// zero-byte request, as in glibc).
@inline(__always)
private func byteCount(_ count: Int, _ size: Int) -> Int? {
    let (total, overflow) = UInt(bitPattern: count).multipliedReportingOverflow(by: UInt(bitPattern: size))
    if overflow || total > UInt(Int.max) { return nil }
    return Int(total)
}

/// True when `n`, read as a `size_t`, is a power of two (2^63 arrives as `Int.min`).
@inline(__always)
private func isPowerOfTwo(_ n: Int) -> Bool { n != 0 && n & (n &- 1) == 0 }

/// POSIX aligned allocation: EINVAL unless `alignment` is a power of two and a multiple
/// of `sizeof(void *)` (errno untouched); ENOMEM when out of memory, with errno set to
/// ENOMEM as glibc does (its own tests read errno after a failure).
@c(swmimpl_posix_memalign)
func swm_posix_memalign(_ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ alignment: Int, _ size: Int) -> Int32 {
    guard let out, isPowerOfTwo(alignment), alignment % MemoryLayout<UnsafeRawPointer>.size == 0 else {
        return Int32(SWM_EINVAL)
    }
    guard let p = Heap.allocateAligned(alignment, size) else { return Int32(SWM_ENOMEM) }
    out.pointee = p
    return 0
}

/// C11 aligned allocation: NULL with EINVAL unless `alignment` is a power of two.
@c(swmimpl_aligned_alloc)
func swm_aligned_alloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    guard isPowerOfTwo(alignment) else {
        OS.setErrno(Int32(SWM_EINVAL))
        return nil
    }
    return Heap.allocateAligned(alignment, size)
}

/// Obsolete aligned allocation, as glibc: an alignment that is not a power of two is
/// rounded up to the next one; one above 2^63 fails with EINVAL (2^63 itself with ENOMEM).
@c(swmimpl_memalign)
func swm_memalign(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    if alignment < 0 && alignment != Int.min {
        OS.setErrno(Int32(SWM_EINVAL))
        return nil
    }
    var a = alignment >= 0 && alignment < 16 ? 16 : alignment
    if !isPowerOfTwo(a) { a = 1 &<< (Int.bitWidth - (a - 1).leadingZeroBitCount) }
    return Heap.allocateAligned(a, size)
}

/// Page-aligned allocation.
@c(swmimpl_valloc)
func swm_valloc(_ size: Int) -> UnsafeMutableRawPointer? {
    Heap.allocateAligned(OS.pageSize, size)
}

/// Page-aligned allocation of whole pages (size rounded up; 0 gives one page).
@c(swmimpl_pvalloc)
func swm_pvalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    if size < 0 || size > Int.max - OS.pageSize { return Heap.outOfMemory() }
    let rounded = size == 0 ? OS.pageSize : (size + OS.pageSize - 1) & ~(OS.pageSize - 1)
    return Heap.allocateAligned(OS.pageSize, rounded)
}

/// Usable bytes of a block: exact (its size class), 0 for NULL; a pointer that is not a
/// live block (a freed one included) aborts naming it.
@c(swmimpl_malloc_usable_size)
func swm_malloc_usable_size(_ pointer: UnsafeMutableRawPointer?) -> Int {
    guard let pointer else { return 0 }
    return Heap.usableSize(pointer, for: .usableSize)
}

/// C23 free with the allocation's size (the size is not needed and not trusted).
@c(swmimpl_free_sized)
func swm_free_sized(_ pointer: UnsafeMutableRawPointer?, _ size: Int) {
    Heap.deallocate(pointer)
}

/// C23 free with the allocation's alignment and size.
@c(swmimpl_free_aligned_sized)
func swm_free_aligned_sized(_ pointer: UnsafeMutableRawPointer?, _ alignment: Int, _ size: Int) {
    Heap.deallocate(pointer)
}

/// The library's constructor (exports.c): `Process.start`.
@c(swmimpl_process_start)
func swm_process_start() {
    Process.start()
}

/// The library's destructor (exports.c), at the process's exit: a fatal error another
/// thread is reporting ends the process first (`OS.awaitFatalAtExit`).
@c(swmimpl_process_end)
func swm_process_end() {
    OS.awaitFatalAtExit()
}
