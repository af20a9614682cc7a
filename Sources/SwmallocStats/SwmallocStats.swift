// SwmallocStats — swmalloc's statistics for Swift programs.
//
// The functions are looked up at run time with dlsym, so a program that uses this module
// works whether swmalloc is linked, preloaded or absent (then every call returns nil), and
// the Embedded core is never linked statically into an ordinary Swift binary.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Process totals (the C `swm_stats_t`), in bytes unless said otherwise.
public struct SwmallocTotals: Sendable, Equatable {
    public var allocated = 0, active = 0, resident = 0, mapped = 0, returned = 0
    public var segments = 0, hugeBlocks = 0, heaps = 0, abandonedSegments = 0
    public var mallocs = 0, frees = 0, outOfMemory = 0
    public init() {}
}

/// One size class summed over all threads (the C `swm_class_stats_t`).
public struct SwmallocClassStats: Sendable, Equatable {
    public var blockSize = 0, allocs = 0, frees = 0, live = 0
    public init() {}
}

/// Entry points into the loaded swmalloc, if any.
public enum Swmalloc {
    /// Looks a symbol up in the process (swmalloc linked or preloaded).
    static func symbol<T>(_ name: String, as type: T.Type) -> T? {
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, name) else { return nil }
        return unsafeBitCast(sym, to: type)
    }

    /// True when swmalloc is loaded in this process.
    public static var isLoaded: Bool { symbol("swm_stats_get", as: UnsafeRawPointer.self) != nil }

    /// Process totals, or nil when swmalloc is not loaded.
    public static func totals() -> SwmallocTotals? {
        typealias Fn = @convention(c) (UnsafeMutableRawPointer?) -> Int32
        guard let fn = symbol("swm_stats_get", as: Fn.self) else { return nil }
        var raw = [Int](repeating: 0, count: 12)
        _ = raw.withUnsafeMutableBytes { fn($0.baseAddress) }
        var t = SwmallocTotals()
        (t.allocated, t.active, t.resident, t.mapped, t.returned) = (raw[0], raw[1], raw[2], raw[3], raw[4])
        (t.segments, t.hugeBlocks, t.heaps, t.abandonedSegments) = (raw[5], raw[6], raw[7], raw[8])
        (t.mallocs, t.frees, t.outOfMemory) = (raw[9], raw[10], raw[11])
        return t
    }

    /// Statistics of every size class, or nil when swmalloc is not loaded.
    public static func sizeClasses() -> [SwmallocClassStats]? {
        typealias Count = @convention(c) () -> UInt32
        typealias Get = @convention(c) (UInt32, UnsafeMutableRawPointer?) -> Int32
        guard let count = symbol("swm_class_count", as: Count.self),
              let get = symbol("swm_class_stats_get", as: Get.self) else { return nil }
        return (0..<count()).map { c in
            var raw = [Int](repeating: 0, count: 4)
            _ = raw.withUnsafeMutableBytes { get(c, $0.baseAddress) }
            var s = SwmallocClassStats()
            (s.blockSize, s.allocs, s.frees, s.live) = (raw[0], raw[1], raw[2], raw[3])
            return s
        }
    }

    /// Bytes the calling thread allocated and freed since it started, or nil.
    public static func threadCounters() -> (allocated: UInt64, freed: UInt64)? {
        typealias Fn = @convention(c) () -> UInt64
        guard let a = symbol("swm_thread_allocated", as: Fn.self),
              let f = symbol("swm_thread_freed", as: Fn.self) else { return nil }
        return (a(), f())
    }

    /// Writes the report (text or JSON) to a file descriptor; false when not loaded.
    @discardableResult
    public static func printReport(fd: Int32 = 2, json: Bool = false) -> Bool {
        typealias Fn = @convention(c) (Int32, Int32) -> Void
        guard let fn = symbol("swm_stats_print", as: Fn.self) else { return false }
        fn(fd, json ? 1 : 0)
        return true
    }
}
