import ArgumentParser
import Foundation

/// The machine a run was measured on.
struct Machine: Codable, Equatable {
    /// The CPU model (`model name` of /proc/cpuinfo, as lscpu shows it).
    let cpuModel: String
    /// Online CPUs.
    let cpus: Int
    /// The kernel release.
    let kernel: String

    /// Describes this machine.
    static func current() -> Machine {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let kernel = ((try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)) ?? "unknown")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return Machine(cpuModel: model, cpus: ProcessInfo.processInfo.activeProcessorCount, kernel: kernel)
    }
}

/// Everything one benchmark run produced: the JSON file's content.
struct BenchDocument: Codable, Equatable {
    /// When the run started (ISO 8601, UTC).
    let date: String
    /// Where it ran.
    let machine: Machine
    /// The driver's command line.
    let command: [String]
    /// The parameter profile.
    let profile: Profile
    /// Repetitions per workload and allocator.
    let repetitions: Int
    /// The `--threads` value.
    let threads: Int
    /// The allocators measured (baselines are not listed here; they appear in samples).
    let allocators: [Allocator]
    /// Skipped allocators and other remarks.
    let notes: [String]
    /// Every run.
    let samples: [Sample]
    /// Median, min, max and ratio per workload and allocator.
    let summaries: [Summary]
    /// Each allocator's geometric mean of its ratios to the best (nil in a file that has
    /// none; recomputed by `resummarised()`).
    var geometricMeans: [String: Double]?

    /// Reads a document written by `write(to:)`.
    /// A file that cannot be read, or is not a saved run, is a usage error naming it.
    static func read(from path: String) throws -> BenchDocument {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("--report: cannot read \(path)")
        }
        guard let document = try? JSONDecoder().decode(BenchDocument.self, from: data) else {
            throw ValidationError("--report: \(path) is not a results.json of swmalloc bench")
        }
        return document
    }

    /// The same document with its summaries and geometric means computed from its samples.
    func resummarised() -> BenchDocument {
        var document = BenchDocument(
            date: date, machine: machine, command: command, profile: profile, repetitions: repetitions,
            threads: threads, allocators: allocators, notes: notes, samples: samples,
            summaries: Summary.summarise(samples))
        document.geometricMeans = Report(document: document).geometricMeans()
        return document
    }

    /// Writes the document as pretty-printed JSON, creating the directory.
    func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try createParentDirectory(of: path)
        try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// Creates the directory that will hold `path`.
func createParentDirectory(of path: String) throws {
    let directory = (path as NSString).deletingLastPathComponent
    if !directory.isEmpty {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
}

/// The text and SVG reports of a benchmark document.
struct Report {
    /// The document reported on.
    let document: BenchDocument

    /// The workloads in the order they were run.
    private var workloads: [String] { unique(document.summaries.map(\.workload)) }
    /// The allocators (not baselines) with samples, in run order.
    private var allocatorNames: [String] {
        let measured = Set(document.allocators.map(\.name))
        return unique(document.summaries.map(\.allocator)).filter { measured.contains($0) }
    }

    /// The summary of a workload on an allocator, if it ran.
    private func summary(_ workload: String, _ allocator: String) -> Summary? {
        document.summaries.first { $0.workload == workload && $0.allocator == allocator }
    }

    /// The baseline summary of a workload (an allocator not in `allocators`), if any.
    private func baseline(_ workload: String) -> Summary? {
        let measured = Set(document.allocators.map(\.name))
        return document.summaries.first { $0.workload == workload && !measured.contains($0.allocator) }
    }

    /// The geometric mean of each allocator's ratios over the workloads it completed.
    func geometricMeans() -> [String: Double] {
        var result: [String: Double] = [:]
        for name in allocatorNames {
            let ratios = workloads.compactMap { summary($0, name)?.ratio }
            result[name] = Stats.geometricMean(ratios)
        }
        return result
    }

    /// The median of a RESULT key over a workload's successful runs on an allocator.
    func medianValue(_ workload: String, _ allocator: String, _ key: String) -> Double? {
        Stats.median(
            document.samples.filter { $0.workload == workload && $0.allocator == allocator && $0.error == nil }
                .compactMap { $0.values[key].flatMap(Double.init) })
    }

    /// The whole text report: header, ratio matrix with the geometric mean, the detailed
    /// table, the workload-specific tables, and the failures.
    func text() -> String {
        var out = "swmalloc bench — \(document.profile.rawValue) profile, \(document.repetitions) repetitions "
        out += "(interleaved; median shown), --threads \(document.threads)\n"
        out += "machine: \(document.machine.cpuModel), \(document.machine.cpus) CPUs, Linux \(document.machine.kernel)\n"
        for note in document.notes { out += "note: \(note)\n" }
        out += "\n" + ratioMatrix() + "\n" + detailTable()
        for section in [threadScaling(), nginxTable(), rssTable(), retentionTable(), vosTable(), slabMisses()] where !section.isEmpty {
            out += "\n" + section
        }
        let failures = document.samples.filter { $0.error != nil }
        if !failures.isEmpty {
            out += "\nFailures:\n"
            for f in failures { out += "  \(f.workload) on \(f.allocator), repetition \(f.repetition): \(f.error!)\n" }
        }
        return out
    }

    /// Workloads × allocators: each median over the workload's best (1.00 = best), the
    /// baseline column, and the geometric-mean row.
    func ratioMatrix() -> String {
        let names = allocatorNames
        var rows = [["workload"] + names + ["baseline"]]
        for w in workloads {
            var row = [w]
            for name in names { row.append(cell(summary(w, name))) }
            if let b = baseline(w) { row.append("\(b.allocator) \(cell(b))") } else { row.append("") }
            rows.append(row)
        }
        let means = geometricMeans()
        rows.append(["geometric mean"] + names.map { means[$0].map { format($0, 2) } ?? "–" } + [""])
        return "Median time as a ratio to the best per workload (1.00 = fastest; lower is better)\n"
            + table(rows, rightAligned: Set(names.indices.map { $0 + 1 }))
    }

    /// A ratio cell: the ratio, or FAILED, or a dash when not run.
    private func cell(_ s: Summary?) -> String {
        guard let s else { return "–" }
        if s.runs == 0 { return "FAILED" }
        return (s.ratio.map { format($0, 2) } ?? "–") + (s.failures > 0 ? " (\(s.failures) failed)" : "")
    }

    /// One row per workload and allocator: median, min–max, ratio, CPU and peak RSS.
    func detailTable() -> String {
        var rows = [["workload", "allocator", "median s", "min–max s", "ratio", "cpu s", "peak RSS"]]
        for s in document.summaries {
            rows.append([
                s.workload, s.allocator, s.median.map { format($0, 4) } ?? "FAILED",
                s.min.flatMap { lo in s.max.map { "\(format(lo, 4))–\(format($0, 4))" } } ?? "–",
                s.ratio.map { format($0, 2) } ?? "–", s.cpuMedian.map { format($0, 3) } ?? "–",
                s.peakRSSMedianKB.map { megabytes($0) } ?? "–",
            ])
        }
        return "All results (time_s: the workload's timed region; cpu: the whole child, from wait4; peak RSS: the child's VmHWM)\n"
            + table(rows, rightAligned: [2, 3, 4, 5, 6])
    }

    /// thread-loop: time per thread count and the throughput relative to one thread.
    func threadScaling() -> String {
        let w = "thread-loop"
        guard workloads.contains(w) else { return "" }
        let counts = (1...max(1, document.threads)).filter { t in
            document.samples.contains { $0.workload == w && $0.values["t\(t)_s"] != nil }
        }
        guard !counts.isEmpty else { return "" }
        var rows = [["allocator"] + counts.map { "T=\($0) s" } + counts.map { "T=\($0) scaling" }]
        for name in allocatorNames {
            let times = counts.map { medianValue(w, name, "t\($0)_s") }
            var row = [name] + times.map { $0.map { format($0, 4) } ?? "–" }
            for (i, t) in counts.enumerated() {
                if let t1 = times[0], let tn = times[i], tn > 0 { row.append(format(Double(t) * t1 / tn, 2) + "×") }
                else { row.append("–") }
            }
            rows.append(row)
        }
        return "thread-loop: each thread does the same work; scaling = throughput over one thread's\n"
            + table(rows, rightAligned: Set(1..<rows[0].count))
    }

    /// nginx-1500 in the design document's shape: Total/Alloc/Test/Free (µs) and peak RSS (kB).
    func nginxTable() -> String {
        let w = "nginx-1500"
        guard workloads.contains(w) else { return "" }
        var rows = [["", "Total", "Alloc", "Test", "Free", "peak kB"]]
        for s in document.summaries where s.workload == w && s.runs > 0 {
            rows.append(
                [s.allocator] + ["total_us", "alloc_us", "test_us", "free_us", "peak_rss_kb"].map {
                    medianValue(w, s.allocator, $0).map { String(Int($0)) } ?? "–"
                })
        }
        return "nginx-1500 (µs, medians; the design document's table shape)\n"
            + table(rows, rightAligned: [1, 2, 3, 4, 5])
    }

    /// rss-return: RSS before, at the peak, right after freeing, and after the wait.
    func rssTable() -> String {
        let w = "rss-return"
        guard workloads.contains(w) else { return "" }
        var rows = [["allocator", "base kB", "peak kB", "freed kB", "after wait kB", "returned"]]
        for s in document.summaries where s.workload == w && s.runs > 0 {
            let v = ["rss_base_kb", "rss_peak_kb", "rss_freed_kb", "rss_after_kb"].map { medianValue(w, s.allocator, $0) }
            var returned = "–"
            if let base = v[0], let peak = v[1], let after = v[3], peak > base {
                // A resident set that grew a little after the peak gave back nothing: 0 %, not "-0 %".
                returned = format(max(0, 100 * (peak - after) / (peak - base)), 0) + " %"
            }
            rows.append([s.allocator] + v.map { $0.map { String(Int($0)) } ?? "–" } + [returned])
        }
        return "rss-return (/proc/self/statm in the child; returned = share of the working set given back)\n"
            + table(rows, rightAligned: [1, 2, 3, 4, 5])
    }

    /// The retention family: resident memory (MiB above the start) an allocator keeps after
    /// the program freed it — idle threads after the wait, producer/consumer of large
    /// blocks at the end (live: 4 MiB), a fork child after it freed its parent's threads'
    /// blocks and allocated as much again, and the peak while short threads pile up
    /// (live: about 24 MiB).
    func retentionTable() -> String {
        let family = ["retention-idle", "retention-pc", "retention-fork", "retention-spawn"]
        guard family.contains(where: workloads.contains) else { return "" }
        var rows = [["allocator", "idle: freed", "idle: after wait", "p/c large: end", "fork child: start", "child: again",
                     "spawn: peak"]]
        var allocators: [String] = []
        for s in document.summaries where family.contains(s.workload) && s.runs > 0 && !allocators.contains(s.allocator) {
            allocators.append(s.allocator)
        }
        for allocator in allocators {
            func mib(_ w: String, _ key: String, minus base: String) -> String {
                guard let v = medianValue(w, allocator, key), let b = medianValue(w, allocator, base) else { return "–" }
                return format((v - b) / 1024, 1)
            }
            rows.append([
                allocator,
                mib("retention-idle", "rss_freed_kb", minus: "rss_base_kb"),
                mib("retention-idle", "rss_after_kb", minus: "rss_base_kb"),
                mib("retention-pc", "rss_end_kb", minus: "rss_base_kb"),
                medianValue("retention-fork", allocator, "rss_child_start_kb").map { format($0 / 1024, 1) } ?? "–",
                mib("retention-fork", "rss_child_again_kb", minus: "rss_child_start_kb"),
                mib("retention-spawn", "peak_rss_kb", minus: "rss_base_kb"),
            ])
        }
        return "retention (MiB of RSS above the start; the fork child: its RSS at the start, then what it grew)\n"
            + table(rows, rightAligned: Set(1..<rows[0].count))
    }

    /// vos-cost: nanoseconds per alloc/free pair per API and thread count.
    func vosTable() -> String {
        let w = "vos-cost"
        guard workloads.contains(w) else { return "" }
        let apis = ["malloc", "vos_module", "vos_site", "vos_pool"]
        var rows = [["allocator"] + apis.flatMap { ["\($0) 1T", "\($0) 2T"] }]
        for s in document.summaries where s.workload == w && s.runs > 0 {
            rows.append(
                [s.allocator] + apis.flatMap { api in
                    [1, 2].map { t in medianValue(w, s.allocator, "\(api)_t\(t)_ns").map { format($0, 1) } ?? "skipped" }
                })
        }
        return "vos-cost (ns per alloc/free pair per thread; VOS_* only where the allocator provides them)\n"
            + table(rows, rightAligned: Set(1..<rows[0].count))
    }

    /// slab-kv: sets the memcached slab baseline refused at its 64 MiB limit, if any.
    func slabMisses() -> String {
        let misses = document.summaries.filter { $0.workload == "slab-kv" }.compactMap { s in
            medianValue("slab-kv", s.allocator, "misses").flatMap { $0 > 0 ? "\(s.allocator): \(Int($0))" : nil }
        }
        return misses.isEmpty ? "" : "slab-kv sets refused at the slab limit (median): " + misses.joined(separator: ", ") + "\n"
    }

    /// The bar chart: one group of bars per workload, one colour per allocator, bar height
    /// = median over the workload's best (capped at 5, the real ratio written on top).
    func svg() -> String {
        let names = unique(document.summaries.map(\.allocator))
        let palette = ["#e4572e", "#4c78a8", "#54a24b", "#b279a2", "#f2a541", "#72b7b2", "#9d755d", "#bab0ac"]
        let cap = 5.0
        let bar = 12.0, gap = 18.0, left = 50.0, top = 60.0, plotHeight = 260.0
        let groupWidth = Double(names.count) * bar + gap
        let width = left + Double(workloads.count) * groupWidth + 20
        let height = top + plotHeight + 110
        func y(_ ratio: Double) -> Double { top + plotHeight * (1 - min(ratio, cap) / cap) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
        s += "font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(left)\" y=\"18\" font-size=\"14\">swmalloc bench: median time / best per workload "
        s += "(lower is better) — \(escape(document.machine.cpuModel)), \(document.machine.cpus) CPUs</text>\n"
        for (i, name) in names.enumerated() {
            let x = left + Double(i) * 95
            s += "<rect x=\"\(x)\" y=\"30\" width=\"10\" height=\"10\" fill=\"\(palette[i % palette.count])\"/>"
            s += "<text x=\"\(x + 14)\" y=\"39\">\(escape(name))</text>\n"
        }
        for r in stride(from: 0.0, through: cap, by: 1.0) {
            s += "<line x1=\"\(left)\" x2=\"\(width - 10)\" y1=\"\(y(r))\" y2=\"\(y(r))\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(y(r) + 4)\" text-anchor=\"end\">\(Int(r))×</text>\n"
        }
        for (g, w) in workloads.enumerated() {
            let x0 = left + Double(g) * groupWidth + gap / 2
            for (i, name) in names.enumerated() {
                guard let ratio = summary(w, name)?.ratio else { continue }
                let x = x0 + Double(i) * bar
                s += "<rect x=\"\(x)\" y=\"\(y(ratio))\" width=\"\(bar - 1)\" height=\"\(top + plotHeight - y(ratio))\" "
                s += "fill=\"\(palette[i % palette.count])\"><title>\(escape(w)) \(escape(name)): \(format(ratio, 2))×</title></rect>\n"
                if ratio > cap {
                    s += "<text x=\"\(x + bar / 2)\" y=\"\(top - 4)\" text-anchor=\"middle\" font-size=\"9\">\(format(ratio, 1))</text>\n"
                }
            }
            let lx = x0 + Double(names.count) * bar / 2, ly = top + plotHeight + 12
            s += "<text x=\"\(lx)\" y=\"\(ly)\" text-anchor=\"end\" transform=\"rotate(-35 \(lx) \(ly))\">\(escape(w))</text>\n"
        }
        s += "</svg>\n"
        return s
    }
}

/// The elements of `values` without repeats, in first-seen order.
private func unique(_ values: [String]) -> [String] {
    var seen = Set<String>()
    return values.filter { seen.insert($0).inserted }
}

/// A number with `digits` decimals.
func format(_ value: Double, _ digits: Int) -> String {
    String(format: "%.\(digits)f", value)
}

/// kB as MB with one decimal.
private func megabytes(_ kb: Double) -> String {
    format(kb / 1024, 1) + " MB"
}

/// Escapes text for SVG.
private func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;")
}

/// Lays out rows as columns separated by two spaces; `rightAligned` column indexes are
/// padded on the left.
func table(_ rows: [[String]], rightAligned: Set<Int>) -> String {
    let columns = rows.map(\.count).max() ?? 0
    var widths = [Int](repeating: 0, count: columns)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    var out = ""
    for row in rows {
        let cells = row.enumerated().map { i, cell in
            let pad = String(repeating: " ", count: widths[i] - cell.count)
            return rightAligned.contains(i) ? pad + cell : cell + pad
        }
        out += cells.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) + "\n"
    }
    return out
}
