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
            // A library built before `swm_version` existed answers without the line.
            if let version = Swmalloc.version() { print(InfoCommand.versionMark + version) }
            print(InfoCommand.classesMark + classes.map { String($0.blockSize) }.joined(separator: " "))
            return
        }
        let lib = try library.path()
        let options = ProcessInfo.processInfo.environment["SWMALLOC_OPTIONS"] ?? ""
        // The library prints the options in force at start-up when verbose is on. If the
        // environment's own options turn it on, that line is the answer; else the probe
        // runs again with verbose=1 added, and the line shows verbose=0 (the value that
        // was in force before the addition).
        var answer = try InfoCommand.runProbe(library: lib, options: options)
        var inForce = answer.options
        if inForce == nil {
            answer = try InfoCommand.runProbe(library: lib, options: options.isEmpty ? "verbose=1" : options + ",verbose=1")
            inForce = answer.options?.replacingOccurrences(of: " verbose=1 ", with: " verbose=0 ")
        }
        guard answer.status == 0, let inForce, !answer.classes.isEmpty else {
            throw ValidationError("\(lib) did not answer as swmalloc (is it libswmalloc.so?)")
        }
        var warnings = answer.warnings
        // A library without `swm_version` is older than 1.1.0, the version that added it.
        let libraryVersion = answer.version ?? "older than 1.1.0"
        if libraryVersion != swmallocVersion {
            warnings.append("the library is swmalloc \(libraryVersion), this tool \(swmallocVersion)")
        }
        let classes = answer.classes
        let file = URL(fileURLWithPath: lib).resolvingSymlinksInPath().path
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        // Where the library in use lies, not where this tool does (a --library elsewhere
        // was labelled with the tool's own place).
        let beside = URL(fileURLWithPath: Locations.executableDirectory + "/libswmalloc.so").resolvingSymlinksInPath().path
        let place: String
        if let installed = Locations.installedLibrary(),
           file.hasPrefix(URL(fileURLWithPath: installed.path).deletingLastPathComponent().resolvingSymlinksInPath().path + "/") {
            place = "installed under \(installed.prefix)"
        } else if file == beside {
            place = "build folder"
        } else {
            place = "given by --library or SWMALLOC_LIB"
        }
        if json {
            let body: [String: Any] = [
                "version": swmallocVersion, "library": lib, "library_version": libraryVersion,
                "library_bytes": size, "location": place,
                "options": inForce, "warnings": warnings, "size_classes": classes,
            ]
            let data = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("swmalloc \(swmallocVersion)")
        print("library      \(lib) (swmalloc \(libraryVersion), \(size) bytes, \(place))")
        print("options      \(inForce)")
        for warning in warnings { print("             \(warning)") }
        print("size classes \(classes.count): \(classes.map(String.init).joined(separator: " "))")
    }

    /// Starts the probe's line of size classes on its stdout.
    static let classesMark = "swmalloc-size-classes: "

    /// Starts the probe's line with the library's version (`swm_version`) on its stdout.
    static let versionMark = "swmalloc-library-version: "

    /// What one probe (`info --probe` with `library` preloaded and SWMALLOC_OPTIONS set to
    /// `options`) said: its exit status, the library's options line (without its prefix;
    /// nil when verbose was off), its warnings, the size classes and the library's version.
    static func runProbe(library: String, options: String) throws
        -> (status: Int32, options: String?, warnings: [String], classes: [Int], version: String?) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Locations.executable)
        process.arguments = ["info", "--probe"]
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = library
        environment["SWMALLOC_OPTIONS"] = options
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let stderr = String(decoding: errData, as: UTF8.self).split(separator: "\n").map(String.init)
        let prefix = "swmalloc: options "
        let reported = stderr.first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
        let warnings = stderr.filter { $0.hasPrefix("swmalloc: warning") }
        let lines = String(decoding: outData, as: UTF8.self).split(separator: "\n")
        let classesLine = lines.first { $0.hasPrefix(classesMark) }?.dropFirst(classesMark.count) ?? ""
        let version = lines.first { $0.hasPrefix(versionMark) }.map { String($0.dropFirst(versionMark.count)) }
        return (process.terminationStatus, reported, warnings, classesLine.split(separator: " ").compactMap { Int($0) },
                version)
    }
}
