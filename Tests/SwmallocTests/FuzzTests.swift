// FuzzTests.swift — short deterministic runs of the model-checked random fuzzer
// (Tests/programs/fuzz.c): every allocation call on sizes from 0 to 8 MiB and alignments
// from 8 B to 4 MiB, blocks handed between threads, thread churn, fork; content,
// alignment, usable size and errno checked, a shadow interval map of every live block
// rejecting overlaps, swm_validate every 2,048 operations on each thread.
// Soak it by hand: `LD_PRELOAD=.build/release/libswmalloc.so fuzz --minutes 10 --fork`.
// Serialized: each run wants both cores.

import Testing

/// The fuzzer's arguments for each short run: four seeds, 2 to 4 threads, one run forking.
/// Each takes a few seconds against the release library (about twice that against the
/// debug one), so the suite stays near 30 s.
let fuzzRunArguments: [[String]] = [
    ["--seed", "1", "--threads", "2", "--ops", "40000"],
    ["--seed", "2", "--threads", "3", "--ops", "30000"],
    ["--seed", "3", "--threads", "4", "--ops", "20000"],
    ["--seed", "4", "--threads", "2", "--ops", "40000", "--fork"],
]

/// The fuzzer finds no violation of its model, against each library and against glibc.
@Suite(.serialized) struct FuzzTests {
    /// One short run against one library (preloaded): exits 0, prints `fuzz ok`, and
    /// swmalloc reports nothing on stderr. A failure's `fuzz FAIL:` line names the seed
    /// and what broke; rerun `fuzz` with the same arguments to reproduce it.
    @Test(arguments: fuzzRunArguments, Library.allCases)
    func fuzzRun(_ arguments: [String], _ library: Library) throws {
        let program = try compileProgram("fuzz.c")
        let result = try runChild(program, arguments, preload: library, timeLimit: 120)
        #expect(result.succeeded, "fuzz \(arguments.joined(separator: " ")) (\(library)): \(result)")
        #expect(result.stdout.hasPrefix("fuzz ok: seed="), "\(result)")
        #expect(!result.stderr.contains("fuzz FAIL:"), "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }

    /// The control: the same model holds for glibc's malloc (no preload), so a failure
    /// against swmalloc is swmalloc's, not the fuzzer's.
    @Test func glibcPassesTheModel() throws {
        let program = try compileProgram("fuzz.c")
        let result = try runChild(program, ["--seed", "5", "--threads", "3", "--ops", "30000", "--fork"], timeLimit: 120)
        #expect(result.succeeded, "fuzz against glibc: \(result)")
        #expect(result.stdout.hasPrefix("fuzz ok: seed=5 "), "\(result)")
        #expect(result.stdout.contains("no swm_validate: not swmalloc"), "\(result)")
    }
}
