// VOSTests.swift — the VOS API (include/vos_mem.h) and its accounting: exact module
// counters under a multithreaded stress with cross-thread frees, the leak report at exact
// file:line, quotas, the build macro and the fixed ABI, VOS and malloc blocks mixed up,
// fork, the cost program, the Swift API (SwmallocStats) and the `swmalloc stats` command.

import Foundation
import SwmallocStats
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The VOS cases of vos_misuse.c that end in an abort, and the message each must print.
let vosAbortCases: [(mode: String, message: String)] = [
    ("vos-free-malloc", "VOS_Free(): not a block from VOS_Malloc"),
    ("vos-free-huge-malloc", "VOS_Free(): not a block from VOS_Malloc"),
    ("vos-double-free", "VOS_Free(): not a block from VOS_Malloc, or already freed"),
    ("free-then-vos-free", "VOS_Free(): not a block from VOS_Malloc, or already freed"),
    ("vos-free-garbage", "VOS_Free(): not a block from VOS_Malloc"),
    ("vos-free-above-user-space", "VOS_Free(): not a block from VOS_Malloc"),
    ("free-vos-twice", "free(): double free of a VOS block's pointer, or a pointer 16 bytes into a freed block"),
    // realloc and malloc_usable_size name a VOS block as such (they said "not the start
    // of a block allocated by swmalloc", which misled: review R19).
    ("realloc-vos", "realloc(): invalid pointer: a VOS block (from VOS_Malloc): use VOS_Realloc"),
    ("realloc-vos-0", "realloc(): invalid pointer: a VOS block (from VOS_Malloc): use VOS_Realloc"),
    ("realloc-vos-huge-0", "realloc(): invalid pointer: a VOS block (from VOS_Malloc): use VOS_Realloc"),
    ("usable-size-vos", "malloc_usable_size(): invalid pointer: a VOS block (from VOS_Malloc)"),
    ("huge-reused-interior", "invalid pointer: not the start of an allocated block"),
]

/// The VOS API and its statistics.
@Suite struct VOSTests {
    /// vos_stress.c: with 8 threads freeing each other's blocks (VOS_Free and free()),
    /// every module's live bytes, live blocks, allocs and frees equal what the test holds,
    /// while the threads are alive and after they exited; the sum over modules too.
    @Test(arguments: Library.allCases)
    func exactAccountingUnderStress(_ library: Library) throws {
        let program = try compileProgram("vos_stress.c", linking: library)
        let result = try runChild(program)
        #expect(result.succeeded, "vos_stress (\(library)): \(result)")
        #expect(result.stdout.hasPrefix("vos stress ok:"), "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }

    /// vos_reads.c: statistics reads beside threads that allocate. A report blocked on a
    /// full pipe holds no lock that a new thread's first VOS calls need, and live blocks
    /// and bytes never wrap below zero while a producer and a consumer run (see the
    /// program's header for the cases).
    @Test(arguments: ["report_to_full_pipe", "counts_never_wrap"], Library.allCases)
    func readsBesideAllocatingThreads(_ name: String, _ library: Library) throws {
        try expectCaseList("vos_reads.c", linking: library, ["report_to_full_pipe", "counts_never_wrap"])
        let program = try compileProgram("vos_reads.c", linking: library)
        let result = try runChild(program, [name], timeLimit: 60)
        #expect(result.succeeded, "vos_reads \(name) (\(library)): \(result)")
        #expect(result.stdout.hasSuffix("ok \(name)\n"), "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }

    /// vos_accept_race.c (4 s, thp=system): VOS_Free with VOS_FREE_ACCEPT_MALLOC of plain
    /// 4 MiB-aligned blocks while another thread frees and allocates a huge block that
    /// often lies right below them: no abort. Before, VOS_Free claimed that huge block's
    /// mapping while it looked for a header, and either free aborted (1 of 3 runs).
    @Test(arguments: Library.allCases)
    func acceptMallocLeavesNeighboursAlone(_ library: Library) throws {
        let program = try compileProgram("vos_accept_race.c")
        let result = try runChild(program, ["4"], environment: ["SWMALLOC_OPTIONS": "thp=system"], preload: library,
                                  timeLimit: 60)
        #expect(result.succeeded, "vos_accept_race (\(library)): \(result)")
        #expect(result.stdout.hasPrefix("ok: "), "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }

    /// vos_peak.c (2 s each): a module's peak is exact while a thread reads the
    /// statistics during another's allocate/free loop, for blocks that publish on every
    /// call (3 MiB, 100,000 bytes) and every other call (60,000 bytes), and no read's live
    /// bytes exceed the block or the peak. Before, a read that crossed a publication
    /// counted its bytes twice: peaks of 2 … 3 × the true one.
    /// `fork 100`: children forked while a thread publishes on every call read a peak that
    /// reaches their live bytes (a fork inside a publication left the generation odd in
    /// the child: no read there raised the peak).
    /// `realloc`: a block resized in place (large, and huge with mremap) raises its
    /// module's peak to the larger size, not to both (review R61: 20 MiB shrunk to 12 MiB
    /// in place made the peak 32 MiB).
    /// `refused`: a refused VOS_Realloc of a quota-counted block keeps it in the quota's
    /// count (review R87: it was taken out, and its free wrapped the counter).
    @Test(arguments: ["3145728", "100000", "60000", "fork", "realloc", "refused"])
    func peakStaysExactUnderReads(_ size: String) throws {
        let program = try compileProgram("vos_peak.c", linking: .release)
        let seconds = size == "fork" ? "100" : size == "realloc" || size == "refused" ? "0" : "2"
        let result = try runChild(program, [size, seconds], timeLimit: 60)
        #expect(result.succeeded, "vos_peak \(size): \(result)")
        #expect(result.stdout.hasPrefix("ok: "), "\(result)")
    }

    /// vos_leaks.c: the planted leaks come out of the text leak report at their exact
    /// file:line, largest first, with their bytes and blocks; the fully freed site does not.
    @Test func leakReportFindsPlantedLeaks() throws {
        let program = try compileProgram("vos_leaks.c", linking: .release)
        let result = try runChild(program)
        #expect(result.succeeded, "\(result)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let planted = lines.filter { $0.hasPrefix("planted ") }.map { $0.split(separator: " ").map(String.init) }
        #expect(planted.count == 3, "\(result)")
        let reportStart = try #require(lines.firstIndex { $0.hasPrefix("VOS leak report") }, "\(result)")
        let rows = lines[(reportStart + 2)...].map { $0.split(separator: " ").map(String.init) }
        #expect(rows.count == planted.count, "\(lines)")
        for (row, plant) in zip(rows, planted) {
            // row: live bytes, live blocks, module, file:line; plant: "planted", file:line, bytes, blocks
            #expect(row.count == 4 && row[3] == plant[1] && row[0] == plant[2] && row[1] == plant[3], "\(row) vs \(plant)")
        }
        // The module table: 9 columns in every row, module 43's quota (SIZE_MAX, wider
        // than its column) included; the quota comes last, so every other column ends
        // under its heading whatever the quota's width (review R23: a quota of 1 TiB
        // pushed "refused" out of line). Module 43 has 300 live bytes, 100 of them under
        // its quota ("quota live").
        let tableStart = try #require(lines.firstIndex { $0.hasPrefix("VOS modules") }, "\(result)")
        let modules = lines[(tableStart + 2)..<reportStart].map { $0.split(separator: " ").map(String.init) }
        #expect(modules.map { $0.first } == ["40", "41", "42", "43"], "\(lines)")
        for row in modules { #expect(row.count == 9, "\(row)") }
        #expect(modules.last?[1] == "300" && modules.last?[6] == "100", "\(lines)")
        #expect(modules.last?[8] == "\(UInt.max)", "\(lines)")
        let heading = Array(lines[tableStart + 1])
        let refusedEnd = try #require(lines[tableStart + 1].range(of: "refused"), "\(lines)")
        let end = lines[tableStart + 1].distance(from: lines[tableStart + 1].startIndex, to: refusedEnd.upperBound)
        #expect(heading.count > end)
        for line in lines[(tableStart + 2)..<reportStart] {
            let chars = Array(line)
            #expect(chars.count > end && chars[end - 1].isNumber && chars[end] == " ", "\(line)")
        }
    }

    /// The JSON report at exit (stats_print, stats_json) decodes with SwmallocStats'
    /// `SwmallocReport` and carries the same modules and sites.
    @Test func jsonReportAtExitDecodes() throws {
        let program = try compileProgram("vos_leaks.c", linking: .release)
        let result = try runChild(program, environment: ["SWMALLOC_OPTIONS": "stats_print=1,stats_json=1,stats_fd=2"])
        #expect(result.succeeded, "\(result)")
        let line = try #require(result.stderr.split(separator: "\n").first { $0.hasPrefix("{\"swmalloc\"") }, "\(result)")
        let report = try JSONDecoder().decode(SwmallocReport.self, from: Data(line.utf8)).swmalloc
        #expect(report.modules.map(\.module) == [40, 41, 42, 43])
        #expect(report.modules.map(\.liveBytes) == [40000, 15000, 3000, 300])
        #expect(report.modules.map(\.liveBlocks) == [4, 3, 10, 2])
        #expect(report.modules.map(\.quotaLiveBytes) == [0, 0, 0, 100])
        #expect(report.modules.last?.quotaBytes == UInt.max)
        #expect(report.sites.count == 4)
        #expect(report.sites.map(\.liveBytes) == [40000, 15000, 3000, 0])
        #expect(report.sites.allSatisfy { $0.file.hasSuffix("vos_leaks.c") })
        #expect(report.sites.last?.allocs == 100 && report.sites.last?.frees == 100)
    }

    /// vos_quota.c: NULL with ENOMEM over the quota, counted; room again after frees by
    /// another thread; lifting the quota lifts the limit; a module with only refusals
    /// stays listed.
    @Test func quotaIsEnforced() throws {
        let program = try compileProgram("vos_quota.c", linking: .release)
        let result = try runChild(program)
        #expect(result.succeeded, "\(result)")
        #expect(result.stdout == "vos quota ok\n")
    }

    /// vos_modes.c: -DVOS_MEM_MODULE_ONLY records no site; the fixed ABI found with dlsym
    /// charges module + site or module, and VOS_Free_Debug frees both kinds.
    @Test func buildMacroAndFixedABI() throws {
        let program = try compileProgram("vos_modes.c", linking: .release)
        let result = try runChild(program)
        #expect(result.succeeded, "\(result)")
        #expect(result.stdout == "vos modes ok\n")
    }

    /// VOS blocks released with plain free() are credited to their module and site;
    /// VOS_FREE_ACCEPT_MALLOC lets VOS_Free take malloc blocks.
    @Test(arguments: ["free-vos", "accept-malloc"], Library.allCases)
    func mixedFreesAreAccounted(_ mode: String, _ library: Library) throws {
        let program = try compileProgram("vos_misuse.c", linking: library)
        let result = try runChild(program, [mode])
        #expect(result.succeeded, "\(mode) (\(library)): \(result)")
        #expect(result.stdout == "ok\n")
    }

    /// A malloc block (or a freed or foreign pointer) given to VOS_Free, and a VOS block
    /// given to realloc(), abort with one "swmalloc:" line naming the pointer (and, from
    /// VOS_Free, the caller's file:line).
    @Test(arguments: vosAbortCases.map(\.mode), Library.allCases)
    func misuseAborts(_ mode: String, _ library: Library) throws {
        let program = try compileProgram("vos_misuse.c", linking: library)
        let result = try runChild(program, [mode])
        #expect(result.signal == SIGABRT, "\(mode) (\(library)): \(result)")
        let announced = result.stdout.split(separator: "\n").first { $0.hasPrefix("pointer 0x") }
        let pointer = try #require(announced.map { String($0.dropFirst("pointer ".count)) }, "\(result)")
        let lines = result.swmallocLines
        #expect(lines.count == 1, "\(mode): \(lines)")
        let line = lines.first ?? ""
        #expect(hexNumbers(in: line).contains(pointer), "\(mode): \(line) should name \(pointer)")
        let message = vosAbortCases.first { $0.mode == mode }?.message ?? "?"
        #expect(line.contains(message), "\(mode): \(line)")
        if message.hasPrefix("VOS_Free") { #expect(line.contains("vos_misuse.c:"), "\(line)") }
    }

    /// vos_fork.c: children forked while other threads fold tables, register sites and
    /// read statistics can allocate, read and report (no VOS lock inherited held).
    @Test(arguments: Library.allCases)
    func forkWhileThreadsUseVOS(_ library: Library) throws {
        let program = try compileProgram("vos_fork.c", linking: library)
        let result = try runChild(program)
        #expect(result.succeeded, "vos_fork (\(library)): \(result)")
        #expect(result.stdout == "vos fork ok\n")
    }

    /// vos_cost.c (the README's cost figures) runs and prints one line per kind; timings
    /// are not asserted.
    @Test func costProgramRuns() throws {
        let program = try compileProgram("vos_cost.c", linking: .release)
        let result = try runChild(program, ["2", "20000"])
        #expect(result.succeeded, "\(result)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 3 && lines.allSatisfy { $0.contains(" ns/pair  ratio ") }, "\(result)")
    }

    /// The Swift API reads the same counters in-process (the library loaded with dlopen):
    /// modules, sites, quota.
    @Test func swiftAPIReadsCounters() throws {
        let path = try Library.release.existingPath()
        #expect(dlopen(path, RTLD_NOW | RTLD_GLOBAL) != nil, "dlopen \(path)")
        typealias Malloc = @convention(c) (UInt, UInt, UnsafePointer<UInt8>?, UInt32) -> UnsafeMutableRawPointer?
        typealias Free = @convention(c) (UInt, UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, UInt32) -> Void
        let vosMalloc = try #require(dlsym(dlopen(nil, RTLD_NOW), "VOS_MallocWithDebug").map { unsafeBitCast($0, to: Malloc.self) })
        let vosFree = try #require(dlsym(dlopen(nil, RTLD_NOW), "VOS_Free_Debug").map { unsafeBitCast($0, to: Free.self) })
        let file: StaticString = "swift-api.c"
        let module: UInt = 54321
        let blocks = (0..<5).map { _ in vosMalloc(1000, module, file.utf8Start, 99) }
        #expect(blocks.allSatisfy { $0 != nil })
        vosFree(0, blocks[0], nil, 0)
        let stats = try #require(Swmalloc.vosModule(module))
        #expect(stats.module == module && stats.liveBytes == 4000 && stats.liveBlocks == 4)
        #expect(stats.allocs == 5 && stats.frees == 1)
        #expect(Swmalloc.vosModules()?.contains(stats) == true)
        let site = try #require(Swmalloc.vosSites()?.first { $0.file == "swift-api.c" })
        #expect(site.line == 99 && site.module == module && site.liveBytes == 4000 && site.liveBlocks == 4)
        // The quota counts blocks allocated while it is set: one more fits, two do not.
        #expect(Swmalloc.setVOSQuota(module: module, bytes: 1500))
        let underQuota = vosMalloc(1000, module, file.utf8Start, 99)
        #expect(underQuota != nil)
        #expect(vosMalloc(1000, module, file.utf8Start, 99) == nil)
        #expect(Swmalloc.vosModule(module)?.quotaRefused == 1)
        #expect(Swmalloc.vosModule(module)?.quotaLiveBytes == 1000)
        #expect(Swmalloc.setVOSQuota(module: module, bytes: 0))
        for block in blocks.dropFirst() + [underQuota] { vosFree(0, block, nil, 0) }
        #expect(Swmalloc.vosModule(module)?.liveBytes == 0)
    }

    /// `swmalloc stats` runs a program with the library preloaded, prints its module table
    /// and leak report at exit, and passes on its exit status.
    @Test func statsCommandPrintsLeakReport() throws {
        let tool = Library.release.directory + "/swmalloc-tool"
        let program = try compileProgram("vos_leaks.c", linking: .release)
        let result = try runChild(tool, ["stats", "--library", try Library.release.existingPath(), "--", program])
        #expect(result.succeeded, "\(result)")
        let out = result.stdout
        let table = try #require(out.range(of: "VOS leak report: 3 sites with live blocks"), "\(out)")
        let after = out[table.upperBound...].split(separator: "\n").dropFirst(2).prefix(3)
        #expect(after.map { $0.split(separator: " ").first.map(String.init) ?? "" } == ["40000", "15000", "3000"], "\(out)")
        #expect(after.allSatisfy { $0.contains("vos_leaks.c:") })
        // Module 43's quota, SIZE_MAX, last in its row, after a space (the tool read no
        // report with a quota above LONG_MAX, and ran a 13-digit quota into the peak),
        // and its 100 bytes under the quota ("quota live", before "refused").
        let row43 = try #require(out.split(separator: "\n").first { $0.split(separator: " ").first == "43" }, "\(out)")
        let cells = row43.split(separator: " ").map(String.init)
        #expect(cells.count == 9 && cells[8] == "\(UInt.max)" && cells[6] == "100", "\(out)")
        let failing = try runChild(tool, ["stats", "--library", try Library.release.existingPath(), "--", "/bin/sh", "-c", "exit 3"])
        #expect(failing.exitCode == 3, "\(failing)")
    }
}
