import Foundation

/// Summary statistics of repeated measurements.
enum Stats {
    /// The median (the mean of the two middle values for an even count); nil when empty.
    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    /// The geometric mean of positive values; nil when empty or when one is not positive.
    static func geometricMean(_ values: [Double]) -> Double? {
        guard !values.isEmpty, values.allSatisfy({ $0 > 0 }) else { return nil }
        let logSum = values.reduce(0.0) { $0 + log($1) }
        return exp(logSum / Double(values.count))
    }
}

/// The summary of one workload on one allocator over its repetitions.
struct Summary: Codable, Equatable {
    /// The workload's name.
    let workload: String
    /// The allocator's (or baseline's) name.
    let allocator: String
    /// How many repetitions succeeded.
    let runs: Int
    /// How many repetitions failed (a crash, a non-zero exit, no RESULT line).
    let failures: Int
    /// The median of the workload's timed region (`time_s`), in seconds.
    let median: Double?
    /// The smallest `time_s`.
    let min: Double?
    /// The largest `time_s`.
    let max: Double?
    /// The median divided by the best median of the workload (1 for the best).
    var ratio: Double?
    /// The median user+sys CPU seconds of the whole child process.
    let cpuMedian: Double?
    /// The median peak RSS of the child process, in kB.
    let peakRSSMedianKB: Double?

    /// Summarises the samples of one workload on one allocator (ratio left unset).
    init(workload: String, allocator: String, samples: [Sample]) {
        let good = samples.filter { $0.error == nil }
        let times = good.compactMap(\.time)
        self.workload = workload
        self.allocator = allocator
        runs = good.count
        failures = samples.count - good.count
        median = Stats.median(times)
        min = times.min()
        max = times.max()
        ratio = nil
        cpuMedian = Stats.median(good.map(\.cpuSeconds))
        peakRSSMedianKB = Stats.median(good.map { Double($0.peakRSSKB) })
    }

    /// Summaries of every (workload, allocator) pair in the samples, in first-seen order,
    /// with each ratio set against the workload's best median.
    static func summarise(_ samples: [Sample]) -> [Summary] {
        var order: [String] = []
        var groups: [String: [Sample]] = [:]
        for sample in samples {
            let key = sample.workload + "\u{0}" + sample.allocator
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(sample)
        }
        var summaries = order.map { key in
            let group = groups[key]!
            return Summary(workload: group[0].workload, allocator: group[0].allocator, samples: group)
        }
        var best: [String: Double] = [:]
        for s in summaries {
            if let m = s.median, m > 0 { best[s.workload] = Swift.min(best[s.workload] ?? m, m) }
        }
        for i in summaries.indices {
            if let m = summaries[i].median, let b = best[summaries[i].workload] { summaries[i].ratio = m / b }
        }
        return summaries
    }
}
