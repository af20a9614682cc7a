import Foundation
import Testing

/// The README's third way to use swmalloc: a Swift package depends on this one and links
/// its `swmalloc` product (a dynamic library). Its executable must then get swmalloc as
/// its malloc, process-wide, with no LD_PRELOAD.
@Suite(.serialized) struct SwiftProductTests {
    /// A throwaway package with a path dependency on this repository builds, and its
    /// executable runs on swmalloc: `malloc_usable_size(malloc(100))` is 112, swmalloc's
    /// size class (glibc answers 104), the `swm_*` names are in the process, and a
    /// Dictionary of Strings built by the Swift runtime on that malloc holds what was put
    /// in; the same with `-c release --static-swift-stdlib`.
    @Test func executableLinkingTheProductUsesSwmalloc() throws {
        let swift = try requireTool("swift", debianPackage: "the Swift toolchain (swift.org)")
        let package = try Paths.newDirectory("consumer")
        defer { try? FileManager.default.removeItem(atPath: package) }
        try FileManager.default.createDirectory(atPath: package + "/Sources/app", withIntermediateDirectories: true)
        try """
        // swift-tools-version:6.1
        import PackageDescription
        let package = Package(
            name: "consumer",
            dependencies: [.package(path: "\(Paths.root)")],
            targets: [.executableTarget(name: "app", dependencies: [.product(name: "swmalloc", package: "\((Paths.root as NSString).lastPathComponent.lowercased())")])]
        )
        """.write(toFile: package + "/Package.swift", atomically: true, encoding: .utf8)
        try """
        #if canImport(Glibc)
        import Glibc
        #endif
        typealias UsableSize = @convention(c) (UnsafeMutableRawPointer?) -> Int
        let handle = dlopen(nil, RTLD_NOW)
        let usable = unsafeBitCast(dlsym(handle, "malloc_usable_size")!, to: UsableSize.self)
        let p = malloc(100)
        print("usable \\(usable(p))")
        free(p)
        print("swm_malloc \\(dlsym(handle, "swm_malloc") != nil)")
        var words: [String: Int] = [:]
        for i in 0..<10_000 { words["w\\(i % 997)", default: 0] += i }
        print("words \\(words.count) \\(words["w1"]!)")
        """.write(toFile: package + "/Sources/app/main.swift", atomically: true, encoding: .utf8)

        let build = try runChild(swift, ["build", "--package-path", package, "--scratch-path", package + "/.build"],
                                 timeLimit: 900)
        try #require(build.succeeded, "swift build of the consumer package: \(build)")
        let run = try runChild(package + "/.build/debug/app")
        #expect(run.succeeded, "\(run)")
        let expectedW1 = (0..<10_000).filter { $0 % 997 == 1 }.reduce(0, +)
        #expect(run.stdout == "usable 112\nswm_malloc true\nwords 997 \(expectedW1)\n", "\(run)")

        // The usual server deployment build, the Swift runtime linked in: it failed to
        // compile the Embedded core ("unable to load standard library", an outside review).
        let release = try runChild(swift, ["build", "-c", "release", "--static-swift-stdlib", "--package-path", package,
                                           "--scratch-path", package + "/.build"], timeLimit: 900)
        try #require(release.succeeded, "swift build -c release --static-swift-stdlib of the consumer package: \(release)")
        let staticRun = try runChild(package + "/.build/release/app")
        #expect(staticRun.stdout == run.stdout, "\(staticRun)")
    }
}
