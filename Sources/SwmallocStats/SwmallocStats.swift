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

/// One of swmalloc's C entry points, looked up in the process (swmalloc linked or
/// preloaded) at its first use and kept once found: a lookup per call cost 1.5 µs for
/// `threadCounters()` and 2.9 µs for `totals()` (an outside review). Not found, it is
/// looked up again at each use, so a library loaded later is found (caching the miss
/// left such a process with some entry points found and others not).
private struct EntryPoint<T: Sendable>: Sendable {
    let name: String
    let found: T?

    init(_ name: String) {
        self.name = name
        found = EntryPoint.lookUp(name)
    }

    /// The function, or nil when swmalloc is not loaded.
    var function: T? { found ?? EntryPoint.lookUp(name) }

    /// `dlsym` with `RTLD_DEFAULT` (the null handle).
    private static func lookUp(_ name: String) -> T? {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
        return unsafeBitCast(sym, to: T.self)
    }
}

/// The entry points the module calls.
private enum Entry {
    static let version = EntryPoint<@convention(c) () -> UInt32>("swm_version")
    static let statsGet = EntryPoint<@convention(c) (UnsafeMutableRawPointer?) -> Int32>("swm_stats_get")
    static let classCount = EntryPoint<@convention(c) () -> UInt32>("swm_class_count")
    static let classStatsGet = EntryPoint<@convention(c) (UInt32, UnsafeMutableRawPointer?) -> Int32>("swm_class_stats_get")
    static let threadAllocated = EntryPoint<@convention(c) () -> UInt64>("swm_thread_allocated")
    static let threadFreed = EntryPoint<@convention(c) () -> UInt64>("swm_thread_freed")
    static let statsPrint = EntryPoint<@convention(c) (Int32, Int32) -> Void>("swm_stats_print")
    static let vosModuleStats = EntryPoint<@convention(c) (UInt, UnsafeMutableRawPointer?) -> Int32>("swm_vos_module_stats")
    static let vosModules = EntryPoint<@convention(c) (UnsafeMutableRawPointer?, Int) -> Int>("swm_vos_modules")
    static let vosSites = EntryPoint<@convention(c) (UnsafeMutableRawPointer?, Int) -> Int>("swm_vos_sites")
    static let vosSetQuota = EntryPoint<@convention(c) (UInt, Int) -> Int32>("swm_vos_set_quota")
    static let vosReport = EntryPoint<@convention(c) (Int32, Int32) -> Void>("swm_vos_report")
}

/// Entry points into the loaded swmalloc, if any.
public enum Swmalloc {
    /// The loaded library's version ("1.1.0", from `swm_version`), or nil when swmalloc is
    /// not loaded.
    public static func version() -> String? {
        guard let fn = Entry.version.function else { return nil }
        let v = fn()
        return "\(v / 10000).\(v / 100 % 100).\(v % 100)"
    }

    /// True when swmalloc is loaded in this process.
    public static var isLoaded: Bool { Entry.statsGet.function != nil }

    /// Process totals, or nil when swmalloc is not loaded.
    public static func totals() -> SwmallocTotals? {
        guard let fn = Entry.statsGet.function else { return nil }
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
        guard let count = Entry.classCount.function, let get = Entry.classStatsGet.function else { return nil }
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
        guard let a = Entry.threadAllocated.function, let f = Entry.threadFreed.function else { return nil }
        return (a(), f())
    }

    /// Writes the report (text or JSON) to a file descriptor; false when not loaded.
    @discardableResult
    public static func printReport(fd: Int32 = 2, json: Bool = false) -> Bool {
        guard let fn = Entry.statsPrint.function else { return false }
        fn(fd, json ? 1 : 0)
        return true
    }
}

// MARK: - VOS accounting

/// One VOS module's counters summed over all threads (the C `swm_vos_module_stats_t`;
/// the JSON report's `modules` entries decode into it).
public struct VOSModuleStats: Sendable, Equatable, Codable {
    /// Module ID (65536 stands for every ID above 65535).
    public var module: UInt = 0
    /// Requested bytes of live blocks.
    public var liveBytes = 0
    /// Live blocks (allocs − frees).
    public var liveBlocks = 0
    /// Allocations and frees since start.
    public var allocs = 0, frees = 0
    /// Highest live bytes observed (a lower bound of the true peak; see docs/vos.md).
    public var peakBytes = 0
    /// The module's quota in bytes (0: none; a `size_t`, up to `SIZE_MAX`).
    public var quotaBytes: UInt = 0
    /// The live bytes counted against the quota, and the allocations it refused.
    public var quotaLiveBytes = 0, quotaRefused = 0

    /// All zero.
    public init() {}

    /// The JSON report's member names.
    enum CodingKeys: String, CodingKey {
        case module = "id", liveBytes = "live_bytes", liveBlocks = "live_blocks", allocs, frees
        case peakBytes = "peak_bytes", quotaBytes = "quota_bytes", quotaLiveBytes = "quota_live_bytes"
        case quotaRefused = "quota_refused"
    }

    /// Decodes a `modules` entry of the JSON report (`quota_live_bytes` 0 in a report
    /// of a library that did not write it).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        module = try c.decode(UInt.self, forKey: .module)
        liveBytes = try c.decode(Int.self, forKey: .liveBytes)
        liveBlocks = try c.decode(Int.self, forKey: .liveBlocks)
        allocs = try c.decode(Int.self, forKey: .allocs)
        frees = try c.decode(Int.self, forKey: .frees)
        peakBytes = try c.decode(Int.self, forKey: .peakBytes)
        quotaBytes = try c.decode(UInt.self, forKey: .quotaBytes)
        quotaLiveBytes = try c.decodeIfPresent(Int.self, forKey: .quotaLiveBytes) ?? 0
        quotaRefused = try c.decode(Int.self, forKey: .quotaRefused)
    }
}

/// One VOS allocation site (module, file, line) summed over all threads (the C
/// `swm_vos_site_stats_t`; the JSON report's `sites` entries decode into it).
public struct VOSSiteStats: Sendable, Equatable, Codable {
    /// The `__FILE__` and `__LINE__` the allocation passed, and its module ID.
    public var file = "", line = 0
    public var module: UInt = 0
    /// Requested bytes and number of live blocks allocated here.
    public var liveBytes = 0, liveBlocks = 0
    /// Allocations here and frees of them since start.
    public var allocs = 0, frees = 0

    /// All zero, no file.
    public init() {}

    /// The JSON report's member names.
    enum CodingKeys: String, CodingKey {
        case file, line, module, liveBytes = "live_bytes", liveBlocks = "live_blocks", allocs, frees
    }
}

extension Swmalloc {
    /// The C layout of `swm_vos_module_stats_t`, in words.
    static let moduleStatsWords = 9
    /// The C layout of `swm_vos_site_stats_t`, in words.
    static let siteStatsWords = 7

    /// Decodes one `swm_vos_module_stats_t`.
    static func moduleStats(_ w: UnsafeBufferPointer<Int>) -> VOSModuleStats {
        var s = VOSModuleStats()
        s.module = UInt(bitPattern: w[0])
        (s.liveBytes, s.liveBlocks, s.allocs, s.frees) = (w[1], w[2], w[3], w[4])
        (s.peakBytes, s.quotaLiveBytes, s.quotaRefused) = (w[5], w[7], w[8])
        s.quotaBytes = UInt(bitPattern: w[6])
        return s
    }

    /// A VOS module's counters, or nil when swmalloc is not loaded. IDs above 65535 all
    /// read the shared module 65536.
    public static func vosModule(_ id: UInt) -> VOSModuleStats? {
        guard let fn = Entry.vosModuleStats.function else { return nil }
        var raw = [Int](repeating: 0, count: moduleStatsWords)
        _ = raw.withUnsafeMutableBytes { fn(id, $0.baseAddress) }
        return raw.withUnsafeBufferPointer { moduleStats($0) }
    }

    /// Every VOS module with counts or a quota, by ID, or nil when swmalloc is not loaded.
    public static func vosModules() -> [VOSModuleStats]? {
        guard let fn = Entry.vosModules.function else { return nil }
        var capacity = 0
        while true {
            var raw = [Int](repeating: 0, count: max(capacity, 1) * moduleStatsWords)
            let count = raw.withUnsafeMutableBytes { fn($0.baseAddress, capacity) }
            if count <= capacity {
                return raw.withUnsafeBufferPointer { w in
                    (0..<count).map { moduleStats(UnsafeBufferPointer(rebasing: w[($0 * moduleStatsWords)...])) }
                }
            }
            capacity = count + 16
        }
    }

    /// Every VOS site with allocations, largest live bytes first (the leak report's
    /// order), or nil when swmalloc is not loaded.
    public static func vosSites() -> [VOSSiteStats]? {
        guard let fn = Entry.vosSites.function else { return nil }
        var capacity = 0
        while true {
            var raw = [Int](repeating: 0, count: max(capacity, 1) * siteStatsWords)
            let count = raw.withUnsafeMutableBytes { fn($0.baseAddress, capacity) }
            if count <= capacity {
                return (0..<count).map { i in
                    let w = Array(raw[(i * siteStatsWords)..<((i + 1) * siteStatsWords)])
                    var s = VOSSiteStats()
                    if let file = UnsafePointer<CChar>(bitPattern: w[0]) { s.file = String(cString: file) }
                    s.line = w[1]
                    s.module = UInt(bitPattern: w[2])
                    (s.liveBytes, s.liveBlocks, s.allocs, s.frees) = (w[3], w[4], w[5], w[6])
                    return s
                }
            }
            capacity = count + 16
        }
    }

    /// Sets (or with 0 removes) a VOS module's byte quota; false when swmalloc is not loaded,
    /// `bytes` is negative, or out of memory.
    @discardableResult
    public static func setVOSQuota(module: UInt, bytes: Int) -> Bool {
        guard bytes >= 0, let fn = Entry.vosSetQuota.function else { return false }
        return fn(module, bytes) == 0
    }

    /// Writes the VOS module table and leak report (text or JSON) to a file descriptor;
    /// false when swmalloc is not loaded.
    @discardableResult
    public static func printVOSReport(fd: Int32 = 2, json: Bool = false) -> Bool {
        guard let fn = Entry.vosReport.function else { return false }
        fn(fd, json ? 1 : 0)
        return true
    }
}

/// The JSON statistics report (`SWMALLOC_OPTIONS=stats_json=1`): process totals, size
/// classes, VOS modules and sites. Decode one line of the report with `JSONDecoder`.
public struct SwmallocReport: Sendable, Equatable, Decodable {
    /// The report's body.
    public struct Body: Sendable, Equatable, Decodable {
        /// Bytes in live blocks, resident, and mapped from the OS.
        public var allocated = 0, resident = 0, mapped = 0
        /// Allocations and frees since start.
        public var mallocs = 0, frees = 0
        /// VOS modules with counts, by ID.
        public var modules: [VOSModuleStats] = []
        /// VOS sites with allocations, largest live bytes first.
        public var sites: [VOSSiteStats] = []
    }

    /// The one top-level member, `"swmalloc"`.
    public var swmalloc: Body
}

