import Foundation
import Testing

/// Tests of `swmalloc bench`'s own logic, end to end: the built driver and workload program
/// run as child processes, and their JSON is read back. No timing thresholds.
@Suite("Bench")
struct BenchTests {
    /// A minimal sample object for a hand-written results file.
    private func sample(_ workload: String, _ allocator: String, _ repetition: Int, _ time: Double?) -> [String: Any] {
        var values: [String: Any] = ["workload": workload, "api": "malloc"]
        if let time { values["time_s"] = String(time) }
        var s: [String: Any] = [
            "workload": workload, "allocator": allocator, "repetition": repetition, "arguments": [String](),
            "wallSeconds": 0.1, "cpuSeconds": 0.1, "peakRSSKB": 1000 * repetition, "rusageMaxRSSKB": 2000,
            "values": values,
        ]
        if let time { s["time"] = time } else { s["error"] = "exit status 1" }
        return s
    }

    /// A hand-written results file with known samples.
    private func writeDocument(_ samples: [[String: Any]], to path: String) throws {
        let document: [String: Any] = [
            "date": "2026-01-01T00:00:00Z",
            "machine": ["cpuModel": "test CPU", "cpus": 2, "kernel": "6.0"],
            "command": ["swmalloc-bench"], "profile": "tiny", "repetitions": 3, "threads": 2,
            "allocators": [["name": "a"], ["name": "b"]], "notes": [String](), "samples": samples,
            "summaries": [Any](),
        ]
        try JSONSerialization.data(withJSONObject: document).write(to: URL(fileURLWithPath: path))
    }

    @Test("median, min, max, ratio and geometric mean are computed from the samples")
    func statistics() throws {
        let dir = try BenchSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = dir + "/in.json", output = dir + "/out.json"
        try writeDocument(
            [
                sample("w1", "a", 1, 3), sample("w1", "b", 1, 8), sample("w1", "a", 2, 1), sample("w1", "b", 2, 4),
                sample("w1", "a", 3, 2), sample("w1", "b", 3, 4),
                sample("w2", "a", 1, 9), sample("w2", "b", 1, 1), sample("w2", "a", 2, 5), sample("w2", "b", 2, 2),
                sample("w2", "a", 3, nil), sample("w2", "b", 3, 3),
            ], to: input)
        let run = try BenchSupport.run(BenchSupport.tool, ["bench", "--report", input, "--json", output, "--svg", dir + "/c.svg"])
        #expect(run.status == 0, "\(run.stderr)")
        let json = try BenchSupport.readJSON(output)
        let summaries = try #require(json["summaries"] as? [[String: Any]])
        func summary(_ w: String, _ a: String) -> [String: Any]? {
            summaries.first { $0["workload"] as? String == w && $0["allocator"] as? String == a }
        }
        let w1a = try #require(summary("w1", "a")), w1b = try #require(summary("w1", "b"))
        #expect(w1a["median"] as? Double == 2)
        #expect(w1a["min"] as? Double == 1)
        #expect(w1a["max"] as? Double == 3)
        #expect(w1a["ratio"] as? Double == 1)
        #expect(w1a["peakRSSMedianKB"] as? Double == 2000)
        #expect(w1b["median"] as? Double == 4)
        #expect(w1b["ratio"] as? Double == 2)
        // An even count of good runs: the median is the mean of the middle two.
        let w2a = try #require(summary("w2", "a")), w2b = try #require(summary("w2", "b"))
        #expect(w2a["median"] as? Double == 7)
        #expect(w2a["runs"] as? Int == 2)
        #expect(w2a["failures"] as? Int == 1)
        #expect(w2b["median"] as? Double == 2)
        #expect(w2a["ratio"] as? Double == 3.5)
        let means = try #require(json["geometricMeans"] as? [String: Double])
        // a: ratios 1 and 3.5 → √3.5; b: ratios 2 and 1 → √2.
        #expect(abs((means["a"] ?? 0) - 3.5.squareRoot()) < 1e-12)
        #expect(abs((means["b"] ?? 0) - 2.0.squareRoot()) < 1e-12)
        #expect(run.stdout.contains("geometric mean"))
        #expect(run.stdout.contains("w2 on a, repetition 3: exit status 1"))
        let svg = try String(contentsOfFile: dir + "/c.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
    }

    @Test("a results file survives a JSON round trip unchanged")
    func jsonRoundTrip() throws {
        let dir = try BenchSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = dir + "/first.json", second = dir + "/second.json"
        let run = try BenchSupport.run(
            BenchSupport.tool,
            ["bench", "--profile", "tiny", "-r", "2", "--allocators", "glibc", "--workloads", "single-loop,rss-return",
             "--json", first, "--svg", dir + "/c.svg"])
        #expect(run.status == 0, "\(run.stderr)")
        let again = try BenchSupport.run(BenchSupport.tool, ["bench", "--report", first, "--json", second])
        #expect(again.status == 0, "\(again.stderr)")
        let a = try BenchSupport.readJSON(first), b = try BenchSupport.readJSON(second)
        #expect(NSDictionary(dictionary: a).isEqual(to: b))
        let samples = try #require(a["samples"] as? [[String: Any]])
        // single-loop on glibc and on the vos-pool baseline, rss-return on glibc; twice each.
        #expect(samples.count == 6)
        #expect(samples.map { $0["repetition"] as? Int } == [1, 1, 2, 2, 1, 2])
    }

    @Test("bad options are refused with a message and a non-zero status")
    func optionErrors() throws {
        let cases: [([String], String)] = [
            (["--repetitions", "0"], "--repetitions"),
            (["--allocators", "glibc,nosuch"], "unknown allocator 'nosuch'"),
            (["--workloads", "nosuch"], "unknown workload 'nosuch'"),
            (["--set", "nosuchkey=1"], "no selected workload has a parameter 'nosuchkey'"),
            // Review R49: settings no selected workload takes, counts of 0 or below and an
            // empty workload list were accepted.
            (["--workloads", "larson,large", "--set", "size=128"], "no selected workload has a parameter 'size'"),
            (["--workloads", "larson", "--set", "larson.bogus=1"], "workload 'larson' has no parameter 'bogus'"),
            (["--workloads", "single-loop", "--set", "larson.ops=1"], "workload 'larson' is not selected"),
            (["--workloads", "vos-cost", "--set", "vos-cost.n=0"], "'0' is not a whole number of at least 1"),
            (["--workloads", "single-loop", "--set", "n=-5"], "'-5' is not a whole number of at least 1"),
            (["--workloads", "single-loop", "--set", "n=1e6"], "'1e6' is not a whole number"),
            (["--workloads", ","], "--workloads names no workload"),
            (["--set", "nosuch.n=1"], "unknown workload 'nosuch'"),
            (["--set", "novalue"], "--set wants key=value"),
            (["--threads", "0"], "--threads"),
            (["--profile", "huge"], "huge"),
            (["--allocator", "noequals"], "--allocator wants NAME=/path/to/lib.so"),
            (["--allocator", "glibc=/lib/x86_64-linux-gnu/libc.so.6"], "'glibc' is already an allocator"),
            (["--allocator", "mine=/nonexistent/lib.so"], "/nonexistent/lib.so: not found"),
            (["--allocator", "mine=/etc/passwd"], "/etc/passwd: not a shared library"),
        ]
        for (arguments, message) in cases {
            let run = try BenchSupport.run(BenchSupport.tool, ["bench"] + arguments)
            #expect(run.status != 0, "\(arguments)")
            #expect(run.stderr.contains(message), "\(arguments): \(run.stderr)")
        }
    }

    @Test("--allocator NAME=PATH measures another library like the built-in allocators")
    func extraAllocatorIsMeasured() throws {
        let dir = try BenchSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/r.json"
        let run = try BenchSupport.run(
            BenchSupport.tool,
            ["bench", "--profile", "tiny", "-r", "1", "--allocators", "glibc", "--no-baselines",
             "--allocator", "swm-copy=" + BenchSupport.library, "--workloads", "single-loop,larson",
             "--json", path, "--svg", dir + "/c.svg"])
        #expect(run.status == 0, "\(run.stderr)")
        let header = run.stdout.split(separator: "\n").first { $0.hasPrefix("workload ") } ?? ""
        #expect(header.contains("glibc") && header.contains("swm-copy"), "\(run.stdout)")
        let samples = try #require(try BenchSupport.readJSON(path)["samples"] as? [[String: Any]])
        let mine = samples.filter { $0["allocator"] as? String == "swm-copy" }
        #expect(mine.count == 2 && mine.allSatisfy { $0["error"] == nil }, "\(mine)")
    }

    @Test("options reach the workload program: --set, --threads, --full, --list")
    func optionsReachTheWorkload() throws {
        let dir = try BenchSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/r.json"
        let run = try BenchSupport.run(
            BenchSupport.tool,
            ["bench", "--profile", "tiny", "-r", "1", "--allocators", "glibc", "--no-baselines", "--threads", "3",
             "--workloads", "thread-loop,nginx-1500", "--set", "nginx-1500.count=3000", "--set", "size=32",
             "--json", path, "--svg", dir + "/c.svg"])
        #expect(run.status == 0, "\(run.stderr)")
        let samples = try #require(try BenchSupport.readJSON(path)["samples"] as? [[String: Any]])
        #expect(samples.count == 2)
        let loop = try #require(samples.first { $0["workload"] as? String == "thread-loop" })
        let loopArguments = loop["arguments"] as? [String] ?? []
        #expect(loopArguments.contains("threads=3") && loopArguments.contains("size=32"))
        #expect((loop["values"] as? [String: String])?["t3_s"] != nil)
        let nginx = try #require(samples.first { $0["workload"] as? String == "nginx-1500" })
        let nginxArguments = nginx["arguments"] as? [String] ?? []
        #expect(nginxArguments.contains("count=3000") && nginxArguments.contains("size=32"))
        let list = try BenchSupport.run(BenchSupport.tool, ["bench", "--list"])
        #expect(list.status == 0)
        #expect(list.stdout.contains("full: count=5000000"))
    }

    @Test("RESULT lines are parsed, and failing children are reported, not fatal")
    func resultLineParsing() throws {
        let dir = try BenchSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fake = try BenchSupport.fakeWorkload(in: dir, cases: """
            single-loop) echo "noise before"; echo "RESULT workload=$1 api=malloc time_s=0.25 preload=${LD_PRELOAD:-none} x=1"; echo "RESULT time_s=9" ;;
            thread-loop) exit 3 ;;
            nginx-1500) echo "RESULT workload=$1 novalue time_s=1" ;;
            slab-kv) echo "RESULT workload=$1 time_s=fast" ;;
            larson) kill -9 $$ ;;
            *) echo "no result here" ;;
            """)
        let path = dir + "/r.json"
        let run = try BenchSupport.run(
            BenchSupport.tool,
            ["bench", "--workload-binary", fake, "--allocators", "glibc", "--no-baselines", "-r", "1",
             "--workloads", "single-loop,thread-loop,nginx-1500,slab-kv,larson,mixed-sizes",
             "--json", path, "--svg", dir + "/c.svg"])
        #expect(run.status == 1)
        let samples = try #require(try BenchSupport.readJSON(path)["samples"] as? [[String: Any]])
        func sample(_ w: String) -> [String: Any] { samples.first { $0["workload"] as? String == w } ?? [:] }
        let good = sample("single-loop")
        #expect(good["time"] as? Double == 0.25)
        #expect(good["error"] == nil)
        let values = good["values"] as? [String: String] ?? [:]
        #expect(values["x"] == "1" && values["preload"] == "none" && values["api"] == "malloc")
        #expect((sample("thread-loop")["error"] as? String)?.hasPrefix("exit status 3") == true)
        #expect((sample("nginx-1500")["error"] as? String)?.hasPrefix("no RESULT line") == true)
        #expect((sample("slab-kv")["error"] as? String)?.hasPrefix("RESULT line without a numeric time_s") == true)
        #expect((sample("larson")["error"] as? String)?.hasPrefix("killed by signal 9") == true)
        #expect((sample("mixed-sizes")["error"] as? String)?.hasPrefix("no RESULT line") == true)
        #expect(run.stdout.contains("FAILED"))
    }

    @Test("a run past --timeout is killed with what it forked, even in another session, and the others go on")
    func timeLimit() throws {
        let dir = try BenchSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // single-loop hangs, and so does a fork child of it in a session of its own
        // (snmalloc's and mimalloc v3's fork children hung in retention-spawn), holding
        // the output pipes; thread-loop ends at once but leaves a child running that closed
        // them; nginx-1500 closes both pipes and hangs (R55: then nothing timed it);
        // slab-kv ends at once leaving a silent child that holds the pipes.
        let fake = try BenchSupport.fakeWorkload(in: dir, cases: """
            single-loop) setsid sleep 120 & echo $! > "\(dir)/hung.pid"; sleep 120 ;;
            thread-loop) (exec >/dev/null 2>&1; sleep 120) & echo $! > "\(dir)/left.pid"; echo "RESULT workload=$1 time_s=0.1" ;;
            nginx-1500) echo $$ > "\(dir)/closed.pid"; exec >/dev/null 2>&1; sleep 120 ;;
            slab-kv) sleep 120 & echo $! > "\(dir)/silent.pid"; echo "RESULT workload=$1 time_s=0.1" ;;
            larson) head -c 20000000 /dev/zero | tr '\\0' y | fold -w 100; echo; echo "RESULT workload=$1 time_s=0.1" ;;
            *) echo "RESULT workload=$1 time_s=0.1" ;;
            """)
        let path = dir + "/r.json"
        let start = Date()
        let run = try BenchSupport.run(
            BenchSupport.tool,
            ["bench", "--workload-binary", fake, "--allocators", "glibc", "--no-baselines", "-r", "1", "--timeout", "1",
             "--workloads", "single-loop,thread-loop,nginx-1500,slab-kv,larson", "--json", path, "--svg", dir + "/c.svg"])
        let elapsed = Date().timeIntervalSince(start)
        #expect(elapsed < 20, "the bench took \(elapsed) s: a run was not ended at its limit")
        #expect(run.status == 1, "\(run)")
        let samples = try #require(try BenchSupport.readJSON(path)["samples"] as? [[String: Any]])
        func sample(_ w: String) -> [String: Any] { samples.first { $0["workload"] as? String == w } ?? [:] }
        #expect((sample("single-loop")["error"] as? String)?.hasPrefix("timed out after 1 s") == true, "\(samples)")
        #expect(sample("thread-loop")["time"] as? Double == 0.1, "\(samples)")
        #expect((sample("nginx-1500")["error"] as? String)?.hasPrefix("timed out after 1 s") == true, "\(samples)")
        #expect(sample("slab-kv")["time"] as? Double == 0.1, "\(samples)")
        // 20 MB of output before its RESULT line: kept in part (R56), the line found.
        #expect(sample("larson")["time"] as? Double == 0.1, "\(samples)")
        // The processes the runs left were killed: gone, or zombies not yet reaped.
        for file in ["hung.pid", "left.pid", "closed.pid", "silent.pid"] {
            let still = try BenchSupport.stillRunning(pidFile: dir + "/" + file)
            #expect(still == nil, "\(file): still runs: \(still ?? "")")
        }
        let refused = try BenchSupport.run(BenchSupport.tool, ["bench", "--timeout=-1"])
        #expect(refused.status == 64 && refused.stderr.contains("--timeout must be 0"), "\(refused)")
    }

    @Test("SIGTERM to the bench ends the run under way, with what it forked, then the bench")
    func stopSignalEndsTheRun() throws {
        let dir = try BenchSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fake = try BenchSupport.fakeWorkload(in: dir, cases: """
            single-loop) setsid sleep 120 & echo $! > "\(dir)/hung.pid"; echo $$ > "\(dir)/run.pid"; sleep 120 ;;
            *) echo "RESULT workload=$1 time_s=0.1" ;;
            """)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BenchSupport.tool)
        process.arguments = ["bench", "--workload-binary", fake, "--allocators", "glibc", "--no-baselines", "-r", "1",
                             "--timeout", "100", "--workloads", "single-loop", "--json", dir + "/r.json", "--svg", dir + "/c.svg"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Waits for the run (and its fork child) to have started, then stops the bench.
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: dir + "/run.pid") { usleep(50_000) }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGTERM,
                "\(process.terminationReason) \(process.terminationStatus)")
        for file in ["hung.pid", "run.pid"] {
            let still = try BenchSupport.stillRunning(pidFile: dir + "/" + file)
            #expect(still == nil, "\(file): still runs: \(still ?? "")")
        }
    }

    @Test("a missing allocator is skipped with a note naming its Debian package")
    func missingAllocator() throws {
        let dir = try BenchSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try BenchSupport.run(
            BenchSupport.tool,
            ["bench", "--profile", "tiny", "-r", "1", "--allocators", "glibc,mimalloc", "--lib-mimalloc", "/nonexistent/libmimalloc.so.2",
             "--workloads", "mixed-sizes", "--json", dir + "/r.json", "--svg", dir + "/c.svg"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("mimalloc skipped") && run.stderr.contains("libmimalloc2.0"))
        #expect(run.stdout.contains("note: mimalloc skipped"))
    }

    @Test("every workload runs on glibc and swmalloc (and its baseline) and its results parse")
    func tinyRunOfEveryWorkload() throws {
        let dir = try BenchSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/r.json"
        let run = try BenchSupport.run(
            BenchSupport.tool,
            ["bench", "--profile", "tiny", "-r", "1", "--allocators", "glibc,swmalloc", "--lib-swmalloc", BenchSupport.library,
             "--json", path, "--svg", dir + "/c.svg"])
        #expect(run.status == 0, "\(run.stdout)\n\(run.stderr)")
        let json = try BenchSupport.readJSON(path)
        let samples = try #require(json["samples"] as? [[String: Any]])
        let workloads = try BenchSupport.run(BenchSupport.workload, []).stderr
            .split(separator: "\n").last.map { $0.split(separator: " ").dropFirst().map(String.init) } ?? []
        #expect(workloads.count == 17)
        for workload in workloads {
            for allocator in ["glibc", "swmalloc"] {
                let s = samples.first { $0["workload"] as? String == workload && $0["allocator"] as? String == allocator }
                #expect(s?["error"] == nil, "\(workload) on \(allocator): \(s?["error"] ?? "no sample")")
                #expect((s?["time"] as? Double).map { $0 >= 0 } == true, "\(workload) on \(allocator)")
                #expect((s?["peakRSSKB"] as? Int).map { $0 > 0 } == true, "\(workload) on \(allocator)")
            }
        }
        for baseline in ["vos-pool", "ngx-slab", "mc-slab"] {
            #expect(samples.contains { $0["allocator"] as? String == baseline && $0["error"] == nil }, "\(baseline)")
        }
        let nginx = samples.first { $0["workload"] as? String == "nginx-1500" }?["values"] as? [String: String] ?? [:]
        for key in ["total_us", "alloc_us", "test_us", "free_us", "peak_rss_kb"] { #expect(nginx[key] != nil, "\(key)") }
        let idle = samples.first { $0["workload"] as? String == "retention-idle" }?["values"] as? [String: String] ?? [:]
        for key in ["rss_base_kb", "rss_freed_kb", "rss_after_kb"] { #expect(idle[key] != nil, "retention-idle \(key)") }
        let fork = samples.first { $0["workload"] as? String == "retention-fork" }?["values"] as? [String: String] ?? [:]
        for key in ["rss_child_start_kb", "rss_child_freed_kb", "rss_child_again_kb"] {
            #expect(fork[key] != nil, "retention-fork \(key)")
        }
        let spawn = samples.first { $0["workload"] as? String == "retention-spawn" }?["values"] as? [String: String] ?? [:]
        for key in ["rss_base_kb", "rss_end_kb", "live_kb", "peak_rss_kb"] { #expect(spawn[key] != nil, "retention-spawn \(key)") }
        #expect(run.stdout.contains("retention (MiB of RSS above the start"), "\(run.stdout)")
        let rss = samples.first { $0["workload"] as? String == "rss-return" }?["values"] as? [String: String] ?? [:]
        for key in ["rss_peak_kb", "rss_after_kb"] { #expect(rss[key] != nil, "\(key)") }
        let vos = samples.first { $0["workload"] as? String == "vos-cost" && $0["allocator"] as? String == "glibc" }
        #expect((vos?["values"] as? [String: String])?["vos"] == "skipped")
    }
}
