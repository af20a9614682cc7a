/// The size of a run: parameters small enough for tests, the default comparison, or the
/// design document's sizes.
enum Profile: String, CaseIterable, Codable {
    /// Tiny parameters: every workload in well under a second (used by the tests).
    case tiny
    /// The default comparison: all workloads and allocators in about two minutes on 2 cores.
    case standard
    /// The design document's sizes (nginx 5,000,000 blocks, 10,000,000 loop pairs, …).
    case full
}

/// A baseline allocator of the design document, written in C inside the workload program
/// and measured through its own API on one workload.
struct Baseline {
    /// The row name in the reports (`vos-pool`, `ngx-slab`, `mc-slab`).
    let name: String
    /// The value of the workload program's `api=` parameter that selects it.
    let api: String
}

/// One named scenario of the workload program, with its parameters per profile.
struct Workload {
    /// The name on the command line and in the reports.
    let name: String
    /// One line saying what it measures.
    let summary: String
    /// Parameters for each profile, in the order they are passed.
    let parameters: [Profile: KeyValuePairs<String, String>]
    /// The baseline allocator measured on this workload, if any.
    let baseline: Baseline?
    /// Whether the parameter `threads` is set from the `--threads` option.
    let takesThreads: Bool

    /// The parameters for a profile as an ordered list of (key, value).
    func parameters(for profile: Profile) -> [(key: String, value: String)] {
        (parameters[profile] ?? [:]).map { ($0.key, $0.value) }
    }
}

/// The workload catalogue, in report order.
enum Catalogue {
    /// Every workload the benchmark knows.
    static let all: [Workload] = [
        Workload(
            name: "single-loop", summary: "malloc/free of one size N times on one thread (the VOS-vs-glibc table)",
            parameters: [.tiny: ["n": "20000", "size": "64"], .standard: ["n": "5000000", "size": "64"],
                         .full: ["n": "10000000", "size": "64"]],
            baseline: Baseline(name: "vos-pool", api: "vos-pool"), takesThreads: false),
        Workload(
            name: "thread-loop", summary: "T threads each malloc/free in batches, T = 1 … threads (scaling)",
            parameters: [.tiny: ["n": "20000", "size": "64", "batch": "16"],
                         .standard: ["n": "2000000", "size": "64", "batch": "16"],
                         .full: ["n": "20000000", "size": "64", "batch": "16"]],
            baseline: nil, takesThreads: true),
        Workload(
            name: "nginx-1500", summary: "1500-byte blocks: alloc all, touch all, free all, in rounds (nginx's test)",
            parameters: [.tiny: ["count": "20000", "batch": "10000", "size": "1500"],
                         .standard: ["count": "200000", "batch": "50000", "size": "1500"],
                         .full: ["count": "5000000", "batch": "50000", "size": "1500"]],
            baseline: Baseline(name: "ngx-slab", api: "ngx-slab"), takesThreads: false),
        Workload(
            name: "slab-kv", summary: "memcached-like sets and deletes of Pareto-sized values",
            parameters: [.tiny: ["ops": "20000", "keys": "2000"], .standard: ["ops": "1000000", "keys": "20000"],
                         .full: ["ops": "10000000", "keys": "100000"]],
            baseline: Baseline(name: "mc-slab", api: "mc-slab"), takesThreads: false),
        Workload(
            name: "larson", summary: "server simulation: random replacement, slot arrays passed to new threads",
            parameters: [.tiny: ["slots": "200", "ops": "5000", "generations": "2"],
                         .standard: ["slots": "1000", "ops": "300000", "generations": "5"],
                         .full: ["slots": "1000", "ops": "2000000", "generations": "10"]],
            baseline: nil, takesThreads: true),
        Workload(
            name: "producer-consumer", summary: "one thread allocates, another frees (through a ring)",
            parameters: [.tiny: ["n": "20000"], .standard: ["n": "2000000"], .full: ["n": "10000000"]],
            baseline: nil, takesThreads: false),
        Workload(
            name: "false-sharing", summary: "small blocks handed to different threads that write them hard",
            parameters: [.tiny: ["rounds": "3", "writes": "10000"], .standard: ["rounds": "50", "writes": "200000"],
                         .full: ["rounds": "200", "writes": "1000000"]],
            baseline: nil, takesThreads: true),
        Workload(
            name: "thread-churn", summary: "threads created and destroyed per phase, objects outliving them",
            parameters: [.tiny: ["phases": "3", "objs": "500"], .standard: ["phases": "100", "objs": "5000"],
                         .full: ["phases": "200", "objs": "20000"]],
            baseline: nil, takesThreads: true),
        Workload(
            name: "mixed-sizes", summary: "random replacement with a Pareto-like size distribution (16 B … 64 KiB)",
            parameters: [.tiny: ["ops": "20000", "slots": "1000"], .standard: ["ops": "2000000", "slots": "10000"],
                         .full: ["ops": "10000000", "slots": "100000"]],
            baseline: nil, takesThreads: false),
        Workload(
            name: "realloc-chain", summary: "realloc growth chains (×1.5) from 16 B to 256 KiB",
            parameters: [.tiny: ["chains": "100"], .standard: ["chains": "4000"], .full: ["chains": "40000"]],
            baseline: nil, takesThreads: false),
        Workload(
            name: "large", summary: "blocks of 64 KiB … 64 MiB (log-uniform), every page written",
            parameters: [.tiny: ["ops": "10", "max_kb": "4096"], .standard: ["ops": "100", "max_kb": "65536"],
                         .full: ["ops": "1000", "max_kb": "65536"]],
            baseline: nil, takesThreads: false),
        Workload(
            name: "rss-return", summary: "RSS at the peak of a small-block working set and 1 s after freeing it",
            parameters: [.tiny: ["mb": "8", "wait_ms": "100"], .standard: ["mb": "64", "wait_ms": "1000"],
                         .full: ["mb": "512", "wait_ms": "1000"]],
            baseline: nil, takesThreads: false),
        Workload(
            name: "retention-idle", summary: "RSS after threads free 16 … 4,000-byte blocks and every thread sleeps",
            parameters: [.tiny: ["threads": "4", "mb": "1", "wait_ms": "300"],
                         .standard: ["threads": "16", "mb": "3", "wait_ms": "1000"],
                         .full: ["threads": "16", "mb": "16", "wait_ms": "1000"]],
            baseline: nil, takesThreads: false),
        Workload(
            name: "retention-pc", summary: "RSS after one thread allocates 256 KiB blocks another frees (16 live)",
            parameters: [.tiny: ["n": "500"], .standard: ["n": "20000"], .full: ["n": "100000"]],
            baseline: nil, takesThreads: false),
        Workload(
            name: "retention-fork", summary: "RSS of a fork child that frees its parent's threads' blocks and allocates again",
            parameters: [.tiny: ["threads": "2", "mb": "2"], .standard: ["threads": "4", "mb": "16"],
                         .full: ["threads": "4", "mb": "64"]],
            baseline: nil, takesThreads: false),
        Workload(
            name: "retention-spawn", summary: "peak RSS while short threads start faster than they end, replacing 16 B … 400 KB blocks, and the process forks",
            parameters: [.tiny: ["threads": "200", "forks": "2"], .standard: ["threads": "4000", "forks": "12"],
                         .full: ["threads": "20000", "forks": "50"]],
            baseline: nil, takesThreads: false),
        Workload(
            name: "vos-cost", summary: "VOS_Malloc/VOS_Free (module, module+site) vs malloc/free vs the VOS pool",
            parameters: [.tiny: ["n": "20000"], .standard: ["n": "1000000"], .full: ["n": "10000000"]],
            baseline: nil, takesThreads: false),
    ]

    /// The workload named `name`, if any.
    static func workload(named name: String) -> Workload? {
        all.first { $0.name == name }
    }
}
