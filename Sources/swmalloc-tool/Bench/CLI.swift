import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `swmalloc bench`, the benchmark driver: runs each workload in a fresh child process per
/// allocator (the allocator loaded with LD_PRELOAD), k interleaved repetitions, and
/// reports medians.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Compare swmalloc with glibc, jemalloc, tcmalloc, mimalloc and the design document's baselines.",
        discussion: """
            Each workload runs in a new swm-workload process per allocator and repetition; the \
            repetitions are interleaved (A B C … A B C) and the median is reported with min–max, \
            user+sys CPU from wait4 and the child's peak RSS. With no options: the default comparison \
            (about two minutes on 2 cores). Workload parameters: --list.
            """)

    @Option(name: .long, help: "Comma-separated allocators (swmalloc, glibc, jemalloc, tcmalloc, mimalloc).")
    var allocators: String = AllocatorCatalogue.names.joined(separator: ",")

    @Option(
        name: .customLong("allocator"),
        help: "Another allocator to measure like the built-in ones: NAME=/path/to/lib.so (preloaded). Repeatable.")
    var extraAllocators: [String] = []

    @Option(name: .long, help: "Comma-separated workloads (default: all; see --list).")
    var workloads: String?

    @Option(name: [.short, .long], help: "Interleaved repetitions per workload and allocator.")
    var repetitions: Int = 3

    @Option(name: .long, help: "Threads for the multi-threaded workloads (thread-loop runs 1 … T). Default: CPUs, at least 2.")
    var threads: Int?

    @Flag(name: .long, help: "The design document's sizes (nginx-1500 5,000,000 blocks, …): minutes, not seconds.")
    var full = false

    @Option(name: .long, help: "Parameter profile: tiny, standard or full (--full is the same as --profile full).")
    var profile: Profile = .standard

    @Option(
        name: .customLong("set"),
        help: "Set a workload parameter: key=value (every workload that has the key) or workload.key=value. Repeatable.")
    var settings: [String] = []

    @Option(name: .long, help: "Seconds one run may take before it is killed and reported as failed (0: no limit).")
    var timeout: Int = 300

    @Flag(inversion: .prefixedNo, help: "Whether to run the baselines (vos-pool, ngx-slab, mc-slab) on their workloads too (default: yes).")
    var baselines = true

    @Option(name: .long, help: "libswmalloc.so to test (default: $SWMALLOC_LIB, the build's, or the installed one).")
    var libSwmalloc: String?

    @Option(name: .long, help: "jemalloc library (default /usr/lib/x86_64-linux-gnu/libjemalloc.so.2).")
    var libJemalloc: String?

    @Option(name: .long, help: "tcmalloc library (default /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4).")
    var libTcmalloc: String?

    @Option(name: .long, help: "mimalloc library (default /usr/lib/x86_64-linux-gnu/libmimalloc.so.2).")
    var libMimalloc: String?

    @Option(name: .long, help: "The swm-workload program (default: the build's, or the installed one).")
    var workloadBinary: String?

    @Option(name: .long, help: "JSON file of all samples (default: .build/bench/results.json beside the build; installed, ./swmalloc-bench/results.json).")
    var json: String?

    @Option(name: .long, help: "SVG chart (default: .build/bench/results.svg beside the build; installed, ./swmalloc-bench/results.svg).")
    var svg: String?

    @Option(name: .long, help: "Report on a JSON file written earlier instead of running: summaries recomputed from its samples, tables printed, --json and --svg written if given.")
    var report: String?

    @Flag(name: .long, help: "List the workloads and their parameters, then exit.")
    var list = false

    /// Checks the options before anything runs; `--full` selects the full profile.
    mutating func validate() throws {
        if repetitions < 1 { throw ValidationError("--repetitions must be at least 1") }
        if timeout < 0 { throw ValidationError("--timeout must be 0 (no limit) or more seconds") }
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be 1 … 1024") }
        if full { profile = .full }
        for name in allocatorList where !AllocatorCatalogue.names.contains(name) {
            throw ValidationError("unknown allocator '\(name)' (known: \(AllocatorCatalogue.names.joined(separator: ", ")))")
        }
        // A name twice would merge two rows' samples into one, reported as one row's.
        if let twice = firstRepeated(allocatorList) { throw ValidationError("--allocators names '\(twice)' twice") }
        if let twice = firstRepeated(workloadList) { throw ValidationError("--workloads names '\(twice)' twice") }
        if workloadList.isEmpty { throw ValidationError("--workloads names no workload (see --list)") }
        let baselineNames = Set(Catalogue.all.compactMap { $0.baseline?.name })
        var extraNames = Set<String>()
        for extra in try parsedExtraAllocators() {
            if AllocatorCatalogue.names.contains(extra.name) || baselineNames.contains(extra.name)
                || !extraNames.insert(extra.name).inserted {
                throw ValidationError("--allocator: '\(extra.name)' is already an allocator or baseline of this run")
            }
            if let problem = preloadProblem(extra.library ?? "") {
                throw ValidationError("--allocator \(extra.name): \(extra.library ?? ""): \(problem)")
            }
        }
        for name in workloadList where Catalogue.workload(named: name) == nil {
            throw ValidationError("unknown workload '\(name)' (see --list)")
        }
        _ = try parsedSettings()
        // The library under test, given on the command line, is an error when it cannot be
        // preloaded: the run would go on without swmalloc (the other allocators are
        // skipped with a note, as when they are not installed).
        if let libSwmalloc, let problem = preloadProblem(libSwmalloc) {
            throw ValidationError("--lib-swmalloc \(libSwmalloc): \(problem)")
        }
    }

    /// The first name that `names` holds twice, if any.
    private func firstRepeated(_ names: [String]) -> String? {
        var seen = Set<String>()
        return names.first { !seen.insert($0).inserted }
    }

    /// The requested allocator names.
    var allocatorList: [String] { split(allocators) }

    /// The `--allocator NAME=PATH` values as allocators.
    func parsedExtraAllocators() throws -> [Allocator] {
        try extraAllocators.map { spec in
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex, spec.index(after: eq) != spec.endIndex else {
                throw ValidationError("--allocator wants NAME=/path/to/lib.so, not '\(spec)'")
            }
            return Allocator(name: String(spec[..<eq]), library: String(spec[spec.index(after: eq)...]), package: nil)
        }
    }

    /// The requested workload names (all when not given).
    var workloadList: [String] { workloads.map(split) ?? Catalogue.all.map(\.name) }

    /// The --set values as (workload or nil for every selected workload that has the key,
    /// key, value). Each must name a parameter of a selected workload (`workload.key`: of
    /// that workload, which must be selected) and give it a whole number, at least 1 (at
    /// least 0 for a percentage, `_pct`, or a delay, `_ms`): before, a setting no selected
    /// workload had was ignored without a word, and `n=0` or `n=-5` ran and reported NaN
    /// or negative times (review R49).
    func parsedSettings() throws -> [(workload: String?, key: String, value: String)] {
        let selected = workloadList.compactMap(Catalogue.workload(named:))
        return try settings.map { setting in
            guard let eq = setting.firstIndex(of: "="), eq != setting.startIndex,
                !setting[setting.index(after: eq)...].contains(" ")
            else { throw ValidationError("--set wants key=value or workload.key=value, not '\(setting)'") }
            let name = setting[..<eq], value = String(setting[setting.index(after: eq)...])
            var workload: String? = nil
            var key = String(name)
            if let dot = name.firstIndex(of: ".") {
                workload = String(name[..<dot])
                key = String(name[name.index(after: dot)...])
                guard let named = Catalogue.workload(named: workload!) else {
                    throw ValidationError("--set: unknown workload '\(workload!)'")
                }
                guard selected.contains(where: { $0.name == named.name }) else {
                    throw ValidationError("--set: workload '\(named.name)' is not selected (--workloads)")
                }
                guard acceptedKeys(of: named).contains(key) else {
                    throw ValidationError("--set: workload '\(named.name)' has no parameter '\(key)' (see --list)")
                }
            } else if !selected.contains(where: { acceptedKeys(of: $0).contains(key) }) {
                throw ValidationError("--set: no selected workload has a parameter '\(key)' (see --list)")
            }
            let least = key.hasSuffix("_pct") || key.hasSuffix("_ms") ? 0 : 1
            guard let number = Int(value), number >= least else {
                throw ValidationError("--set \(name): '\(value)' is not a whole number of at least \(least)")
            }
            return (workload, key, value)
        }
    }

    /// The keys `--set` may give `workload`: its parameters in any profile, and `threads`
    /// where `--threads` sets it.
    private func acceptedKeys(of workload: Workload) -> Set<String> {
        var keys = Set(Profile.allCases.flatMap { workload.parameters(for: $0).map(\.key) })
        if workload.takesThreads { keys.insert("threads") }
        return keys
    }

    /// Lists the catalogue, re-reports a saved run, or runs the comparison and writes its
    /// reports; exits with status 1 when a child run failed.
    mutating func run() throws {
        if list {
            printCatalogue()
            return
        }
        let buildDirectory = Locations.executableDirectory
        if let report {
            let document = try BenchDocument.read(from: report).resummarised()
            print(Report(document: document).text(), terminator: "")
            if let json { try document.write(to: json) }
            if let svg { try writeSVG(Report(document: document), to: svg) }
            return
        }
        let threadCount = threads ?? max(2, ProcessInfo.processInfo.activeProcessorCount)
        let overrides = [
            "swmalloc": libSwmalloc, "jemalloc": libJemalloc, "tcmalloc": libTcmalloc, "mimalloc": libMimalloc,
        ].compactMapValues { $0 }
        var (found, notes) = AllocatorCatalogue.resolve(
            allocatorList, overrides: overrides, swmalloc: Locations.library() ?? buildDirectory + "/libswmalloc.so")
        found += try parsedExtraAllocators()
        for note in notes { FileHandle.standardError.write(Data("swmalloc bench: \(note)\n".utf8)) }
        if found.isEmpty { throw ValidationError("no allocator to measure: every one requested was skipped") }
        let binary = workloadBinary ?? Locations.workload() ?? buildDirectory + "/swm-workload"
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw ValidationError("workload program \(binary) not found (build the package or pass --workload-binary)")
        }
        let jsonPath = json ?? resultsDirectory(buildDirectory) + "/results.json"
        let svgPath = svg ?? resultsDirectory(buildDirectory) + "/results.svg"
        for path in [jsonPath, svgPath] { try checkWritable(path) }
        let plan = try makePlan(allocators: found, threads: threadCount)
        Runner.superviseRuns()
        let samples = execute(plan, runner: Runner(workloadBinary: binary, timeLimit: timeout > 0 ? Double(timeout) : nil))
        let document = BenchDocument(
            date: ISO8601DateFormatter().string(from: Date()), machine: .current(), command: CommandLine.arguments,
            profile: profile, repetitions: repetitions, threads: threadCount, allocators: found, notes: notes,
            samples: samples, summaries: []
        ).resummarised()
        let reporter = Report(document: document)
        print(reporter.text(), terminator: "")
        try document.write(to: jsonPath)
        try writeSVG(reporter, to: svgPath)
        print("\nsamples: \(standardised(jsonPath))\nchart:   \(standardised(svgPath))")
        Runner.endIfStopped()
        if samples.contains(where: { $0.error != nil }) { throw ExitCode(1) }
    }

    /// One planned child run, before the repetitions.
    struct Job {
        /// The workload.
        let workload: Workload
        /// The row name: an allocator or a baseline.
        let row: String
        /// LD_PRELOAD for the child.
        let preload: String?
        /// The key=value arguments.
        let arguments: [String]
    }

    /// The jobs of every selected workload: one per allocator, plus the baseline.
    func makePlan(allocators: [Allocator], threads: Int) throws -> [[Job]] {
        let settings = try parsedSettings()
        return workloadList.compactMap(Catalogue.workload(named:)).map { workload in
            var parameters = workload.parameters(for: profile)
            if workload.takesThreads { parameters.append((key: "threads", value: String(threads))) }
            for s in settings where s.workload == nil || s.workload == workload.name {
                if s.workload == nil && !parameters.contains(where: { $0.key == s.key }) { continue }
                parameters.removeAll { $0.key == s.key }
                parameters.append((key: s.key, value: s.value))
            }
            let arguments = parameters.map { "\($0.key)=\($0.value)" }
            var jobs = allocators.map { Job(workload: workload, row: $0.name, preload: $0.library, arguments: arguments) }
            if baselines, let baseline = workload.baseline {
                jobs.append(Job(workload: workload, row: baseline.name, preload: nil, arguments: arguments + ["api=\(baseline.api)"]))
            }
            return jobs
        }
    }

    /// Runs the plan, each workload's jobs interleaved over the repetitions, with a
    /// progress line on stderr.
    func execute(_ plan: [[Job]], runner: Runner) -> [Sample] {
        let total = plan.reduce(0) { $0 + $1.count } * repetitions
        let terminal = isatty(2) != 0
        var samples: [Sample] = []
        let start = Date()
        for jobs in plan {
            for repetition in 1...repetitions {
                for job in jobs {
                    // Time left: the mean time per run so far, times the runs to go.
                    let done = samples.count
                    let left = done == 0 ? "" : ", about \(Int(Date().timeIntervalSince(start) / Double(done) * Double(total - done) + 0.5)) s left"
                    let progress = "[\(done + 1)/\(total)] \(job.workload.name) on \(job.row), repetition \(repetition)/\(repetitions)\(left)"
                    FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + progress : progress + "\n").utf8))
                    Runner.endIfStopped()
                    let sample = runner.run(
                        workload: job.workload.name, allocator: job.row, repetition: repetition,
                        arguments: job.arguments, preload: job.preload)
                    if let error = sample.error {
                        FileHandle.standardError.write(Data("\n\(job.workload.name) on \(job.row) failed: \(error)\n".utf8))
                    }
                    samples.append(sample)
                }
            }
        }
        Runner.endIfStopped()
        if terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        return samples
    }

    /// Prints the workload catalogue with each profile's parameters.
    func printCatalogue() {
        for w in Catalogue.all {
            print("\(w.name): \(w.summary)")
            if let b = w.baseline { print("  baseline: \(b.name)") }
            for p in Profile.allCases {
                var parameters = w.parameters(for: p).map { "\($0.key)=\($0.value)" }
                if w.takesThreads { parameters.append("threads=<--threads>") }
                print("  \(p.rawValue): \(parameters.joined(separator: " "))")
            }
        }
    }
}

/// Writes the report's SVG chart, creating the directory.
func writeSVG(_ report: Report, to path: String) throws {
    try createParentDirectory(of: path)
    try report.svg().write(toFile: path, atomically: true, encoding: .utf8)
}

/// Checks, before a run, that its results can be written at `path` (its directory made
/// if needed): a run of minutes whose results could not be saved lost them all, with a
/// raw Foundation error (review R49, in a directory the user cannot write).
func checkWritable(_ path: String) throws {
    let directory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
    do { try createParentDirectory(of: path) } catch {
        throw ValidationError("cannot write the results to \(standardised(path)): cannot make \(directory)")
    }
    // Opened for writing as the run will (root passes `access` where a write fails: /proc).
    let existed = FileManager.default.fileExists(atPath: path)
    let fd = open(path, O_WRONLY | O_CREAT, 0o644)
    if fd < 0 {
        throw ValidationError("cannot write the results to \(standardised(path)): \(String(cString: strerror(errno))) (use --json and --svg)")
    }
    close(fd)
    if !existed { unlink(path) }
}

/// Where results go by default: `bench/` in the build's scratch directory (`.build/bench`
/// for `.build/release`, whose real path is `.build/<target triple>/release`); for an
/// installed tool, `swmalloc-bench/` in the current directory.
func resultsDirectory(_ buildDirectory: String) -> String {
    if Locations.installedPrefix() != nil { return "swmalloc-bench" }
    let parent = (buildDirectory as NSString).deletingLastPathComponent
    let scratch = (parent as NSString).lastPathComponent.contains("-linux") ? (parent as NSString).deletingLastPathComponent : parent
    return scratch + "/bench"
}

/// A path with `..` resolved, for messages.
func standardised(_ path: String) -> String {
    (path as NSString).standardizingPath
}

/// Splits a comma-separated list, dropping empty items and spaces.
func split(_ list: String) -> [String] {
    list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// Lets `--profile` take a profile's name.
extension Profile: ExpressibleByArgument {}
