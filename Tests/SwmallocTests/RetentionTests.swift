// RetentionTests.swift — memory that must go back to the OS while threads sleep, and the
// background purger's lifecycle (Tests/programs/retention.c): the retention scenarios of
// the memory-policy review (idle threads' freed memory, large blocks held in idle threads'
// remote batches, a fork child that cannot reuse its parent's other threads' memory) and
// the purger's lazy start, its restart in a fork child, its off switch and its idle cost.

import Testing

/// The cases of retention.c.
let retentionCases = [
    "idle_threads", "idle_wide_pages", "remote_batch_idle", "fork_child_reuse", "purger_absent", "purger_lifecycle", "purger_off",
    "huge_cache_reuse", "big_freed_then_sleep", "big_freed_then_sleep_sync", "realloc_chain_then_sleep",
    "small_freed_then_sleep", "fork_child_sleeps", "remote_owner_sleeps", "remote_owner_sleeps_delay0", "pool_idle", "trickle_to_sleeping_owner",
    "trim_sleeping_owner_frees", "trim_right_after_trim", "trim_right_after_trim_sync", "trim_after_purger_walk", "locked_then_trimmed", "locked_then_trimmed_delay0", "trim_twice_before_purger", "owner_last_after_purger_walk", "huge_shrink",
    "huge_cache_refill", "huge_cut_cycles", "map_count_frees", "vfork_child_purger", "main_pthread_exit",
    "main_pthread_exit_reporter", "main_exit_fork_child", "main_exit_after_remote_frees", "long_lived_among_short", "long_lived_among_short_sync",
    "trim_sparse_survivors", "trim_sparse_survivors_exited", "sparse_survivors_exited_asleep", "sparse_survivors_exited_freed_later", "thread_churn_resident", "thread_churn_resident_sync",
    "thread_churn_wide_classes", "rare_allocators_among_short", "exit_after_remote_frees", "exit_after_remote_frees_sync",
    "locked_memory_resident", "partly_locked_span", "purger_retries_start", "vos_thread_tables", "purger_futex_refused", "purger_futex_eagain",
    "purger_futex_eintr", "purger_futex_zero", "purger_futex_etimedout", "purger_futex_refused_later", "reporter_futex_refused", "reporter_futex_eagain", "reporter_futex_etimedout", "purger_refused_then_main_exits",
    "main_exit_purger_stays", "main_exit_last_without_heap", "main_parked_in_destructor", "dlopen_worker_last_without_heap", "dlopen_worker_reporter",
    "dlopen_reporter_without_purger", "dlopen_fork_child",
    "fork_in_purger_create", "fork_in_purger_setname", "nested_thread_start",
    "main_exit_raw_thread",
    "main_exit_atexit_thread", "main_exit_thread_chain", "main_exit_threads_at_once", "main_exit_thread_churn", "main_exit_atexit_allocates", "main_exit_last_thread_state", "purger_start_race",
]

/// Options each case runs with (the defaults unless named here).
let retentionOptions = ["purger_off": "background=0", "big_freed_then_sleep_sync": "background=0",
                        "remote_owner_sleeps_delay0": "purge_delay_ms=0", "huge_cache_refill": "purge_delay_ms=10000",
                        "main_pthread_exit_reporter": "stats_signal=10", "reporter_futex_refused": "stats_signal=10", "reporter_futex_eagain": "stats_signal=10", "reporter_futex_etimedout": "stats_signal=10",
                        "dlopen_worker_reporter": "stats_signal=10", "dlopen_reporter_without_purger": "stats_signal=10", "nested_thread_start": "stats_signal=10",
                        "long_lived_among_short": "purge_delay_ms=0",
                        "long_lived_among_short_sync": "background=0,purge_delay_ms=0",
                        "thread_churn_resident_sync": "background=0", "trim_right_after_trim_sync": "background=0", "locked_then_trimmed_delay0": "purge_delay_ms=0", "exit_after_remote_frees_sync": "background=0"]

/// Memory retention and the background purger. Serialized: the cases read the resident
/// set size and the process's threads, so they run one at a time. Other suites may run
/// beside them (`.serialized` orders a suite's own tests only): the time bounds the cases
/// wait for (3 s for memory to go back, wakeups counted over a second) allow for a
/// loaded machine.
@Suite(.serialized) struct RetentionTests {
    /// retention.c knows exactly the cases this file runs.
    @Test func caseListMatches() throws {
        try expectCaseList("retention.c", retentionCases)
    }

    /// One case against one library: exits 0, says ok, and swmalloc reports nothing.
    @Test(arguments: retentionCases, Library.allCases)
    func retention(_ name: String, _ library: Library) throws {
        let program = try compileProgram("retention.c")
        var environment: [String: String] = [:]
        if let options = retentionOptions[name] { environment["SWMALLOC_OPTIONS"] = options }
        let result = try runChild(program, [name], environment: environment, preload: library, timeLimit: 120)
        #expect(result.succeeded, "\(name) (\(library)): \(result)")
        #expect(result.stdout.hasSuffix("ok \(name)\n"), "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }
}
