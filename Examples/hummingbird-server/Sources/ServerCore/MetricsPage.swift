// The /metrics page: swmalloc's totals, read at scrape time, in Prometheus text format.
import Prometheus
import SwmallocStats

/// Renders the /metrics page.
enum MetricsPage {
    /// The comment that replaces swmalloc's metrics when its statistics API is absent.
    static let notFound = "# swmalloc statistics API not found (swm_stats_get is not in this process): swmalloc is not this process's malloc\n"

    /// `process_resident_memory_bytes`, the name Prometheus clients give the process RSS.
    static var residentMemory: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "process", metricName: "resident_memory", unitName: "bytes",
            helpText: "Resident set size of the process in bytes (/proc/self/statm).")
    }

    /// The page: swmalloc's metrics (or the `notFound` comment) and the process RSS. A fresh
    /// registry per scrape, so counters hold exactly the totals read now.
    static func render() -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        let totals = Swmalloc.totals()
        if let totals {
            for metric in SwmallocMetric.all {
                let value = Int64(metric.value(totals))
                if metric.isCounter {
                    registry.makeCounter(descriptor: metric.descriptor).increment(by: value)
                } else {
                    registry.makeGauge(descriptor: metric.descriptor).set(value)
                }
            }
        }
        if let rss = ProcessMemory.residentBytes() {
            registry.makeGauge(descriptor: residentMemory).set(Int64(rss))
        }
        var page = totals == nil ? Array(notFound.utf8) : []
        registry.emit(into: &page)
        return page
    }
}
