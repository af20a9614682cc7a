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

    /// `run` refuses a malformed `--option` and a missing program with a clear message; a
    /// program not found exits 127 and one that cannot run 126, as in the shell (before: 64).
    @Test func runRejectsBadInput() throws {
        let bad = try runChild(tool, ["run", "--option", "nokey", "--", "/bin/true"])
        #expect(!bad.succeeded && bad.stderr.contains("--option wants one key=value"), "\(bad)")
        let none = try runChild(tool, ["run", "--library", try Library.release.existingPath()])
        #expect(!none.succeeded && none.stderr.contains("Missing expected argument"), "\(none)")
        let missing = try runChild(tool, ["run", "--library", try Library.release.existingPath(), "--", "/nonexistent/prog"])
        #expect(missing.exitCode == 127 && missing.stderr.contains("cannot run /nonexistent/prog"), "\(missing)")
        let notRunnable = try runChild(tool, ["run", "--library", try Library.release.existingPath(), "--", "/etc/passwd"])
        #expect(notRunnable.exitCode == 126 && notRunnable.stderr.contains("cannot run /etc/passwd"), "\(notRunnable)")
        // A mistyped option before the program is an error, not the program's name (review
        // R49: it exited 127, "cannot run --stat").
        for subcommand in ["run", "stats"] {
            let typo = try runChild(tool, [subcommand, "--library", try Library.release.existingPath(), "--stat", "--", "/bin/true"])
            #expect(typo.exitCode == 64 && typo.stderr.contains("unknown option '--stat'"), "\(subcommand): \(typo)")
        }
    }

    /// A library the loader could not preload is refused before anything runs: a text
    /// file, a directory, a path with a ':' or white space (which split LD_PRELOAD), a
    /// bare file name (which the loader looks up in its library path), an executable, an
    /// object file (R49: the loader ignored it and the program ran on glibc). Before
    /// the fix the loader printed "cannot be preloaded", the program ran on glibc and `run`
    /// exited 0. `stats --top` below 0 is refused (it crashed), and so is a benchmark whose
    /// every allocator was skipped (it crashed on an empty table).
    @Test func badLibrariesAndArgumentsAreRefused() throws {
        let linkDir = "\(Paths.scratch)/with space"
        try FileManager.default.createDirectory(atPath: linkDir, withIntermediateDirectories: true)
        let spaced = "\(linkDir)/libswmalloc.so"
        try? FileManager.default.removeItem(atPath: spaced)
        try FileManager.default.copyItem(atPath: try Library.release.existingPath(), toPath: spaced)
        let executable = try compileProgram("regress.c")
        let object = "\(Paths.scratch)/units.o"
        let compiled = try runChild(try requireTool("cc", debianPackage: "gcc"),
                                    ["-c", "-fPIC", "-I", Paths.include, "\(Paths.programs)/units.c", "-o", object])
        #expect(compiled.succeeded, "\(compiled)")
        for (path, reason) in [("/etc/passwd", "not a shared library"), ("/tmp", "not a regular file"),
                               (spaced, "white space"), ("libswmalloc.so", "bare file name"),
                               (executable, "an executable"), (object, "an object file")] {
            let r = try runChild(tool, ["run", "--library", path, "--", "/bin/true"])
            #expect(!r.succeeded && r.stderr.contains(reason), "\(path): \(r)")
        }
        let top = try runChild(tool, ["stats", "--library", try Library.release.existingPath(), "--top=-1", "--", "/bin/true"])
        #expect(top.exitCode == 64 && top.stderr.contains("--top must be 0 or more"), "\(top)")
        let bench = try runChild(tool, ["bench", "--allocators", "jemalloc", "--lib-jemalloc", "/nonexistent/lib.so",
                                        "--workloads", "large", "--no-baselines"])
        #expect(bench.exitCode == 64 && bench.stderr.contains("no allocator to measure"), "\(bench)")
        #expect(bench.stderr.contains("jemalloc skipped: /nonexistent/lib.so: not found"), "\(bench)")
    }

    /// An outside review's findings (R15), each refused or handled now:
    /// - a relative `--library` went into LD_PRELOAD as written, so a child that changed
    ///   directory ran on glibc: the path is made absolute;
    /// - `--thp 'large,stats_print=1'` smuggled a second option in: refused;
    /// - `stats` of a script without `#!` failed (posix_spawnp has no /bin/sh fallback):
    ///   it runs, as under `run`, and its exit status comes back;
    /// - `bench` merged rows whose names collided (an `--allocator` named like a baseline, a
    ///   name twice in `--allocators` or `--workloads`): refused; a `--lib-swmalloc` that
    ///   cannot be preloaded dropped swmalloc from the run and exited 0: refused (another
    ///   allocator's bad `--lib-…` is skipped with a note that says why, not "not found");
    /// - a set-user-ID program silently ran on glibc: `run` says so (checked as root only,
    ///   which can give a file to another owner), and so it does for a program with file
    ///   capabilities run by another user (review R81).
    @Test func reviewR15ToolFindings() throws {
        let dir = Library.release.directory
        _ = try Library.release.existingPath()
        let relative = try runChild(tool, ["run", "--library", "./libswmalloc.so", "--", "/bin/sh", "-c", "cd / && echo $LD_PRELOAD"],
                                    directory: dir)
        #expect(relative.succeeded && relative.stdout.hasPrefix("/") && relative.stdout.hasSuffix("/libswmalloc.so\n"),
                "\(relative)")
        let thp = try runChild(tool, ["run", "--thp", "large,stats_print=1", "--", "/bin/true"])
        #expect(thp.exitCode == 64 && thp.stderr.contains("--thp wants segments, large, never or system"), "\(thp)")
        // The numeric flags are checked as the options table bounds them (the program ran
        // before, with the library's warning: an outside review).
        for (flag, value) in [("--background", "2"), ("--stats-signal", "9"), ("--stats-fd", "0"),
                              ("--purge-delay-ms", "1000001")] {
            let r = try runChild(tool, ["run", flag, value, "--", "/bin/true"])
            #expect(r.exitCode == 64 && r.stderr.contains("\(flag) wants"), "\(flag) \(value): \(r)")
        }
        // --background takes the table's `false` and `true` too (review R82: refused).
        for value in ["false", "true"] {
            let r = try runChild(tool, ["run", "--background", value, "--", "/bin/sh", "-c", "echo $SWMALLOC_OPTIONS"])
            #expect(r.succeeded && r.stdout == "background=\(value)\n", "\(value): \(r)")
        }
        let report = try runChild(tool, ["bench", "--report", "/nonexistent/results.json"])
        #expect(report.exitCode == 64 && report.stderr.contains("cannot read /nonexistent/results.json"), "\(report)")
        let script = "\(Paths.scratch)/no-shebang.sh"
        try "echo hi\nexit 3\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let stats = try runChild(tool, ["stats", "--library", try Library.release.existingPath(), "--", script])
        #expect(stats.exitCode == 3 && stats.stdout.hasPrefix("hi\n"), "\(stats)")
        for args in [["--allocators", "glibc", "--allocator", "vos-pool=\(try Library.release.existingPath())"],
                     ["--allocators", "glibc,glibc"], ["--allocators", "glibc", "--workloads", "large,large"],
                     ["--allocators", "swmalloc", "--lib-swmalloc", "/nonexistent/lib.so"]] {
            let r = try runChild(tool, ["bench", "--profile", "tiny", "-r", "1", "--no-baselines"] + args)
            #expect(r.exitCode == 64 && r.stderr.contains("Error:"), "\(args): \(r)")
        }
        // A static program: no loader reads LD_PRELOAD, so run and stats say so.
        let cc = try requireTool("cc", debianPackage: "gcc")
        let source = "\(Paths.scratch)/static-probe.c", binary = "\(Paths.scratch)/static-probe"
        try "int main(void) { return 0; }\n".write(toFile: source, atomically: true, encoding: .utf8)
        #expect(try runChild(cc, ["-static", source, "-o", binary]).succeeded)
        for command in ["run", "stats"] {
            let r = try runChild(tool, [command, "--library", try Library.release.existingPath(), "--", binary])
            #expect(r.stderr.contains("is statically linked: LD_PRELOAD has no effect on it"), "\(command): \(r)")
        }
        if getuid() == 0 {
            let setuid = "\(Paths.scratch)/setuid-true"
            try? FileManager.default.removeItem(atPath: setuid)
            // Copied by cp, not by this process: a file it held open for writing would be
            // inherited by the children other tests spawn meanwhile (exec: ETXTBSY).
            #expect(try runChild("/bin/cp", ["/bin/true", setuid]).succeeded)
            #expect(chown(setuid, 65534, 65534) == 0 && chmod(setuid, 0o4755) == 0)
            let r = try runChild(tool, ["run", "--library", try Library.release.existingPath(), "--", setuid])
            #expect(r.succeeded && r.stderr.contains("is set-user-ID: it runs in secure-execution mode, where the loader ignores LD_PRELOAD"),
                    "\(r)")
            // A program with file capabilities, run by a user other than root, is secure
            // too: `run` said nothing, and `stats` that no report came back (review R81).
            // The tool, the library and the program are copied where that user may run them.
            let setcap = try requireTool("setcap", debianPackage: "libcap2-bin")
            let setpriv = try requireTool("setpriv", debianPackage: "util-linux")
            let dir = try Paths.newDirectory("capabilities")
            #expect(chmod(Paths.scratch, 0o711) == 0 && chmod(dir, 0o755) == 0)
            for (from, to) in [(tool, "swmalloc-tool"), (try Library.release.existingPath(), "libswmalloc.so"),
                               ("/bin/true", "cap-true"), ("/bin/true", "cap-inheritable"), ("/bin/true", "cap-effective")] {
                #expect(try runChild("/bin/cp", [from, "\(dir)/\(to)"]).succeeded)
            }
            #expect(try runChild(setcap, ["cap_net_raw+ep", "\(dir)/cap-true"]).succeeded)
            // Inheritable capabilities alone grant nothing: no secure execution, no note
            // (review R84: it got one).
            #expect(try runChild(setcap, ["cap_net_raw+i", "\(dir)/cap-inheritable"]).succeeded)
            // With the effective flag they make it secure (review R87: no note).
            #expect(try runChild(setcap, ["cap_net_raw+ei", "\(dir)/cap-effective"]).succeeded)
            // The tool's `command` on `program`, as nobody.
            func asNobody(_ command: String, _ program: String) throws -> ChildResult {
                try runChild(setpriv, ["--reuid=65534", "--regid=65534", "--clear-groups", "\(dir)/swmalloc-tool",
                                       command, "--library", "\(dir)/libswmalloc.so", "--", "\(dir)/\(program)"])
            }
            for command in ["run", "stats"] {
                for program in ["cap-true", "cap-effective"] {
                    let r = try asNobody(command, program)
                    #expect(r.stderr.contains("\(program) has file capabilities: it runs in secure-execution mode"), "\(command): \(r)")
                }
                let inheritable = try asNobody(command, "cap-inheritable")
                #expect(!inheritable.stderr.contains("secure-execution"), "\(command): \(inheritable)")
            }
        }
    }

    /// `stats` hands its report pipe's number to the program's children too: a child of a
    /// shell that had opened a file of its own on that number wrote its JSON report into
    /// that file (an outside review: `exec 4>>app.log` in a script). The report goes only
    /// to the pipe `stats` made (`stats_fd_inode`); the shell's own report still arrives.
    @Test func statsLeavesChildrensFilesAlone() throws {
        let log = "\(Paths.scratch)/stats-child.log"
        try? FileManager.default.removeItem(atPath: log)
        let script = "for fd in 3 4 5 6 7 8 9; do eval \"exec $fd>>\(log)\"; done; echo start >&3; /bin/true; echo end >&3"
        let result = try runChild(tool, ["stats", "--library", try Library.release.existingPath(), "--", "/bin/bash", "-c", script])
        #expect(result.succeeded && result.stdout.contains("totals:"), "\(result)")
        let written = try String(contentsOfFile: log, encoding: .utf8)
        #expect(written == "start\nend\n", "\(written.prefix(300))")
    }

    /// `stats` ignores Ctrl-C only until its program has ended: a process the program left
    /// in the background may hold the report pipe for long, and Ctrl-C (SIGINT) must then
    /// end the tool (an outside review: it waited for the background `sleep`, and only
    /// SIGKILL ended it). The shell runs the tool as a job (`set -m`), so it starts with
    /// SIGINT at its default, as from a terminal.
    @Test func statsInterruptibleAfterProgramEnds() throws {
        let pidFile = "\(Paths.scratch)/stats-background.pid"
        try? FileManager.default.removeItem(atPath: pidFile)
        let script = """
            set -m
            "$0" stats --library "$1" -- sh -c 'sleep 60 & echo $! > "$1"; exit 0' sh "$2" > /dev/null 2>&1 &
            tool=$!
            for i in $(seq 1 100); do [ -s "$2" ] && break; sleep 0.05; done
            for i in $(seq 1 100); do kill -0 $tool 2>/dev/null || break; kill -INT $tool; sleep 0.05; done
            if kill -0 $tool 2>/dev/null; then echo stuck; kill -KILL $tool; fi
            wait $tool; echo "status $?"
            kill "$(cat "$2")"
            """
        let r = try runChild("/bin/bash", ["-c", script, tool, try Library.release.existingPath(), pidFile])
        #expect(r.stdout == "status 130\n", "\(r)")
    }

    /// A SIGTERM sent to the whole group (`timeout`, `kill %1`, a service manager) reaches
    /// the program too; one that shuts down on it gets its report printed: the tool waits
    /// for it (up to 3 s) instead of dying at once (an outside review: the report of a
    /// program that handles SIGTERM was lost).
    @Test func statsReportsAfterGroupTerminate() throws {
        let timeout = try requireTool("timeout", debianPackage: "coreutils")
        let r = try runChild(timeout, ["1", tool, "stats", "--library", try Library.release.existingPath(), "--",
                                       "/bin/bash", "-c", "trap 'exit 0' TERM; sleep 30 & wait"])
        #expect(r.exitCode == 124 && r.stdout.contains("totals:"), "\(r)")
    }

    /// Two races of the stop signals (an outside review): a SIGTERM the tool takes after
    /// its program already ended (the tool was stopped meanwhile) must not drop the report
    /// already in the pipe; and a program that closed the report pipe early (a daemon,
    /// `closefrom`) must not make the tool deaf to SIGTERM (it waited for the program in
    /// a blocking `waitpid`, for its whole run). Both end the tool by SIGTERM (143).
    @Test func statsStopSignalRaces() throws {
        let pidFile = "\(Paths.scratch)/stats-closed-pipe.pid", out = "\(Paths.scratch)/stats-stopped.out"
        try? FileManager.default.removeItem(atPath: pidFile)
        let script = """
            set -m
            "$0" stats --library "$1" -- /bin/bash -c 'sleep 0.5' > "$3" 2>&1 &
            tool=$!
            sleep 0.2; kill -STOP $tool; sleep 1; kill -TERM $tool; kill -CONT $tool
            # wait also returns (147) when it still sees the job stopped: wait for its end
            while :; do wait $tool; st=$?; [ $st -ne 147 ] && break; done
            echo "stopped $st $(grep -c totals "$3")"
            "$0" stats --library "$1" -- /bin/bash -c 'echo $$ > "$0"; for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec sleep 20' "$2" > /dev/null 2>&1 &
            tool=$!
            for i in $(seq 1 100); do [ -s "$2" ] && break; sleep 0.05; done
            sleep 0.3; kill -TERM $tool
            for i in $(seq 1 80); do kill -0 $tool 2>/dev/null || break; sleep 0.1; done
            if kill -0 $tool 2>/dev/null; then echo "closed still-waiting"; kill -KILL $tool; wait $tool; else wait $tool; echo "closed $?"; fi
            kill "$(cat "$2")"
            """
        let r = try runChild("/bin/bash", ["-c", script, tool, try Library.release.existingPath(), pidFile, out])
        #expect(r.stdout == "stopped 143 1\nclosed 143\n", "\(r)")
    }

    /// `stats` over a program whose processes end at the same time (eight children of a
    /// shell that exit together; the shell itself leaves with `_exit`, no report) gets
    /// every report whole: each process holds a lock on the report pipe while it writes.
    /// Before the fix their lines interleaved, and `swmalloc stats -- make -j2` failed to
    /// decode them and exited 1 (3 of 5 runs).
    @Test func statsOfProcessesExitingTogether() throws {
        let script = "for i in 1 2 3 4 5 6 7 8; do /bin/true & done; wait"
        let result = try runChild(tool, ["stats", "--library", try Library.release.existingPath(), "--", "/bin/sh", "-c", script])
        #expect(result.succeeded, "\(result)")
        let headings = result.stdout.split(separator: "\n").filter { $0.hasPrefix("process ") }
        #expect(headings.count == 8 && headings.last == "process 8 of 8", "\(result.stdout.prefix(400))")
        #expect(!result.stderr.contains("could not be read"), "\(result.stderr)")
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
        #expect(body["location"] as? String == "build folder", "\(body)")
        // A library elsewhere is labelled by where it lies, not where the tool does.
        let copy = "\(Paths.scratch)/libswmalloc-copy.so"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: lib, toPath: copy)
        let given = try runChild(tool, ["info", "--library", copy, "--json"])
        let givenBody = try #require(JSONSerialization.jsonObject(with: Data(given.stdout.utf8)) as? [String: Any], "\(given)")
        #expect(givenBody["location"] as? String == "given by --library or SWMALLOC_LIB", "\(givenBody)")
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
        // One version: include/swmalloc.h's macros, the library's swm_version and the tool's.
        let header = try String(contentsOfFile: Paths.include + "/swmalloc.h", encoding: .utf8)
        let parts = ["MAJOR", "MINOR", "PATCH"].map { part in
            header.split(separator: "\n").first { $0.hasPrefix("#define SWMALLOC_VERSION_\(part) ") }
                .map { String($0.split(separator: " ").last ?? "") } ?? "?"
        }
        let headerVersion = parts.joined(separator: ".")
        let toolVersion = try runChild(tool, ["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(toolVersion == headerVersion, "tool \(toolVersion), swmalloc.h \(headerVersion)")
        #expect(body["library_version"] as? String == headerVersion, "\(body)")
        #expect(text.stdout.contains("(swmalloc \(headerVersion), "), "\(text.stdout)")
        #expect(!text.stdout.contains("this tool"), "\(text.stdout)")
        let notSwmalloc = try runChild(tool, ["info", "--library", "/lib/x86_64-linux-gnu/libm.so.6"])
        #expect(!notSwmalloc.succeeded && notSwmalloc.stderr.contains("did not answer as swmalloc"), "\(notSwmalloc)")
    }
}
