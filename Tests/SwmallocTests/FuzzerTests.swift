// FuzzerTests.swift — short deterministic runs of the model-checked random fuzzer
// (Tests/programs/fuzzer.c: every API call, cross-thread hand-off, thread churn, fork;
// content, usable size, alignment and overlap checked against a shadow model, swm_validate
// every 1,000 operations). Longer runs: `fuzzer --minutes N` with the library preloaded.

import Testing

/// The fuzzer's arguments for each short run: seeds, threads, and one run with forks.
let fuzzerRuns: [[String]] = [
    ["--seed", "1"],
    ["--seed", "2", "--threads", "3"],
    ["--seed", "3", "--fork"],
    ["--seed", "4", "--threads", "4", "--ops", "10000"],
]

/// The fuzzer finds no violation of the model.
@Suite(.serialized) struct FuzzerTests {
    /// One short run against one library: exits 0, says ok, and swmalloc reports nothing.
    @Test(arguments: fuzzerRuns, Library.allCases)
    func fuzz(_ arguments: [String], _ library: Library) throws {
        let program = try compileProgram("fuzzer.c")
        let result = try runChild(program, arguments, preload: library, timeLimit: 120)
        #expect(result.succeeded, "fuzzer \(arguments) (\(library)): \(result)")
        #expect(result.stdout.hasPrefix("fuzz ok: seed="), "\(result)")
        #expect(result.swmallocLines.isEmpty, "\(result.swmallocLines)")
    }

    /// The fuzzer's model holds for glibc too (no preload): the checks themselves are right.
    @Test func glibcPassesTheModel() throws {
        let program = try compileProgram("fuzzer.c")
        let result = try runChild(program, ["--seed", "5", "--fork"], timeLimit: 120)
        #expect(result.succeeded, "\(result)")
        #expect(result.stdout.hasPrefix("fuzz ok: seed=5"), "\(result)")
    }
}
