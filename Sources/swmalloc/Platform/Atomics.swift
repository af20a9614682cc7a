// Platform layer: atomic operations on words that live in raw allocator memory
// (page descriptors, lock words, the segment map). Relaxed loads compile to plain moves.

import Synchronization

/// Atomic access to a machine word at a raw address.
///
/// The allocator's metadata lives in memory it mapped itself, not in Swift-owned
/// storage, so `Atomic` is used through a typed pointer to that memory.
struct AtomicWord {
    /// The address of the word; it must be 8-byte aligned and stay mapped.
    let address: UnsafeMutableRawPointer

    @inline(__always) init(_ address: UnsafeMutableRawPointer) { self.address = address }

    @inline(__always) private var cell: UnsafeMutablePointer<Atomic<UInt>> {
        address.assumingMemoryBound(to: Atomic<UInt>.self)
    }

    @inline(__always) func load() -> UInt { cell.pointee.load(ordering: .acquiring) }
    @inline(__always) func loadRelaxed() -> UInt { cell.pointee.load(ordering: .relaxed) }
    @inline(__always) func store(_ v: UInt) { cell.pointee.store(v, ordering: .releasing) }
    @inline(__always) func exchange(_ v: UInt) -> UInt { cell.pointee.exchange(v, ordering: .sequentiallyConsistent) }
    @inline(__always) func loadSequentiallyConsistent() -> UInt { cell.pointee.load(ordering: .sequentiallyConsistent) }
    @inline(__always) func compareExchange(expected: UInt, desired: UInt) -> (exchanged: Bool, original: UInt) {
        cell.pointee.compareExchange(expected: expected, desired: desired, ordering: .acquiringAndReleasing)
    }
    @inline(__always) @discardableResult func add(_ v: UInt) -> UInt {
        cell.pointee.wrappingAdd(v, ordering: .relaxed).oldValue
    }
    @inline(__always) @discardableResult func subtract(_ v: UInt) -> UInt {
        cell.pointee.wrappingSubtract(v, ordering: .relaxed).oldValue
    }
    @inline(__always) func or(_ v: UInt) { _ = cell.pointee.bitwiseOr(v, ordering: .acquiringAndReleasing) }
    @inline(__always) func orSequentiallyConsistent(_ v: UInt) { _ = cell.pointee.bitwiseOr(v, ordering: .sequentiallyConsistent) }
    @inline(__always) func and(_ v: UInt) { _ = cell.pointee.bitwiseAnd(v, ordering: .acquiringAndReleasing) }
}
