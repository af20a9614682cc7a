// Extensions layer (VOS): allocation and free paths of the VOS API.
//
// Call tree:
//
//   VOS_MallocModule / VOS_MallocWithDebug ── VOS.allocate ── Heap.allocate(size + 16)
//        │                                       ├─ VOSModules.currentTable (TLS heap → table)
//        │                                       ├─ VOSSites.id (site mode: cache hit = 2 compares)
//        │                                       ├─ quota flag of the table (quota'd modules: admit)
//        │                                       └─ VOSTable.charge + VOSBlock.write
//   VOS_Free_Debug ── VOS.free ── VOSBlock.quickRead ── VOSTable.release ── Heap.deallocate(block)
//                        └─ VOS.freeSlow (huge block, or not a VOS block: VOSBlock.locate)
//   free() of a VOS block ── Heap.deallocateSlow ── Extensions.freeInterior ── VOS.releaseFromFree
//
// No lock and no atomic read-modify-write on these paths, except for modules with a quota.

import CSwmShim

/// The VOS allocation paths, shared by the C exports.
enum VOS {
    /// VOS_FREE_ACCEPT_MALLOC: VOS_Free of a plain malloc block frees it instead of aborting.
    static let acceptMallocFlag: UInt = 1

    /// A VOS block of `size` bytes charged to `module` (and to the site `file`:`line` when
    /// `withSite`); NULL with ENOMEM when out of memory or over the module's quota.
    @inline(__always)
    static func allocate(_ size: UInt, _ module: UInt, withSite: Bool,
                         file: UnsafePointer<UInt8>?, line: UInt32) -> UnsafeMutableRawPointer? {
        if _slowPath(size > VOSBlock.maxSize) { return Heap.outOfMemory() }
        // At least one byte after the header, so that `block + 16` lies inside the block
        // (for size 0 it would be the next block's start, and free() would take it for that).
        let request = Int(size) &+ (size == 0 ? VOSBlock.headerSize + 1 : VOSBlock.headerSize)
        guard let block = Heap.allocate(request) else { return nil }
        guard let table = VOSModules.currentTable() else {
            Heap.deallocate(block)
            return Heap.outOfMemory()
        }
        let m = VOSModules.index(of: module)
        var header = VOSHeader(size: size, module: m, site: 0, quotaCounted: false)
        if withSite { header.site = VOSSites.id(table, module: m, file: file, line: line) }
        if _slowPath(table.quotasExist) {
            let quota = VOSModules.globalModule(table.global, m, 4).loadRelaxed()
            if quota != 0 {
                if !VOSModules.admit(table.global, m, size, quota: quota) {
                    Heap.deallocate(block)
                    return Heap.outOfMemory()
                }
                header.quotaCounted = true
            }
        }
        table.charge(header)
        return VOSBlock.write(block, header)
    }

    /// Frees a VOS block (NULL is a no-op). A pointer that is not a live VOS block aborts
    /// naming it and the caller's file:line, unless `flags` has `acceptMallocFlag`, in
    /// which case it is handed to free().
    @inline(__always)
    static func free(_ user: UnsafeMutableRawPointer?, flags: UInt, file: UnsafePointer<UInt8>?, line: UInt32) {
        guard let user else { return }
        guard let header = VOSBlock.quickRead(user) else { return freeSlow(user, flags: flags, file: file, line: line) }
        release(header)
        Heap.deallocate(user - VOSBlock.headerSize)
    }

    /// VOS_Free of a huge VOS block, or of a pointer that is not a VOS block.
    @inline(never)
    static func freeSlow(_ user: UnsafeMutableRawPointer, flags: UInt, file: UnsafePointer<UInt8>?, line: UInt32) {
        guard let header = VOSBlock.locate(user) else {
            if flags & acceptMallocFlag != 0 { return Heap.deallocate(user) }
            misuse("VOS_Free(): not a block from VOS_Malloc, or already freed", user, file, line)
        }
        release(header)
        Heap.deallocate(user - VOSBlock.headerSize)
    }

    /// Credits a block's module and site on the calling thread.
    @inline(__always)
    static func release(_ header: VOSHeader) {
        if let table = VOSModules.currentTable() { table.release(header) } else { VOSModules.orphanRelease(header) }
    }

    /// free() of `pointer`, which the core found not to be a block start: if it is a VOS
    /// block, it is credited and freed, and the result is true.
    static func releaseFromFree(_ pointer: UnsafeMutableRawPointer) -> Bool {
        guard let header = VOSBlock.locate(pointer) else { return false }
        release(header)
        Heap.deallocate(pointer - VOSBlock.headerSize)
        return true
    }

    /// `count × size` zeroed bytes; NULL with ENOMEM when the product overflows.
    static func calloc(_ count: UInt, _ size: UInt, _ module: UInt, withSite: Bool,
                       file: UnsafePointer<UInt8>?, line: UInt32) -> UnsafeMutableRawPointer? {
        let (total, overflow) = count.multipliedReportingOverflow(by: size)
        if overflow { return Heap.outOfMemory() }
        guard let p = allocate(total, module, withSite: withSite, file: file, line: line) else { return nil }
        // Huge blocks are fresh mappings, already zero.
        if total + UInt(VOSBlock.headerSize) <= UInt(Geometry.largeMax) {
            p.initializeMemory(as: UInt8.self, repeating: 0, count: Int(total))
        }
        return p
    }

    /// realloc for VOS blocks: NULL → allocate; size 0 → free, NULL; otherwise a new block
    /// charged to `module` (and the site), the bytes copied, the old block freed. On
    /// failure NULL with ENOMEM and the old block untouched.
    static func realloc(_ user: UnsafeMutableRawPointer?, _ size: UInt, _ module: UInt, withSite: Bool,
                        file: UnsafePointer<UInt8>?, line: UInt32) -> UnsafeMutableRawPointer? {
        guard let user else { return allocate(size, module, withSite: withSite, file: file, line: line) }
        guard let old = VOSBlock.locate(user) else {
            misuse("VOS_Realloc(): not a block from VOS_Malloc, or already freed", user, file, line)
        }
        if size == 0 {
            free(user, flags: 0, file: file, line: line)
            return nil
        }
        guard let fresh = allocate(size, module, withSite: withSite, file: file, line: line) else { return nil }
        fresh.copyMemory(from: user, byteCount: Int(size < old.size ? size : old.size))
        release(old)
        Heap.deallocate(user - VOSBlock.headerSize)
        return fresh
    }

    /// Aborts with one line: `swmalloc: <message> (pointer 0x…) at file:line`.
    @inline(never)
    static func misuse(_ message: StaticString, _ pointer: UnsafeMutableRawPointer,
                       _ file: UnsafePointer<UInt8>?, _ line: UInt32) -> Never {
        var text = LineBuffer()
        text.append("swmalloc: ")
        text.append(message)
        text.append(" (pointer ")
        text.appendHex(UInt(bitPattern: pointer))
        text.append(")")
        if let file {
            text.append(" at ")
            text.append(cString: UnsafeRawPointer(file).assumingMemoryBound(to: CChar.self))
            text.append(":")
            text.append(UInt(line))
        }
        text.append("\n")
        text.write(to: 2)
        swmshim_abort()
    }
}
