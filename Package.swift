// swift-tools-version:6.1
import PackageDescription

/// Flags for the Embedded Swift core (see ../shared/design-brief.md, points 1-3):
/// - `Embedded`: no Swift runtime beyond a few weak stubs, so `ldd` shows libc only;
/// - `-no-allocations`: any heap allocation in the core is a compile error, because an
///   allocator must never call itself through the Swift runtime;
/// - `-wmo`/`-Osize` are not used: `-O` with whole-module keeps the fast paths inlined;
/// - `-momit-leaf-frame-pointer`: functions that call nothing (free's fast path, whose
///   exits are tail jumps) set up no stack frame, 3 instructions a call; the others keep
///   their frame pointers for profilers;
/// - `-no-static-stdlib`: a package that depends on the `swmalloc` product and builds with
///   `--static-swift-stdlib` (the usual server deployment build) would otherwise compile
///   the core against `swift_static/embedded`, which holds no Embedded standard library
///   ("unable to load standard library"); the core links no Swift runtime either way.
let coreSwiftSettings: [SwiftSetting] = [
    .enableExperimentalFeature("Embedded"),
    .unsafeFlags(["-Xfrontend", "-no-allocations", "-wmo", "-Xcc", "-momit-leaf-frame-pointer", "-no-static-stdlib"]),
]

/// Linker flags for the shared library, linked by lld (the paths are absolute so that the
/// library also links when this package is a dependency): the version script exports the
/// C API only (defined with default visibility in `CSwmShim/exports.c`) and keeps the
/// Embedded runtime's weak `swift_*` symbols local (a library exporting them crashes
/// Swift processes); `swmalloc-aliases.ld` binds the hot exports to their entry points
/// and the compiler's `memset`/`memmove`/`memcpy` to the shim's own (see that file;
/// scripts/install.sh relinks with the same two files).
let coreLinkerSettings: [LinkerSetting] = [
    .unsafeFlags(
        ["-use-ld=lld", "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/swmalloc/swmalloc.map",
         "-Xlinker", "-z", "-Xlinker", "nodelete",
         "-Xlinker", "\(Context.packageDirectory)/Sources/swmalloc/swmalloc-aliases.ld"]),
]

let package = Package(
    name: "swmalloc",
    products: [
        /// libswmalloc.so: LD_PRELOAD it, link it with -lswmalloc, or depend on this product.
        .library(name: "swmalloc", type: .dynamic, targets: ["swmalloc"]),
        /// libswmalloc-static.a, the same objects: for C programs that link statically
        /// (installed as libswmalloc.a; a Swift program must use the dynamic product, whose
        /// version script keeps the core's private Swift runtime symbols local).
        .library(name: "swmalloc-static", type: .static, targets: ["swmalloc"]),
        /// Swift access to swmalloc's statistics (found at run time; no link to the core).
        .library(name: "SwmallocStats", targets: ["SwmallocStats"]),
        /// The command-line tool, `swmalloc` once installed: run, stats, bench, info. (In the
        /// build folder it is swmalloc-tool: a product cannot share the library's name.)
        .executable(name: "swmalloc-tool", targets: ["swmalloc-tool"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        /// TLS, syscalls, pthread registration and constants, and the exported symbols (C
        /// forwarders with default visibility): the only C in the core.
        /// `-gdwarf-4`: DWARF 5 from this clang makes valgrind 3.19 (Debian 12) give up on
        /// the library's debug info, and so on every program run under valgrind with it.
        /// `-O2` in the debug configuration too: the debug core zeroes every local through
        /// the shim's `memset`, and at `-O0` that call was two thirds of the debug
        /// library's time in `swm_stats_get` (38 → 15 µs a read).
        .target(name: "CSwmShim", cSettings: [.unsafeFlags(["-gdwarf-4", "-O2"])]),
        /// The allocator itself, Embedded Swift.
        .target(
            name: "swmalloc",
            dependencies: ["CSwmShim"],
            exclude: ["swmalloc.map", "swmalloc-aliases.ld"],
            swiftSettings: coreSwiftSettings,
            linkerSettings: coreLinkerSettings),

        // ---- tools: ordinary Swift and C, never linked to the core statically ----
        /// Reads swmalloc's statistics from Swift through the C API, looked up with dlsym.
        .target(name: "SwmallocStats"),
        /// The command-line tool: `run` (preload with options from flags), `stats` (report at
        /// exit), `bench` (the benchmark driver: each workload in a child process per
        /// allocator), `info`.
        .executableTarget(
            name: "swmalloc-tool",
            dependencies: ["SwmallocStats", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        /// The workloads the benchmark runs (C, so they call malloc directly), with the
        /// design document's baseline allocators (VOS pool, memcached slab, nginx slab).
        .executableTarget(name: "swm-workload"),
        /// A Swift program using Array, Dictionary and String from several threads: the
        /// tests run it with swmalloc preloaded.
        .executableTarget(name: "swm-swift-probe"),
        .testTarget(name: "SwmallocTests", dependencies: ["SwmallocStats"]),
    ]
)
