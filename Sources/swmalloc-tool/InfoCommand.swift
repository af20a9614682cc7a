// `swmalloc info` — the version, the library the tool would preload, the options in force
// in this environment and the size classes. The options and classes come from the library
// itself: the tool runs itself once more with the library preloaded (`info --probe`).

import ArgumentParser
import Foundation
import SwmallocStats

/// `swmalloc info`.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the version, the library, the options in force (SWMALLOC_OPTIONS) and the size classes.")

    @OptionGroup var library: LibraryOption

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    /// Internal: run with the library preloaded; prints the classes and lets the library
    /// print its options.
    @Flag(name: .long, help: .hidden)
    var probe = false

    func run() throws {
        if probe {
            guard let classes = Swmalloc.sizeClasses() else { throw ExitCode(3) }
            // Marked: with stats_print and stats_fd=1 the library's report shares stdout.
            print(InfoCommand.classesMark + classes.map { String($0.blockSize) }.joined(separator: " "))
            return
        }
        let lib = try library.path()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Locations.executable)
        process.arguments = ["info", "--probe"]
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = lib
        let options = environment["SWMALLOC_OPTIONS"] ?? ""
        environment["SWMALLOC_OPTIONS"] = options.isEmpty ? "verbose=1" : options + ",verbose=1"
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let stderr = String(decoding: errData, as: UTF8.self).split(separator: "\n").map(String.init)
        let reportedLine = stderr.first { $0.hasPrefix("swmalloc: options ") }.map { String($0.dropFirst("swmalloc: options ".count)) }
        let warnings = stderr.filter { $0.hasPrefix("swmalloc: warning") }
        let classesLine = String(decoding: outData, as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix(InfoCommand.classesMark) }?.dropFirst(InfoCommand.classesMark.count) ?? ""
        let classes = classesLine.split(separator: " ").compactMap { Int($0) }
        guard process.terminationStatus == 0, let reported = reportedLine, !classes.isEmpty else {
            throw ValidationError("\(lib) did not answer as swmalloc (is it libswmalloc.so?)")
        }
        // The probe ran with verbose=1 added; show the environment's own verbose value.
        let inForce = reported.replacingOccurrences(of: "verbose=1", with: "verbose=\(InfoCommand.verbose(in: options))")
        let file = URL(fileURLWithPath: lib).resolvingSymlinksInPath().path
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        let place = Locations.installedPrefix().map { "installed under \($0)" } ?? "build folder"
        if json {
            let body: [String: Any] = [
                "version": swmallocVersion, "library": lib, "library_bytes": size, "location": place,
                "options": inForce, "warnings": warnings, "size_classes": classes,
            ]
            let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("swmalloc \(swmallocVersion)")
        print("library      \(lib) (\(size) bytes, \(place))")
        print("options      \(inForce)")
        for warning in warnings { print("             \(warning)") }
        print("size classes \(classes.count): \(classes.map(String.init).joined(separator: " "))")
    }

    /// Starts the probe's line of size classes on its stdout.
    static let classesMark = "swmalloc-size-classes: "

    /// The `verbose` value the library takes from `options` (a SWMALLOC_OPTIONS string):
    /// the last `verbose=` item's, when it is 1; else 0 (the default, also kept for a bad
    /// value, which the library warns about).
    static func verbose(in options: String) -> Int {
        let last = options.split(separator: ",").last { $0.hasPrefix("verbose=") }
        return last == "verbose=1" ? 1 : 0
    }
}
