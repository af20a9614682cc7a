// ToolTests.swift — the `swmalloc` command-line tool (swmalloc-tool in the build folder):
// its help and version, `run` (preload and options from flags, exit status passed on),
// `info` (what the library says of itself) and the help of every subcommand. `stats` and
// `bench` have their own suites (VOSTests, BenchTests).

import Foundation
import Testing

@Suite struct ToolTests {
    /// The tool in the release build folder.
    var tool: String { Library.release.directory + "/swmalloc-tool" }

    /// `--help` names the four subcommands; `--version` prints the version, also after each
    /// subcommand (run and stats tried to run a program named --version); `help SUB`,
    /// `SUB --help` and `SUB -h` work for each (a newcomer found `swmalloc-stats --help`
    /// broken: it tried to run a program named --help).
    @Test func helpAndVersion() throws {
        let help = try runChild(tool, ["--help"])
        #expect(help.succeeded, "\(help)")
        for sub in ["run", "stats", "bench", "info"] { #expect(help.stdout.contains("  \(sub) "), "\(help.stdout)") }
        let version = try runChild(tool, ["--version"])
        #expect(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3, "\(version)")
        // Every subcommand's help lists --version; run and stats took it for a program.
        for sub in ["run", "stats", "bench", "info"] {
            let r = try runChild(tool, [sub, "--version"])
            #expect(r.succeeded && r.stdout == version.stdout, "\(sub) --version: \(r)")
        }
        for sub in ["run", "stats", "bench", "info"] {
            for args in [[sub, "--help"], [sub, "-h"], ["help", sub]] {
                let r = try runChild(tool, args)
                #expect(r.succeeded, "\(args): \(r)")
                #expect(r.stdout.contains("USAGE: swmalloc \(sub)"), "\(args): \(r.stdout)")
            }
        }
    }

    /// `run` preloads the library with the options its flags name, and the program's exit
    /// status comes back unchanged.
    @Test func runPreloadsWithOptions() throws {
        let result = try runChild(
            tool, ["run", "--library", try Library.release.existingPath(), "--purge-delay-ms", "40", "--background", "0",
                   "--verbose", "--", "/bin/sh", "-c", "exit 7"])
        #expect(result.exitCode == 7, "\(result)")
        #expect(result.swmallocLines.contains { $0.hasPrefix("swmalloc: options purge_delay_ms=40 background=0 ") },
                "\(result.stderr)")
    }

    /// `run` refuses a malformed `--option` and a missing program with a clear message.
    @Test func runRejectsBadInput() throws {
        let bad = try runChild(tool, ["run", "--option", "nokey", "--", "/bin/true"])
        #expect(!bad.succeeded && bad.stderr.contains("--option wants one key=value"), "\(bad)")
        let none = try runChild(tool, ["run", "--library", try Library.release.existingPath()])
        #expect(!none.succeeded && none.stderr.contains("Missing expected argument"), "\(none)")
        let missing = try runChild(tool, ["run", "--library", try Library.release.existingPath(), "--", "/nonexistent/prog"])
        #expect(!missing.succeeded && missing.stderr.contains("cannot run /nonexistent/prog"), "\(missing)")
    }

    /// `info` asks the library itself: the options in force (SWMALLOC_OPTIONS applied, a
    /// bad one warned about) and the size classes, also as JSON. Before the fix, with
    /// stats_print=1,stats_fd=1 it took the report's numbers for size classes, and it
    /// showed verbose=1 whatever the environment said.
    @Test func infoReportsWhatTheLibrarySays() throws {
        let lib = try Library.release.existingPath()
        let text = try runChild(tool, ["info", "--library", lib], environment: ["SWMALLOC_OPTIONS": "purge_delay_ms=77,bogus=1"])
        #expect(text.succeeded, "\(text)")
        #expect(text.stdout.hasPrefix("swmalloc "), "\(text.stdout)")
        #expect(text.stdout.contains("options      purge_delay_ms=77 background=1"), "\(text.stdout)")
        #expect(text.stdout.contains("unknown option in SWMALLOC_OPTIONS (ignored): bogus=1"), "\(text.stdout)")
        #expect(text.stdout.contains("size classes 88: 16 "), "\(text.stdout)")
        let json = try runChild(tool, ["info", "--library", lib, "--json"])
        let body = try #require(JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json)")
        #expect((body["size_classes"] as? [Int])?.count == 88)
        #expect((body["options"] as? String)?.hasPrefix("purge_delay_ms=250 ") == true, "\(body)")
        // The environment's own verbose value is shown (the probe adds verbose=1), and a
        // report at exit on stdout does not pass for size classes.
        let busy = try runChild(tool, ["info", "--library", lib],
                                environment: ["SWMALLOC_OPTIONS": "verbose=0,stats_print=1,stats_fd=1"])
        #expect(busy.stdout.contains(" verbose=0 stats_print=1 "), "\(busy.stdout)")
        #expect(busy.stdout.contains("size classes 88: 16 32 "), "\(busy.stdout)")
        // verbose as the library parses it: `true` is 1, and a later bad value is ignored
        // (before the fix, both showed verbose=0).
        for options in ["verbose=true", "verbose=1,verbose=x"] {
            let on = try runChild(tool, ["info", "--library", lib], environment: ["SWMALLOC_OPTIONS": options])
            #expect(on.stdout.contains(" verbose=1 stats_print=0 "), "\(options): \(on.stdout)")
        }
        let notSwmalloc = try runChild(tool, ["info", "--library", "/lib/x86_64-linux-gnu/libm.so.6"])
        #expect(!notSwmalloc.succeeded && notSwmalloc.stderr.contains("did not answer as swmalloc"), "\(notSwmalloc)")
    }
}
