// C API exports of the VOS layer (include/vos_mem.h, and the VOS section of
// include/swmalloc.h). The ABI of the first three is fixed: benchmarks call them through
// dlsym. `unsigned long` arrives as `UInt`, `unsigned int` as `UInt32`.

import CSwmShim

/// VOS_Malloc with site accounting: `size` bytes charged to `moduleId` and to the site
/// (`moduleId`, `file`, `line`).
@c(swmimpl_VOS_MallocWithDebug)
func VOS_MallocWithDebug(_ size: UInt, _ moduleId: UInt, _ file: UnsafePointer<UInt8>?, _ line: UInt32) -> UnsafeMutableRawPointer? {
    VOS.allocate(size, moduleId, withSite: true, file: file, line: line)
}

/// VOS_Malloc with module accounting only.
@c(swmimpl_VOS_MallocModule)
func VOS_MallocModule(_ size: UInt, _ moduleId: UInt) -> UnsafeMutableRawPointer? {
    VOS.allocate(size, moduleId, withSite: false, file: nil, line: 0)
}

/// Frees a block from any VOS allocation function (NULL is a no-op). `flags`:
/// bit 0 (VOS_FREE_ACCEPT_MALLOC) frees a plain malloc block instead of aborting.
@c(swmimpl_VOS_Free_Debug)
func VOS_Free_Debug(_ flags: UInt, _ pointer: UnsafeMutableRawPointer?, _ file: UnsafePointer<UInt8>?, _ line: UInt32) {
    VOS.free(pointer, flags: flags, file: file, line: line)
}

/// VOS calloc with site accounting.
@c(swmimpl_VOS_CallocWithDebug)
func VOS_CallocWithDebug(_ count: UInt, _ size: UInt, _ moduleId: UInt, _ file: UnsafePointer<UInt8>?, _ line: UInt32) -> UnsafeMutableRawPointer? {
    VOS.calloc(count, size, moduleId, withSite: true, file: file, line: line)
}

/// VOS calloc with module accounting only.
@c(swmimpl_VOS_CallocModule)
func VOS_CallocModule(_ count: UInt, _ size: UInt, _ moduleId: UInt) -> UnsafeMutableRawPointer? {
    VOS.calloc(count, size, moduleId, withSite: false, file: nil, line: 0)
}

/// VOS realloc with site accounting: the new block is charged to `moduleId` and the site.
@c(swmimpl_VOS_ReallocWithDebug)
func VOS_ReallocWithDebug(_ pointer: UnsafeMutableRawPointer?, _ size: UInt, _ moduleId: UInt, _ file: UnsafePointer<UInt8>?, _ line: UInt32) -> UnsafeMutableRawPointer? {
    VOS.realloc(pointer, size, moduleId, withSite: true, file: file, line: line)
}

/// VOS realloc with module accounting only.
@c(swmimpl_VOS_ReallocModule)
func VOS_ReallocModule(_ pointer: UnsafeMutableRawPointer?, _ size: UInt, _ moduleId: UInt) -> UnsafeMutableRawPointer? {
    VOS.realloc(pointer, size, moduleId, withSite: false, file: nil, line: 0)
}

/// Sets (bytes > 0) or removes (0) a module's quota; returns 0, or -1 with errno ENOMEM
/// when out of memory (before, errno was left as it was: an outside review).
@c(swmimpl_vos_set_quota)
func swm_vos_set_quota(_ moduleId: UInt, _ bytes: Int) -> Int32 {
    if VOSModules.setQuota(VOSModules.index(of: moduleId), UInt(bitPattern: bytes)) { return 0 }
    OS.setErrno(Int32(SWM_ENOMEM))
    return -1
}

/// Fills `swm_vos_module_stats_t` for a module ID; returns 0, or -1 when `out` is NULL.
@c(swmimpl_vos_module_stats)
func swm_vos_module_stats(_ moduleId: UInt, _ out: UnsafeMutableRawPointer?) -> Int32 {
    guard let out else { return -1 }
    out.assumingMemoryBound(to: VOSModuleSnapshot.self).pointee = VOSStats.module(moduleId)
    return 0
}

/// Fills up to `capacity` entries with the modules that have counts or a quota, in
/// increasing ID order; returns how many there are (possibly more than `capacity`).
@c(swmimpl_vos_modules)
func swm_vos_modules(_ out: UnsafeMutableRawPointer?, _ capacity: Int) -> Int {
    var count = 0
    VOSStats.forEachModule { s in
        if let out, count < capacity { out.assumingMemoryBound(to: VOSModuleSnapshot.self)[count] = s }
        count += 1
    }
    return count
}

/// Fills up to `capacity` entries with the sites that have allocations, the largest live
/// bytes first; returns how many there are.
@c(swmimpl_vos_sites)
func swm_vos_sites(_ out: UnsafeMutableRawPointer?, _ capacity: Int) -> Int {
    var count = 0
    VOSStats.forEachSite { s in
        if let out, count < capacity { out.assumingMemoryBound(to: VOSSiteSnapshot.self)[count] = s }
        count += 1
    }
    return count
}

/// Writes the VOS sections alone (module table and leak report; JSON: one object
/// `{"modules":[…],"sites":[…]}`) to `fd`, without calling malloc.
@c(swmimpl_vos_report)
func swm_vos_report(_ fd: Int32, _ json: Int32) {
    Stats.serialized { VOSReport.write(to: fd, json: json != 0, standalone: true) }
}
