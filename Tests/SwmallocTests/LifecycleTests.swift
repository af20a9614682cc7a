// LifecycleTests.swift — remote frees racing page retire, segment release, thread exit
// and adoption; fork while other threads hold each allocator lock, while the purger works,
// and with fork handlers that allocate; memory that must not be kept (large blocks freed
// by another thread, emptied only pages after swm_collect, parked heaps of exited threads,
// heaps of threads that ended without their exit handler)
// (Tests/programs/remote_race.c, Tests/programs/lifecycle.c, Tests/programs/atfork_early.c).

import Foundation
import Testing

/// The cases of lifecycle.c.
let lifecycleCases = [
    "remote_free_vs_exit", "fork_under_lock_churn", "producer_consumer_large", "collect_only_pages",
    "parked_heaps", "fork_child_thread_first", "parked_heaps_bounded", "fork_during_purge",
    "fork_parked_release", "fork_grandchildren", "last_round_threads", "last_round_two_starters",
    "fork_during_reap", "abandoned_count_exact", "cancel_in_report", "vfork_first_malloc",
    "late_destructor_blocks", "vos_fork_under_limit", "join_after_big_frees",
    "release_window_lists", "fork_during_release", "release_window_churn", "abandoned_walks_bounded",
    "fork_from_exit_destructor", "fork_after_signal",
]

/// The cases that hold a window open with a test hook only the debug library has; they
/// fail on the release library rather than pass having tested nothing (review R51).
let lifecycleDebugOnlyCases = ["release_window_lists", "fork_during_release", "abandoned_walks_bounded"]

/// The options some lifecycle cases need: the purger at work all the time.
let lifecycleOptions = ["fork_during_purge": "purge_delay_ms=0", "fork_parked_release": "purge_delay_ms=1",
                        "late_destructor_blocks": "background=0", "release_window_churn": "purge_delay_ms=1",
                        "release_window_lists": "background=0", "last_round_two_starters": "background=0",
                        "abandoned_count_exact": "background=0", "fork_during_reap": "background=0,purge_delay_ms=0",
                        "abandoned_walks_bounded": "background=0,purge_delay_ms=1000",
                        "fork_after_signal": "stats_signal=10"]

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

    /// Fork handlers registered before swmalloc's (by a library the program needs, whose
    /// constructor runs before a preloaded swmalloc's) allocate and free large and huge
    /// blocks in the prepare, the parent and the child handler: the fork finishes.
    /// Before the fix each one deadlocked on the fork's own locks.
    @Test(arguments: ["prepare", "parent", "child"], Library.allCases)
    func forkHandlersRegisteredEarlierMayAllocate(_ mode: String, _ library: Library) throws {
        let cc = try requireTool("cc", debianPackage: "gcc")
        let source = "\(Paths.programs)/atfork_early.c"
        let directory = "\(Paths.scratch)/atfork-\(mode)-\(library)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let lib = try runChild(cc, ["-O1", "-shared", "-fPIC", "-pthread", "-DATFORK_EARLY_LIB", source,
                                    "-o", "\(directory)/libatforkearly.so"])
        #expect(lib.succeeded, "\(lib)")
        let program = try runChild(cc, ["-O1", "-pthread", source, "-o", "\(directory)/atfork_early",
                                        "-Wl,--no-as-needed", "-L", directory, "-latforkearly",
                                        "-Wl,-rpath,\(directory)"])
        #expect(program.succeeded, "\(program)")
        for (size, count) in [("300000", "64"), ("5000000", "1")] {
            let result = try runChild("\(directory)/atfork_early",
                                      environment: ["ATFORK_MODE": mode, "ATFORK_SIZE": size, "ATFORK_COUNT": count],
                                      preload: library, timeLimit: 60)
            #expect(result.succeeded && result.stdout == "atfork ok\n", "\(mode) \(size)×\(count): \(result)")
        }
    }

    /// lifecycle.c knows exactly the cases this file runs.
    @Test func caseListMatches() throws {
        try expectCaseList("lifecycle.c", lifecycleCases)
    }

    /// purger_exit.c: the main thread's pthread_exit while another thread's start of the
    /// purger is failing; the process ends with its last thread. Before the fix the failed
    /// start undid the main thread's stop, a purger started a second later and the
    /// process never ended (review R12).
    @Test(arguments: Library.allCases)
    func mainThreadExitDuringFailedPurgerStart(_ library: Library) throws {
        try expectEnds("purger_exit.c", linking: library, saying: "purger exit ok\n")
    }

    /// signal_thread_start.c `handler`: a signal handler's malloc, the one that starts the
    /// purger, while its thread is inside pthread_join, which holds the lock
    /// pthread_create takes. That waits for good (a known limitation, README), but the
    /// process must stay killable: swmalloc blocked the caller's signals around
    /// pthread_create, and only SIGKILL ended it (review R80). SIGTERM after 3 s must end
    /// it (or it survived and said so).
    @Test(arguments: Library.allCases)
    func handlerThreadStartStaysKillable(_ library: Library) throws {
        let program = try compileProgram("signal_thread_start.c", linking: library)
        let script = """
            "$0" handler & pid=$!; sleep 3; kill -TERM $pid 2>/dev/null; sleep 2
            if kill -0 $pid 2>/dev/null; then kill -KILL $pid; wait $pid; echo stuck; else wait $pid; echo "status $?"; fi
            """
        let r = try runChild("/bin/sh", ["-c", script, program], timeLimit: 30)
        #expect(r.stdout == "status 143\n" || r.stdout == "signal thread start ok\nstatus 0\n", "\(library): \(r)")
    }

    /// signal_thread_start.c `sigwait`, `blocked`: signals blocked in every thread,
    /// without or with handlers (a server's, a pool's pattern), do not keep the purger
    /// from starting (versions that put starts off in what they took for handlers did:
    /// reviews R84, R85).
    @Test(arguments: ["sigwait", "blocked"], Library.allCases)
    func blockedSignalsStartThePurger(_ mode: String, _ library: Library) throws {
        try expectEnds("signal_thread_start.c", [mode], linking: library, saying: "signal thread start ok\n")
    }

    /// Runs `source` linked with `library`, with `arguments`: it ends within 20 s (a hang
    /// is the failure these programs look for), exits 0 and prints `output`.
    func expectEnds(_ source: String, _ arguments: [String] = [], linking library: Library, saying output: String) throws {
        let program = try compileProgram(source, linking: library)
        let result = try runChild(program, arguments, timeLimit: 20)
        #expect(result.succeeded, "\(library): \(result)")
        #expect(result.stdout == output, "\(result)")
    }

    /// One lifecycle case against one library: exits 0, says ok, reports nothing.
    @Test(arguments: lifecycleCases.filter { !lifecycleDebugOnlyCases.contains($0) }, Library.allCases)
    func lifecycle(_ name: String, _ library: Library) throws {
        try expectLifecycleCase(name, library)
    }

    /// The cases that need the debug library's hooks, on it.
    @Test(arguments: lifecycleDebugOnlyCases)
    func lifecycleWithDebugHooks(_ name: String) throws {
        try expectLifecycleCase(name, .debug)
    }

    /// Runs lifecycle case `name` against `library`: exits 0, says ok, reports nothing.
    func expectLifecycleCase(_ name: String, _ library: Library) throws {
        let program = try compileProgram("lifecycle.c")
        let environment = lifecycleOptions[name].map { ["SWMALLOC_OPTIONS": $0] } ?? [:]
        let result = try runChild(program, [name], environment: environment, preload: library, timeLimit: 120)
        #expect(result.succeeded, "\(name) (\(library)): \(result)")
        #expect(result.stdout == "ok \(name)\n", "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }
}
