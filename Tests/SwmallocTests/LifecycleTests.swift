// LifecycleTests.swift — remote frees racing page retire, segment release, thread exit
// and adoption; fork while other threads hold each allocator lock; memory that must not be
// kept (large blocks freed by another thread, emptied only pages after swm_collect,
// parked heaps of exited threads)
// (Tests/programs/remote_race.c, Tests/programs/lifecycle.c).

import Testing

/// The cases of lifecycle.c.
let lifecycleCases = [
    "remote_free_vs_exit", "fork_under_lock_churn", "producer_consumer_large", "collect_only_pages",
    "parked_heaps", "fork_child_thread_first", "parked_heaps_bounded",
]

/// The lifecycle of pages, segments and heaps under concurrency.
@Suite(.serialized) struct LifecycleTests {
    /// A remote free held (by the debug library's test hook) right after the compare-and-
    /// swap that publishes its block, while the owner collects the block, retires the page
    /// and gives the segment away (spare taken, segment cache full), then let go: it must
    /// not touch unmapped memory. Before the fix the segment was unmapped and the remote
    /// thread's read of the page's owner crashed with SIGSEGV. Run with `purge_delay_ms=0`:
    /// emptied segments are then purged at once and the cache holds 8, so the segment goes
    /// furthest away — retained, out of the segment map; and `background=0`, so that the
    /// purger does not collect the remote frees before the main thread does.
    @Test func remoteFreeRacingSegmentRelease() throws {
        let program = try compileProgram("remote_race.c", linking: .debug)
        let result = try runChild(program, environment: ["SWMALLOC_OPTIONS": "purge_delay_ms=0,background=0"],
                                  timeLimit: 60)
        #expect(result.succeeded, "\(result)")
        #expect(result.stdout == "remote race ok\n", "\(result)")
    }

    /// lifecycle.c knows exactly the cases this file runs.
    @Test func caseListMatches() throws {
        try expectCaseList("lifecycle.c", lifecycleCases)
    }

    /// One lifecycle case against one library: exits 0, says ok, reports nothing.
    @Test(arguments: lifecycleCases, Library.allCases)
    func lifecycle(_ name: String, _ library: Library) throws {
        let program = try compileProgram("lifecycle.c")
        let result = try runChild(program, [name], preload: library, timeLimit: 120)
        #expect(result.succeeded, "\(name) (\(library)): \(result)")
        #expect(result.stdout == "ok \(name)\n", "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }
}
