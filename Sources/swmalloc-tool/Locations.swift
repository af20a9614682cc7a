// Where the tool finds libswmalloc.so and the benchmark's workload program: beside itself
// in a build folder (.build/release), or in an installed prefix (PREFIX/bin/swmalloc
// with PREFIX/lib (or lib64, lib/MULTIARCH) and PREFIX/libexec/swmalloc, as
// scripts/install.sh lays them out).

import ArgumentParser
import Foundation

/// The files the tool works with, looked up once per use.
enum Locations {
    /// This executable's path (/proc/self/exe).
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The directory of this executable: the build folder, or PREFIX/bin.
    static var executableDirectory: String { (executable as NSString).deletingLastPathComponent }

    /// The library directories an install may use, relative to its prefix
    /// (`scripts/install.sh --libdir`): lib, lib64 (Fedora) and the multiarch one (Debian).
    static let libraryDirectories: [String] = {
        #if arch(x86_64)
        return ["lib", "lib64", "lib/x86_64-linux-gnu"]
        #elseif arch(arm64)
        return ["lib", "lib64", "lib/aarch64-linux-gnu"]
        #else
        return ["lib", "lib64"]
        #endif
    }()

    /// The installed library, PREFIX/LIBDIR/libswmalloc.so.1, when this executable is
    /// PREFIX/bin/swmalloc (LIBDIR one of `libraryDirectories`); nil in a build folder.
    static func installedLibrary() -> (prefix: String, path: String)? {
        let prefix = (executableDirectory as NSString).deletingLastPathComponent
        for dir in libraryDirectories {
            let path = "\(prefix)/\(dir)/libswmalloc.so.1"
            if FileManager.default.fileExists(atPath: path) { return (prefix, path) }
        }
        return nil
    }

    /// PREFIX when this executable is an installed one (`installedLibrary`).
    static func installedPrefix() -> String? { installedLibrary()?.prefix }

    /// libswmalloc.so to preload: $SWMALLOC_LIB, the one beside this executable (a build
    /// folder), or the installed one; nil when none exists.
    static func library() -> String? {
        if let env = ProcessInfo.processInfo.environment["SWMALLOC_LIB"], !env.isEmpty { return env }
        let beside = executableDirectory + "/libswmalloc.so"
        if FileManager.default.fileExists(atPath: beside) { return beside }
        return installedLibrary()?.path
    }

    /// The swm-workload program: beside this executable, or the installed one
    /// (PREFIX/libexec/swmalloc, whatever the library directory: with `install.sh
    /// --libdir` elsewhere it was not found, review R49); nil when neither exists.
    static func workload() -> String? {
        let beside = executableDirectory + "/swm-workload"
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        let prefix = (executableDirectory as NSString).deletingLastPathComponent
        let installed = prefix + "/libexec/swmalloc/swm-workload"
        return FileManager.default.isExecutableFile(atPath: installed) ? installed : nil
    }
}

/// Why the dynamic loader could not preload `path`, or nil when it can: a readable
/// regular file that starts as an ELF object and is not an executable, named by a path (a bare name is looked up
/// in the loader's library path) without the characters that split `LD_PRELOAD` (white
/// space and `:`). Before this check the loader printed "cannot be
/// preloaded" and the program ran on glibc, with the tool reporting success.
func preloadProblem(_ path: String) -> String? {
    if path.contains(where: { $0 == ":" || $0 == " " || $0 == "\t" || $0 == "\n" }) {
        return "the path has a ':' or white space, which split LD_PRELOAD"
    }
    if !path.contains("/") {
        return "a bare file name, which the loader looks up in its library path, not here: give a path (./\(path))"
    }
    var info = stat()
    guard stat(path, &info) == 0 else { return "not found" }
    guard info.st_mode & S_IFMT == S_IFREG else { return "not a regular file" }
    guard let handle = FileHandle(forReadingAtPath: path) else { return "cannot read it" }
    defer { try? handle.close() }
    let header = (try? handle.read(upToCount: 64)) ?? Data()
    guard header.count == 64, header.prefix(4) == Data([0x7f, 0x45, 0x4c, 0x46]) else {
        return "not a shared library (no ELF header)"
    }
    if header[header.startIndex + 16] == 1 && header[header.startIndex + 17] == 0 {   // ET_REL
        return "an object file (not linked), not a shared library"
    }
    if isExecutable(header, handle) { return "an executable, not a shared library" }
    return nil
}

/// Whether the 64-bit little-endian ELF file whose header is `header` is an executable: of
/// type EXEC, or a position-independent one (DYN with DF_1_PIE in its dynamic section),
/// which the loader refuses to preload ("cannot dynamically load position-independent
/// executable"). Other layouts are left to the loader.
private func isExecutable(_ header: Data, _ handle: FileHandle) -> Bool {
    func word(_ data: Data, _ at: Int, _ bytes: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<bytes { value |= UInt64(data[data.startIndex + at + i]) << (8 * UInt64(i)) }
        return value
    }
    guard header[header.startIndex + 4] == 2, header[header.startIndex + 5] == 1 else { return false }
    let type = word(header, 16, 2)
    if type == 2 { return true }
    guard type == 3 else { return false }
    let phoff = word(header, 32, 8), phentsize = Int(word(header, 54, 2)), phnum = Int(word(header, 56, 2))
    guard phentsize >= 56, phnum > 0, phnum < 256, (try? handle.seek(toOffset: phoff)) != nil,
          let table = try? handle.read(upToCount: phentsize * phnum), table.count == phentsize * phnum else { return false }
    for i in 0..<phnum where word(table, i * phentsize, 4) == 2 {   // PT_DYNAMIC
        let offset = word(table, i * phentsize + 8, 8), size = Int(word(table, i * phentsize + 32, 8))
        guard size > 0, size < 1 << 20, (try? handle.seek(toOffset: offset)) != nil,
              let dynamic = try? handle.read(upToCount: size), dynamic.count == size else { return false }
        var at = 0
        while at + 16 <= size {
            let tag = word(dynamic, at, 8)
            if tag == 0 { break }
            if tag == 0x6fff_fffb { return word(dynamic, at + 8, 8) & 0x0800_0000 != 0 }   // DT_FLAGS_1, DF_1_PIE
            at += 16
        }
    }
    return false
}

/// The program and its arguments that `run` and `stats` capture after their own options:
/// `--help`, `-h` and `--version` first are the tool's (the capture passes everything
/// through untouched, so they are looked at here); a leading `--` is dropped; anything
/// else that starts with `-` first is an option the subcommand does not know (review
/// R49: `run --stat -- ./prog` tried to run a program named `--stat` and exited 127).
func programArguments(_ command: [String], of subcommand: ParsableCommand.Type) throws -> [String] {
    if command.first == "--help" || command.first == "-h" { throw CleanExit.helpRequest(subcommand) }
    if command.first == "--version" { throw CleanExit.message(swmallocVersion) }
    if let first = command.first, first != "--", first.hasPrefix("-") {
        throw ValidationError("unknown option '\(first)' (a program whose name starts with '-' goes after --)")
    }
    let args = command.first == "--" ? Array(command.dropFirst()) : command
    guard !args.isEmpty else { throw ValidationError("no program given") }
    return args
}

/// `--library PATH`, shared by the subcommands that preload swmalloc.
struct LibraryOption: ParsableArguments {
    @Option(name: .long, help: "libswmalloc.so to preload (default: $SWMALLOC_LIB, the build's, or the installed one).")
    var library: String?

    /// The library to preload, checked to be one the loader can preload, as an absolute
    /// path: `LD_PRELOAD` is inherited by the program's children, and a relative path
    /// is resolved in each one's working directory (a child that changed directory ran on
    /// glibc, the loader's complaint its only trace).
    func path() throws -> String {
        guard let path = library ?? Locations.library() else {
            throw ValidationError("libswmalloc.so not found beside \(Locations.executableDirectory) or installed: pass --library or set SWMALLOC_LIB")
        }
        if let problem = preloadProblem(path) { throw ValidationError("\(path): \(problem)") }
        if path.hasPrefix("/") { return path }
        let absolute = (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
        return (absolute as NSString).standardizingPath
    }
}
