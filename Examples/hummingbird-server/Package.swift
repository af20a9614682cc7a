// swift-tools-version:6.1
import PackageDescription

/// A Hummingbird 2 HTTP server built twice from the same code: `hummingbird-server` links
/// swmalloc (so swmalloc is its malloc), `hummingbird-server-plain` does not (glibc, or any
/// allocator given with LD_PRELOAD). Both expose swmalloc's statistics at /metrics.
let package = Package(
    name: "hummingbird-server",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "swmalloc", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        /// The application: command line, routes, JSON payload and /metrics.
        .target(
            name: "ServerCore",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwmallocStats", package: "swmalloc"),
            ]),
        /// The server with swmalloc linked: libswmalloc.so is this process's malloc.
        .executableTarget(
            name: "hummingbird-server",
            dependencies: ["ServerCore", .product(name: "swmalloc", package: "swmalloc")]),
        /// The same server without swmalloc: glibc's malloc, or whatever LD_PRELOAD names.
        .executableTarget(name: "hummingbird-server-plain", dependencies: ["ServerCore"]),
    ]
)
