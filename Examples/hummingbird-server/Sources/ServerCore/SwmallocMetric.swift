// The swmalloc_* metrics: one per field of SwmallocTotals that /metrics exposes.
import Prometheus
import SwmallocStats

/// One swmalloc metric: its Prometheus name and help, its type, and where its value comes from.
struct SwmallocMetric {
    /// `swmalloc_<name>_<unit>`, with the `# HELP` text.
    let descriptor: MetricNameDescriptor
    /// True for a counter (cumulative since start), false for a gauge.
    let isCounter: Bool
    /// Reads the value from the totals.
    let value: (SwmallocTotals) -> Int

    /// The metric `swmalloc_<name>_<unit>` (`swmalloc_<name>` when unit is empty).
    init(_ name: String, unit: String, counter: Bool = false, help: String, value: @escaping (SwmallocTotals) -> Int) {
        descriptor = MetricNameDescriptor(namespace: "swmalloc", metricName: name, unitName: unit, helpText: help)
        isCounter = counter
        self.value = value
    }

    /// Every metric /metrics exposes, in the order of `swm_stats_t`.
    static var all: [SwmallocMetric] {
        [
            .init("allocated", unit: "bytes", help: "Bytes in live blocks, by usable size.") { $0.allocated },
            .init("active", unit: "bytes", help: "Bytes in pages the heaps hold (emptied ones kept for reuse too), plus huge blocks' mappings.") { $0.active },
            .init("resident", unit: "bytes", help: "Bytes mapped and not purged: the most swmalloc keeps in RAM.") { $0.resident },
            .init("mapped", unit: "bytes", help: "Bytes mapped from the OS.") { $0.mapped },
            .init("returned", unit: "bytes_total", counter: true, help: "Bytes given back to the OS with madvise since start.") { $0.returned },
            .init("segments", unit: "", help: "4 MiB segments mapped.") { $0.segments },
            .init("huge_blocks", unit: "", help: "Live blocks mapped on their own (above 2 MiB).") { $0.hugeBlocks },
            .init("heaps", unit: "", help: "Threads with a heap.") { $0.heaps },
            .init("abandoned_segments", unit: "", help: "Segments of exited threads not yet reclaimed.") { $0.abandonedSegments },
            .init("mallocs", unit: "total", counter: true, help: "Allocations since start.") { $0.mallocs },
            .init("frees", unit: "total", counter: true, help: "Frees since start.") { $0.frees },
            .init("out_of_memory", unit: "total", counter: true, help: "Allocations refused with ENOMEM since start.") { $0.outOfMemory },
        ]
    }
}
