// StressTests.swift — the heavy C programs: the deterministic multithreaded stress test,
// fork from a multithreaded process, out of memory under `ulimit -v`, and memory going
// back to the OS. Serialized: each of them wants both cores, so they run one at a time
// (other suites may still run beside them: `.serialized` orders a suite's own tests only).

import Testing

/// Whole-process behaviour under load.
@Suite(.serialized) struct StressTests {
    /// stress.c (workers with cross-thread frees, realloc chains, aligned allocations,
    /// thread churn, content checks, periodic swm_validate) passes against the library.
    /// Against the debug one every thread exit also checks the heap invariants.
    @Test(arguments: Library.allCases)
    func multithreadedStress(_ library: Library) throws {
        let program = try compileProgram("stress.c", linking: library)
        let result = try runChild(program)
        #expect(result.succeeded, "stress (\(library)): \(result)")
        #expect(result.stdout.hasPrefix("stress ok:"), "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }

    /// purge_race.c with purge_delay_ms=1: the purger purges the blocks other threads
    /// freed into pages whose owners keep allocating and freeing (and malloc_trim does,
    /// every 7 ms), and no block handed out again loses what was written into it.
    @Test(arguments: Library.allCases)
    func purgerAgainstOwners(_ library: Library) throws {
        let program = try compileProgram("purge_race.c")
        let result = try runChild(program, ["5"], environment: ["SWMALLOC_OPTIONS": "purge_delay_ms=1"], preload: library)
        #expect(result.succeeded, "purge_race (\(library)): \(result)")
        #expect(result.stdout == "purge_race ok\n", "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }

    /// fork.c: children forked while three threads allocate can allocate, free, start a
    /// thread and validate their heap, and exit 0.
    @Test(arguments: Library.allCases)
    func forkFromThreads(_ library: Library) throws {
        let program = try compileProgram("fork.c", linking: library)
        let result = try runChild(program)
        #expect(result.succeeded, "fork (\(library)): \(result)")
        #expect(result.stdout == "fork ok\n")
    }

    /// oom.c under `ulimit -v 262144`, and under `ulimit -d 262144` (a data limit, which
    /// counts private writable mappings: malloc_trim gave no address space back under it
    /// alone, an outside review): allocation fails with NULL and ENOMEM (no crash),
    /// and works again once everything is freed, for huge, large and small sizes; after
    /// malloc_trim the program's own mapping fits; the capacity holds round after round
    /// of filling the limit and freeing; with the limit full of empty segments, a new
    /// thread's first malloc and the first VOS_Malloc give the caches' address space back
    /// and succeed; 3 MiB blocks cut from cached 9 MiB mappings keep no address space past
    /// their request (review R75).
    @Test(arguments: ["-v", "-d"], Library.allCases)
    func outOfMemory(_ limit: String, _ library: Library) throws {
        let program = try compileProgram("oom.c")
        let result = try runChild("/bin/sh", ["-c", "ulimit \(limit) 262144; exec \"$0\"", program], preload: library)
        #expect(result.succeeded, "oom, ulimit \(limit) (\(library)): \(result)")
        #expect(result.stdout.split(separator: "\n").count == 9, "\(result)")
        #expect(result.stdout.contains("capacity after 8 rounds"), "\(result)")
        #expect(result.stdout.contains("a new thread's malloc and VOS_Malloc succeed"), "\(result)")
    }

    /// rss.c: after ~256 MiB of blocks are touched and freed, the resident set size falls
    /// back to within 32 MiB of where it started (plus what is still live), whether the
    /// program calls swm_collect() or only sleeps past the purge delay (the background
    /// purger gives it back while no thread calls the allocator). `collect`/`delay`: 1 KiB
    /// and 64 KiB blocks, all freed, so whole
    /// segments empty. `fragmented-*`: 256 KiB blocks, every 16th kept, so every segment
    /// stays in use and the freed spans can only go back by purging. `thread-exit`: the
    /// blocks of `collect` are allocated by a thread that exits and freed by the main
    /// thread, which then allocates on 64 slow paths past the purge delay and collects.
    @Test(arguments: ["collect", "delay", "fragmented-collect", "fragmented-delay", "thread-exit"])
    func memoryGoesBackToTheOS(_ mode: String) throws {
        let program = try compileProgram("rss.c", linking: .release)
        let result = try runChild(program, [mode])
        #expect(result.succeeded, "rss \(mode): \(result)")
        #expect(result.stdout.hasPrefix("rss MiB"), "\(result)")
    }
}
