// Extensions layer (VOS): the 16-byte header in front of every VOS block.
//
// A VOS block is a core block of `size + 16` bytes; the caller gets `block + 16`, so the
// 16-byte alignment of the core is kept. The header says which module and site the block
// is charged to and how many bytes, and carries a check keyed on the block's address:
//
//     block + 0   word0 = size | module << 40 | quotaCounted << 57
//     block + 8   word1 = site | check << 24       (check: 40 bits of a hash of the
//                                                   address, word0 and the site)
//     block + 16  the caller's bytes
//
// The core's free stores its freed mark in `block + 8`, so a freed VOS block no longer
// passes the check: a second VOS_Free is reported, not absorbed.

/// The decoded header of a VOS block.
struct VOSHeader {
    /// Requested bytes (the `ulSize` of VOS_Malloc), what the module is charged.
    var size: UInt
    /// Module index (see `VOSModules.index(of:)`).
    var module: Int
    /// Site id, 0 for a block allocated without a site (module-only mode).
    var site: Int
    /// The block's bytes are also counted in the module's exact quota counter.
    var quotaCounted: Bool
}

/// Encoding, decoding and recognising VOS block headers.
enum VOSBlock {
    /// Bytes in front of the caller's pointer.
    static let headerSize = 16
    /// Largest VOS request: sizes must fit the header's 40-bit field (1 TiB).
    static let maxSize: UInt = (1 << 40) - 1
    /// word0: module index at bit 40 (17 bits), the quota flag at bit 57.
    private static let moduleShift: UInt = 40
    private static let moduleMask: UInt = (1 << 17) - 1
    private static let quotaBit: UInt = 1 << 57
    /// word1: site id in the low 24 bits, the check above.
    private static let siteMask: UInt = (1 << 24) - 1
    /// Mixed into the check ("VOS_MEM!").
    private static let checkKey: UInt = 0x564F_535F_4D45_4D21

    /// The check word's upper 40 bits for a header at `block` (one multiply).
    @inline(__always)
    private static func check(_ block: UInt, _ word0: UInt, _ site: UInt) -> UInt {
        ((block ^ word0 ^ (site << 40) ^ checkKey) &* 0x9E37_79B9_7F4A_7C15) & ~siteMask
    }

    /// Writes the header of `block` and returns the caller's pointer.
    @inline(__always)
    static func write(_ block: UnsafeMutableRawPointer, _ header: VOSHeader) -> UnsafeMutableRawPointer {
        let word0 = header.size | UInt(header.module) << moduleShift | (header.quotaCounted ? quotaBit : 0)
        let site = UInt(header.site)
        block.storeBytes(of: word0, as: UInt.self)
        block.storeBytes(of: site | check(UInt(bitPattern: block), word0, site), toByteOffset: 8, as: UInt.self)
        return block + headerSize
    }

    /// The header in front of `user` when it is a valid VOS header, else nil. The caller
    /// has made sure the 16 bytes in front of `user` are mapped (`locate`).
    @inline(__always)
    static func read(_ user: UnsafeMutableRawPointer) -> VOSHeader? {
        let block = user - headerSize
        let word0 = block.load(as: UInt.self)
        let word1 = block.load(fromByteOffset: 8, as: UInt.self)
        let site = word1 & siteMask
        if _slowPath(word1 & ~siteMask != check(UInt(bitPattern: block), word0, site)) { return nil }
        return VOSHeader(size: word0 & maxSize, module: Int((word0 >> moduleShift) & moduleMask),
                         site: Int(site), quotaCounted: word0 & quotaBit != 0)
    }

    /// The header of the VOS block whose caller pointer is `user`, or nil when `user` is not
    /// one: it must be 16-byte aligned, and `user - 16` the start of a live-looking core
    /// block (small or large page block start, or a huge block's start) whose header passes
    /// the check.
    ///
    /// A huge segment's header is read only when `user − 16` lies where a huge block may
    /// start (`Huge.mayBeBlockStart`): the pointer of a 4 MiB-aligned block has its
    /// `user − 16` in the segment below, which may be another thread's huge block, freed
    /// and unmapped at any moment (an outside review forced the SIGSEGV with gdb, from
    /// VOS_Free with VOS_FREE_ACCEPT_MALLOC of such a block).
    static func locate(_ user: UnsafeMutableRawPointer) -> VOSHeader? {
        let u = UInt(bitPattern: user)
        let b = u &- UInt(headerSize)
        if _slowPath(u & 15 != 0) { return nil }
        let mapKind = SegmentMap.byte(b)
        if _slowPath(mapKind == 0 || (mapKind == SegmentMap.huge
                                      && !Huge.mayBeBlockStart(UnsafeMutableRawPointer(bitPattern: b).unsafelyUnwrapped))) {
            return nil
        }
        let segment = UnsafeMutablePointer<Segment>.of(b)
        if _slowPath(mapKind == SegmentMap.huge) {
            if b != UInt(bitPattern: segment.base + segment.pointee.hugeOffset) { return nil }
            return read(user)
        }
        let page = segment.page(containing: b)
        let kind = page.pointee.kind
        if _slowPath((kind != .small && kind != .large) || !page.isBlockStart(b)) { return nil }
        return read(user)
    }
}
