import Foundation

/// An allocator under test: preloaded into the workload program, or none for glibc.
struct Allocator: Codable, Equatable {
    /// The name on the command line and in the reports.
    let name: String
    /// The library put in `LD_PRELOAD`; nil runs the process's own malloc (glibc).
    let library: String?
    /// The Debian package that provides it, named when it is missing.
    let package: String?
}

/// The allocators the benchmark knows, and where their libraries are looked for.
enum AllocatorCatalogue {
    /// Allocator names in report order.
    static let names = ["swmalloc", "glibc", "jemalloc", "tcmalloc", "mimalloc"]

    /// Default library paths of the system allocators.
    static let systemLibraries: [String: (paths: [String], package: String)] = [
        "jemalloc": (["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2"], "libjemalloc2"),
        "tcmalloc": (["/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/libtcmalloc_minimal.so.4"],
                     "libtcmalloc-minimal4"),
        "mimalloc": (["/usr/lib/x86_64-linux-gnu/libmimalloc.so.2", "/usr/lib/libmimalloc.so.2"], "libmimalloc2.0"),
    ]

    /// Resolves the named allocators. `overrides` maps a name to a library path given on
    /// the command line; `swmalloc` is libswmalloc.so's default path. Returns the
    /// allocators found and one note per allocator that was skipped.
    static func resolve(
        _ requested: [String], overrides: [String: String], swmalloc: String
    ) -> (found: [Allocator], notes: [String]) {
        var found: [Allocator] = []
        var notes: [String] = []
        for name in requested {
            switch name {
            case "glibc":
                found.append(Allocator(name: name, library: nil, package: nil))
            case "swmalloc":
                let path = overrides[name] ?? swmalloc
                if let problem = preloadProblem(path) {
                    notes.append("swmalloc skipped: \(path): \(problem) (run `swift build -c release` or pass --lib-swmalloc)")
                } else {
                    found.append(Allocator(name: name, library: path, package: nil))
                }
            default:
                guard let system = systemLibraries[name] else { continue }
                let candidates = overrides[name].map { [$0] } ?? system.paths
                if let path = candidates.first(where: { preloadProblem($0) == nil }) {
                    found.append(Allocator(name: name, library: path, package: system.package))
                } else if let given = overrides[name], let problem = preloadProblem(given) {
                    notes.append("\(name) skipped: \(given): \(problem) (the system's: apt-get install \(system.package))")
                } else {
                    notes.append(
                        "\(name) skipped: \(candidates.joined(separator: " or ")) not found (apt-get install \(system.package))")
                }
            }
        }
        return (found, notes)
    }
}
