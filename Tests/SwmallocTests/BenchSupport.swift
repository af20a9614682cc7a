import Foundation

/// Finds and runs the built benchmark binaries for the Bench tests.
enum BenchSupport {
    /// The package root, from this file's path.
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The release build directory: $SWMALLOC_BUILD_DIR, else <package root>/.build/release.
    static var buildDirectory: String {
        ProcessInfo.processInfo.environment["SWMALLOC_BUILD_DIR"] ?? packageRoot + "/.build/release"
    }

    /// The command-line tool (`swmalloc`; swmalloc-tool in the build folder): the bench
    /// runs as its `bench` subcommand.
    static var tool: String { buildDirectory + "/swmalloc-tool" }
    /// The swm-workload executable.
    static var workload: String { buildDirectory + "/swm-workload" }
    /// The built libswmalloc.so.
    static var library: String { buildDirectory + "/libswmalloc.so" }

    /// What a finished process printed and how it exited.
    struct Outcome {
        /// Its exit status.
        let status: Int32
        /// Its standard output.
        let stdout: String
        /// Its standard error.
        let stderr: String
    }

    /// Runs `executable` with `arguments` and `environment` added to this process's, and
    /// waits for it.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let errData = ReadAsync(err.fileHandleForReading)
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData.wait(), as: UTF8.self))
    }

    /// Writes an executable shell script `dir/fake-workload` standing in for swm-workload:
    /// `cases` are the branches of a `case "$1" in … esac` on the workload's name. Returns
    /// its path. The executable is written by another process (install): a file this
    /// process wrote can still be open for writing in a child another test is forking,
    /// and running it then fails with ETXTBSY ("Text file busy").
    static func fakeWorkload(in dir: String, cases: String) throws -> String {
        let fake = dir + "/fake-workload"
        try "#!/bin/sh\ncase \"$1\" in\n\(cases)\nesac\n".write(toFile: fake + ".sh", atomically: true, encoding: .utf8)
        let installed = try run("/usr/bin/install", ["-m", "755", fake + ".sh", fake])
        guard installed.status == 0 else { throw InstallFailed(outcome: installed) }
        return fake
    }

    /// The /proc/PID/stat line of the process whose id `pidFile` holds while it still
    /// runs; nil once it is gone or a zombie not yet reaped (killed).
    static func stillRunning(pidFile: String) throws -> String? {
        let pid = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        let state = stat.split(separator: ")").last?.split(separator: " ").first.map(String.init)
        return state == "Z" ? nil : stat
    }

    /// `install` failed to write a fake workload.
    struct InstallFailed: Error {
        let outcome: Outcome
    }

    /// A fresh temporary directory for one test (the test removes it: `defer`).
    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "swmalloc-bench-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Reads a JSON object from a file.
    static func readJSON(_ path: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        return object as? [String: Any] ?? [:]
    }
}

/// Reads a file handle to its end on another thread.
final class ReadAsync: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    /// Starts reading `handle`.
    init(_ handle: FileHandle) {
        Thread {
            self.data = handle.readDataToEndOfFile()
            self.done.signal()
        }.start()
    }

    /// The bytes read, once the handle reached its end.
    func wait() -> Data {
        done.wait()
        return data
    }
}
