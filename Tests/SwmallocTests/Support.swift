// Support.swift — shared helpers for swmalloc's tests (also used by the bench and VOS
// tests). The tests never link the Embedded core into this Swift binary: they reach the
// built libswmalloc.so through child processes, which either preload it or link it.
//
// The API in short:
// - `Paths.root`, `Paths.programs`, `Paths.scratch`: package root, `Tests/programs`, and a
//   temporary directory private to this test run;
// - `Library.release` / `Library.debug`: `.directory` and `.path` of each libswmalloc.so
//   (`SWMALLOC_BUILD_DIR` / `SWMALLOC_DEBUG_BUILD_DIR` override the build directories);
// - `runChild(_:_:environment:preload:stdin:directory:)`: runs a program, returns a
//   `ChildResult` (stdout, stderr, exit status or signal);
// - `compileProgram(_:linking:)`: compiles a C or C++ file of `Tests/programs` once per
//   test run and returns the executable's path;
// - `requireTool(_:debianPackage:)`: the path of a program in `PATH`, or a thrown error
//   naming the Debian package that provides it;
// - `expectCaseList(_:linking:_:)`: a test program's `list` matches the suite's cases.

import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An error of the test support code (a missing tool, a failed compilation, a failed spawn).
struct SupportError: Error, CustomStringConvertible {
    /// What went wrong, for the test report.
    let description: String

    /// Creates an error with a message.
    init(_ description: String) { self.description = description }
}

/// Paths of the package and of this test run.
enum Paths {
    /// The package root, found from this file's path (`<root>/Tests/SwmallocTests/Support.swift`).
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// `Tests/programs`: the C, C++, Python and SQL sources the tests run.
    static let programs = root + "/Tests/programs"

    /// `include`: swmalloc.h.
    static let include = root + "/include"

    /// A directory private to this test run (created on first use, in `$TMPDIR` or `/tmp`,
    /// removed when the test process exits).
    static let scratch: String = {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/swmalloc-tests-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!).map { String(cString: $0) } }
        guard let made else { fatalError("cannot create a scratch directory in \(base)") }
        atexit { try? FileManager.default.removeItem(atPath: Paths.scratch) }
        return made
    }()

    /// A new empty directory inside `scratch`, named after `prefix`.
    static func newDirectory(_ prefix: String) throws -> String {
        var template = Array("\(scratch)/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!).map { String(cString: $0) } }
        guard let made else { throw SupportError("mkdtemp failed in \(scratch)") }
        return made
    }
}

/// One built libswmalloc.so: the release one or the debug one (which checks the heap
/// invariants at every thread exit and aborts on a violation).
enum Library: String, CaseIterable, Sendable, CustomStringConvertible {
    case release, debug

    /// The directory holding libswmalloc.so: `$SWMALLOC_BUILD_DIR` (release) or
    /// `$SWMALLOC_DEBUG_BUILD_DIR` (debug) when set, else `<root>/.build/<release|debug>`.
    var directory: String {
        let variable = self == .release ? "SWMALLOC_BUILD_DIR" : "SWMALLOC_DEBUG_BUILD_DIR"
        if let dir = ProcessInfo.processInfo.environment[variable], !dir.isEmpty { return dir }
        return "\(Paths.root)/.build/\(rawValue)"
    }

    /// The path of libswmalloc.so.
    var path: String { directory + "/libswmalloc.so" }

    /// The path of libswmalloc.so, or a thrown error when it has not been built.
    func existingPath() throws -> String {
        guard access(path, R_OK) == 0 else {
            throw SupportError("\(path) missing: run `swift build\(self == .release ? " -c release" : "")` first")
        }
        return path
    }

    /// "release" or "debug".
    var description: String { rawValue }
}

/// What a child process did: its output and how it ended.
struct ChildResult: Sendable, CustomStringConvertible {
    /// Everything it wrote on stdout.
    var stdout: String
    /// Everything it wrote on stderr.
    var stderr: String
    /// The exit status, when it exited (nil when a signal killed it).
    var exitCode: Int32?
    /// The signal that killed it, when one did.
    var signal: Int32?
    /// True when it ran past its time limit and was killed with SIGKILL.
    var timedOut = false

    /// True when it exited with status 0.
    var succeeded: Bool { exitCode == 0 }

    /// The lines of stderr that start with "swmalloc:".
    var swmallocLines: [String] {
        stderr.split(separator: "\n").map(String.init).filter { $0.hasPrefix("swmalloc:") }
    }

    /// How it ended and its stderr (truncated), for failure messages.
    var description: String {
        let how = timedOut ? "timed out" : exitCode.map { "exit \($0)" } ?? "signal \(signal ?? -1)"
        return "\(how); stderr: \(stderr.suffix(2000)); stdout: \(stdout.suffix(1000))"
    }
}

/// Runs `program` (a path, or a name looked up in `PATH`) with `arguments` and waits for it.
///
/// The child inherits this process's environment, plus `environment` (a value replaces an
/// inherited one), plus `LD_PRELOAD=<library path>` when `preload` is given. `stdin` is
/// fed on its standard input (else it reads an empty input); `directory` is its working
/// directory (reached through `/bin/sh`, which then execs the program). Output goes
/// through files, so any amount of it is safe. A child still running after `timeLimit`
/// seconds is killed (SIGKILL) and reported with `timedOut`, so a deadlock fails its test
/// instead of hanging the run.
func runChild(
    _ program: String, _ arguments: [String] = [], environment: [String: String] = [:],
    preload: Library? = nil, stdin: String? = nil, directory: String? = nil, timeLimit: Double = 300
) throws -> ChildResult {
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    if let preload { env["LD_PRELOAD"] = try preload.existingPath() }

    let io = try Paths.newDirectory("child")
    defer { try? FileManager.default.removeItem(atPath: io) }
    let inPath = io + "/stdin", outPath = io + "/stdout", errPath = io + "/stderr"
    try (stdin ?? "").write(toFile: inPath, atomically: false, encoding: .utf8)

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, inPath, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)

    // The child starts with every signal at its default action and none blocked (the test
    // runner may block or ignore some, SIGABRT included, and both survive exec).
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var allSignals = sigset_t(), noSignals = sigset_t()
    sigfillset(&allSignals)
    sigemptyset(&noSignals)
    posix_spawnattr_setsigdefault(&attributes, &allSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

    // posix_spawn_file_actions_addchdir_np is not imported into Swift: a shell changes
    // directory, then becomes the program.
    let command = directory.map { ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", $0, program] } ?? [program]
    let argv = (command + arguments).map { strdup($0) } + [nil]
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for p in argv + envp { free(p) } }

    var pid = pid_t()
    let rc = command[0].contains("/")
        ? posix_spawn(&pid, command[0], &actions, &attributes, argv, envp)
        : posix_spawnp(&pid, command[0], &actions, &attributes, argv, envp)
    guard rc == 0 else { throw SupportError("cannot run \(program): \(String(cString: strerror(rc)))") }

    var status: Int32 = 0
    var timedOut = false
    let deadline = Date().addingTimeInterval(timeLimit)
    var pause: UInt32 = 200
    while true {
        let done = waitpid(pid, &status, WNOHANG)
        if done == pid { break }
        if done < 0 && errno != EINTR { throw SupportError("waitpid failed: \(errno)") }
        if !timedOut && Date() > deadline {
            timedOut = true
            kill(pid, SIGKILL)
        }
        usleep(pause)
        pause = min(pause * 2, 20_000)
    }
    let read = { (path: String) in
        String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    }
    let signaled = status & 0x7f
    return ChildResult(
        stdout: read(outPath), stderr: read(errPath),
        exitCode: signaled == 0 ? (status >> 8) & 0xff : nil,
        signal: signaled == 0 ? nil : signaled, timedOut: timedOut)
}

/// The path of `name` in `PATH`, or a thrown error naming the Debian package to install.
/// Tests of real programs use it so that a missing program fails the test, never skips it.
func requireTool(_ name: String, debianPackage: String) throws -> String {
    let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
    for dir in dirs where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
    throw SupportError("\(name) not found in PATH: install the Debian package `\(debianPackage)` (apt-get install \(debianPackage))")
}

/// Compiled test programs of this run, keyed by source and link mode.
private let compiled = Mutex<[String: String]>([:])

/// Serialises compilations, so that concurrent tests wanting one program compile it once.
private let compiling = Mutex<Void>(())

/// Compiles `source` (a file name in `Tests/programs`, `.c` with `cc` or `.cpp` with
/// `g++`) once per test run and returns the executable's path.
///
/// Flags: `-O1 -g -fno-builtin -pthread -I include`, plus `-std=c++17` for C++
/// (`-fno-builtin` keeps the compiler
/// from folding `malloc` calls, so each edge case reaches the allocator). With `linking`,
/// the program is linked to that libswmalloc.so (`-lswmalloc` with an rpath), so it needs
/// no preload and can call the `swm_*` functions directly; without, it uses the process's
/// allocator (preload one with `runChild(preload:)`) and finds `swm_*` with dlsym.
func compileProgram(_ source: String, linking library: Library? = nil) throws -> String {
    let key = "\(source)|\(library?.rawValue ?? "none")"
    if let path = compiled.withLock({ $0[key] }) { return path }
    return try compiling.withLock { _ in
        if let path = compiled.withLock({ $0[key] }) { return path }
        let cxx = source.hasSuffix(".cpp")
        let compiler = try requireTool(cxx ? "g++" : "cc", debianPackage: cxx ? "g++" : "gcc")
        let base = (source as NSString).deletingPathExtension
        let output = "\(Paths.scratch)/\(base)-\(library?.rawValue ?? "plain")"
        var args = ["-O1", "-g", "-fno-builtin", "-pthread", "-I", Paths.include,
                    "\(Paths.programs)/\(source)", "-o", output] + (cxx ? ["-std=c++17"] : [])
        if let library {
            _ = try library.existingPath()
            args += ["-L", library.directory, "-lswmalloc", "-Wl,-rpath,\(library.directory)"]
        }
        args += ["-ldl"]
        let result = try runChild(compiler, args)
        guard result.succeeded else { throw SupportError("compiling \(source) failed: \(result.stderr)") }
        compiled.withLock { $0[key] = output }
        return output
    }
}

/// Expects `program list` of a test program built with check.h's `select_case` (or its
/// own list) to print exactly `cases`, one per line: the Swift suite and the C program
/// then know the same cases.
func expectCaseList(_ source: String, linking library: Library? = nil, _ cases: [String],
                    sourceLocation: SourceLocation = #_sourceLocation) throws {
    let program = try compileProgram(source, linking: library)
    let listed = try runChild(program, ["list"])
    #expect(listed.succeeded, "\(listed)", sourceLocation: sourceLocation)
    #expect(listed.stdout.split(separator: "\n").map(String.init) == cases, sourceLocation: sourceLocation)
}
