// Extensions layer (VOS): allocation sites, (module, file, line) → site id.
//
// Site ids are dense (1, 2, …, in order of first sight), process-wide and never reused,
// so a thread table counts sites in a plain array. Finding the id of a call site:
//
//   1. the thread's site cache: 256 direct-mapped entries (file pointer, line | module << 32,
//      id), hit on every call after the first from the same site: two compares;
//   2. on a miss, the global hash index, read without a lock (a record is written before
//      its id is published in the index with a release store);
//   3. on first sight, registration under `VOSModules.siteLock`.
//
// A file is identified by its pointer (the `__FILE__` literal): the same name from two
// translation units makes two sites with the same text. Its text is copied when the site
// is registered, and reports print the copy: the literal lives in the caller's object,
// which `dlclose` may unmap while its blocks are still live (the leak report read it
// there and crashed). When 65,535 sites exist, new sites get id 0: their blocks are
// charged to their module only.

/// The site registry and the per-thread site cache.
enum VOSSites {
    /// Word `field` of site `s`'s global record: 0 file (the caller's pointer, the key),
    /// 1 line, 2 module, 3 folded bytes, 4 folded allocs, 5 folded frees, 6 the copy of the
    /// file name (0 when it could not be made).
    @inline(__always)
    static func record(_ g: UnsafeMutableRawPointer, _ s: Int, _ field: Int) -> AtomicWord {
        AtomicWord(g + VOSModules.globalSitesOffset + s &* VOSModules.globalSiteStride + field &* 8)
    }

    /// Number of sites registered (ids 1 ... count).
    static func count() -> Int {
        VOSModules.globalIfMapped == nil ? 0 : Int(VOSModules.siteCountWord.load()) - 1
    }

    /// The site id of (`module`, `file`, `line`) for the table's thread.
    @inline(__always)
    static func id(_ table: VOSTable, module: Int, file: UnsafePointer<UInt8>?, line: UInt32) -> Int {
        if let s = cachedId(table, module: module, file: file, line: line) { return s }
        let (entry, f, key) = cacheEntry(table, module: module, file: file, line: line)
        return miss(table, entry, f, key)
    }

    /// The site id of (`module`, `file`, `line`) when the thread's cache holds it, else nil
    /// (then `id`). It calls nothing.
    @inline(__always)
    static func cachedId(_ table: VOSTable, module: Int, file: UnsafePointer<UInt8>?, line: UInt32) -> Int? {
        let (entry, f, key) = cacheEntry(table, module: module, file: file, line: line)
        if _fastPath(entry[0] == f && entry[1] == key && f != 0) { return Int(entry[2]) }
        return nil
    }

    /// The thread cache's entry for (`module`, `file`, `line`), and the words it holds
    /// when it caches that site.
    @inline(__always)
    private static func cacheEntry(_ table: VOSTable, module: Int, file: UnsafePointer<UInt8>?, line: UInt32)
        -> (UnsafeMutablePointer<UInt>, UInt, UInt) {
        let f = UInt(bitPattern: file)
        let key = key(module: module, line: line)
        let slot = Int(((f &+ key) &* 0x9E37_79B9_7F4A_7C15) >> 56)
        return ((table.raw + VOSModules.tableSiteCacheOffset + slot &* 24).assumingMemoryBound(to: UInt.self), f, key)
    }

    /// The site id of (`module`, `file`, `line`) for a thread without a table (the global
    /// index, then registration; 0 when the registry is full).
    static func globalId(_ g: UnsafeMutableRawPointer, module: Int, file: UnsafePointer<UInt8>?, line: UInt32) -> Int {
        lookup(g, UInt(bitPattern: file), key(module: module, line: line))
    }

    /// The key of a site: its line and module in one word (the file pointer is the other).
    @inline(__always)
    private static func key(module: Int, line: UInt32) -> UInt { UInt(line) | UInt(module) << 32 }

    /// The registered site of (`f`, `key`), registered now if it is new (0: registry full).
    private static func lookup(_ g: UnsafeMutableRawPointer, _ f: UInt, _ key: UInt) -> Int {
        find(g, f, key) ?? register(g, f, key)
    }

    /// Cache miss: the global index, then registration; fills the cache entry.
    @inline(never)
    private static func miss(_ table: VOSTable, _ entry: UnsafeMutablePointer<UInt>, _ f: UInt, _ key: UInt) -> Int {
        let s = lookup(table.global, f, key)
        // Id 0 (registry full) is cached too, so such a site does not probe again.
        entry[0] = f
        entry[1] = key
        entry[2] = UInt(s)
        return s
    }

    /// Index slot `i` of the site hash index.
    @inline(__always)
    private static func indexSlot(_ g: UnsafeMutableRawPointer, _ i: Int) -> AtomicWord {
        AtomicWord(g + VOSModules.siteIndexOffset + i &* 8)
    }

    /// First index slot to probe for a key.
    private static func home(_ f: UInt, _ key: UInt) -> Int {
        Int(truncatingIfNeeded: ((f &* 0x9E37_79B9_7F4A_7C15) ^ (key &* 0xC2B2_AE3D_27D4_EB4F)) >> 20)
            & (VOSModules.siteIndexSlots - 1)
    }

    /// The registered site of a key, or nil (lock-free; linear probing, never deleted).
    private static func find(_ g: UnsafeMutableRawPointer, _ f: UInt, _ key: UInt) -> Int? {
        var i = home(f, key)
        while true {
            let s = Int(indexSlot(g, i).load())
            if s == 0 { return nil }
            if record(g, s, 0).loadRelaxed() == f
                && record(g, s, 1).loadRelaxed() == key & 0xFFFF_FFFF
                && record(g, s, 2).loadRelaxed() == key >> 32 {
                return s
            }
            i = (i + 1) & (VOSModules.siteIndexSlots - 1)
        }
    }

    /// Registers a new site under the site lock; 0 when the registry is full.
    private static func register(_ g: UnsafeMutableRawPointer, _ f: UInt, _ key: UInt) -> Int {
        VOSModules.siteLock.lock()
        defer { VOSModules.siteLock.unlock() }
        if let s = find(g, f, key) { return s }
        let s = Int(VOSModules.siteCountWord.loadRelaxed())
        if s >= VOSModules.siteCapacity { return 0 }
        record(g, s, 0).store(f)
        record(g, s, 6).store(copyName(UnsafePointer<UInt8>(bitPattern: f)))
        record(g, s, 1).store(key & 0xFFFF_FFFF)
        record(g, s, 2).store(key >> 32)
        var i = home(f, key)
        while indexSlot(g, i).loadRelaxed() != 0 { i = (i + 1) & (VOSModules.siteIndexSlots - 1) }
        indexSlot(g, i).store(UInt(s))
        VOSModules.siteCountWord.store(UInt(s + 1))
        return s
    }

    /// Longest file name kept: the reports print at most this many bytes of it.
    static let nameMax = 200
    /// Bytes mapped at a time for name copies.
    private static let nameChunk = 64 << 10

    /// A NUL-terminated copy of at most `nameMax` bytes of `file`, in memory that is never
    /// unmapped; 0 for a NULL file or when the OS has no memory. Under `siteLock`.
    private static func copyName(_ file: UnsafePointer<UInt8>?) -> UInt {
        guard let file else { return 0 }
        var n = 0
        while n < nameMax && file[n] != 0 { n += 1 }
        if VOSModules.nameNext.pointee + UInt(n + 1) > VOSModules.nameEnd.pointee {
            // Plain mmap, no retry: this runs under `siteLock`, and the retry takes the
            // cache locks, which a fork takes before it (see `VOSModules.global`).
            guard let chunk = OS.map(nameChunk) else { return 0 }
            VOSModules.nameNext.pointee = UInt(bitPattern: chunk)
            VOSModules.nameEnd.pointee = UInt(bitPattern: chunk) + UInt(nameChunk)
        }
        let copy = UnsafeMutablePointer<UInt8>(bitPattern: VOSModules.nameNext.pointee).unsafelyUnwrapped
        copy.update(from: file, count: n)
        copy[n] = 0
        VOSModules.nameNext.pointee += UInt(n + 1)
        return UInt(bitPattern: copy)
    }

    /// The file name of site `s` (swmalloc's copy of it; nil when there is none).
    static func file(_ g: UnsafeMutableRawPointer, _ s: Int) -> UnsafePointer<CChar>? {
        UnsafePointer<CChar>(bitPattern: record(g, s, 6).loadRelaxed())
    }
}
