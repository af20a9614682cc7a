// `swmalloc run` — runs a program on swmalloc, its options given as flags (like
// jemalloc.sh): sets LD_PRELOAD and SWMALLOC_OPTIONS and replaces itself with the program.

import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `swmalloc run`.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a program with swmalloc as its malloc (LD_PRELOAD), options from flags.",
        usage: "swmalloc run [<options>] -- <program> [<arguments> ...]",
        discussion: """
            The flags become SWMALLOC_OPTIONS (appended to any already in the environment), the \
            library is put first in LD_PRELOAD, and the program replaces this process: its exit \
            status and signals are its own. See the README's options table for each option.
            """)

    @OptionGroup var library: LibraryOption

    @Option(name: .long, help: "Freed memory goes back to the OS once unused this long (0: at once).")
    var purgeDelayMs: Int?

    @Option(name: .long, help: "The background purger: 1 or true on (default), 0 or false off.")
    var background: String?

    @Option(name: .long, help: "Transparent huge pages: segments (default), large, never or system.")
    var thp: String?

    @Flag(name: .long, help: "Print the options in force at start-up.")
    var verbose = false

    @Flag(name: .long, help: "Print the statistics report when the program exits.")
    var stats = false

    @Flag(name: .long, help: "Reports in JSON.")
    var statsJson = false

    @Option(name: .long, help: "Print the report when this signal arrives.")
    var statsSignal: Int?

    @Option(name: .long, help: "File descriptor the reports go to (default 2).")
    var statsFd: Int?

    @Option(name: .customLong("option"), help: "Any other option as key=value (repeatable).")
    var options: [String] = []

    @Argument(parsing: .captureForPassthrough, help: "The program and its arguments.")
    var command: [String]

    /// The SWMALLOC_OPTIONS items the flags ask for, in the README's order.
    var optionItems: [String] {
        var items: [String] = []
        if let purgeDelayMs { items.append("purge_delay_ms=\(purgeDelayMs)") }
        if let background { items.append("background=\(background)") }
        if let thp { items.append("thp=\(thp)") }
        if verbose { items.append("verbose=1") }
        if stats { items.append("stats_print=1") }
        if statsJson { items.append("stats_json=1") }
        if let statsSignal { items.append("stats_signal=\(statsSignal)") }
        if let statsFd { items.append("stats_fd=\(statsFd)") }
        return items + options
    }

    func validate() throws {
        _ = try programArguments(command, of: Self.self)   // errors with this subcommand's usage
        for item in options where !item.contains("=") || item.contains(",") {
            throw ValidationError("--option wants one key=value, not '\(item)'")
        }
        // Checked here: a value with a comma would smuggle more options in.
        if let thp, !["segments", "large", "never", "system"].contains(thp) {
            throw ValidationError("--thp wants segments, large, never or system, not '\(thp)'")
        }
        // The numeric flags too, as the README's options table bounds them (the library
        // would warn and keep its default, and the program run anyway).
        if let purgeDelayMs, !(0...1_000_000).contains(purgeDelayMs) {
            throw ValidationError("--purge-delay-ms wants 0 … 1000000, not \(purgeDelayMs)")
        }
        if let background, !["0", "1", "false", "true"].contains(background) {
            throw ValidationError("--background wants 0, 1, false or true, not '\(background)'")
        }
        if let statsSignal, statsSignal != 0 && !catchableRequestSignal(statsSignal) {
            throw ValidationError("--stats-signal wants 0 or a signal a handler can catch that is not a fault, not \(statsSignal)")
        }
        if let statsFd, !(1...1023).contains(statsFd) {
            throw ValidationError("--stats-fd wants 1 … 1023, not \(statsFd)")
        }
    }

    /// Sets the environment and executes the program (returns only when that failed).
    func run() throws {
        let args = try programArguments(command, of: Self.self)
        let program = args[0]
        let lib = try library.path()
        let environment = ProcessInfo.processInfo.environment
        setenv("LD_PRELOAD", environment["LD_PRELOAD"].map { "\(lib):\($0)" } ?? lib, 1)
        let items = optionItems
        if !items.isEmpty {
            let joined = items.joined(separator: ",")
            setenv("SWMALLOC_OPTIONS", environment["SWMALLOC_OPTIONS"].map { "\($0),\(joined)" } ?? joined, 1)
        }
        let argv = args.map { strdup($0) } + [nil]
        noteNoPreload(program)
        execvp(program, argv)
        throw cannotRun(program, errno)
    }
}

/// True for a signal `stats_signal` takes: one a handler can catch (not SIGKILL, SIGSTOP,
/// nor glibc's own 32 and 33) that is not a fault (SIGILL, SIGTRAP, SIGBUS, SIGFPE,
/// SIGSEGV, SIGSYS), as the library checks it.
func catchableRequestSignal(_ signo: Int) -> Bool {
    let refused: Set<Int> = [Int(SIGKILL), Int(SIGSTOP), Int(SIGILL), Int(SIGTRAP), Int(SIGBUS), Int(SIGFPE),
                             Int(SIGSEGV), Int(SIGSYS)]
    guard (1...64).contains(signo), !refused.contains(signo) else { return false }
    return signo < 32 || signo >= 34
}

/// The file `program` names: itself when it has a '/', else the first executable file
/// of that name in `PATH` (as `execvp` looks it up); nil when there is none.
func resolveProgram(_ program: String) -> String? {
    if program.contains("/") { return program }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":", omittingEmptySubsequences: false) {
        let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + program
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

/// Says on stderr that `program` will not run on swmalloc when the loader cannot preload
/// it: a program that runs in secure-execution mode (set-user-ID or set-group-ID to
/// someone else, or with file capabilities run by a user other than root: the loader
/// ignores LD_PRELOAD, swmalloc ignores SWMALLOC_OPTIONS, so it writes no report; one
/// linked with the library runs on it, without options), or a static one (no loader at
/// all), which runs on its own malloc.
func noteNoPreload(_ program: String) {
    guard let file = resolveProgram(program) else { return }
    var info = stat()
    guard stat(file, &info) == 0 else { return }
    let setuid = info.st_mode & S_ISUID != 0 && info.st_uid != geteuid()
    let setgid = info.st_mode & S_ISGID != 0 && info.st_gid != getegid()
    // Capabilities raised at exec make it secure for any user but root (the real user,
    // as the kernel tests), who has them all.
    let capabilities = getuid() != 0 && hasFileCapabilities(file)
    if setuid || setgid || capabilities {
        let what = setuid ? "is set-user-ID" : setgid ? "is set-group-ID" : "has file capabilities"
        FileHandle.standardError.write(Data(
            "swmalloc: note: \(file) \(what): it runs in secure-execution mode, where the loader ignores LD_PRELOAD and swmalloc ignores SWMALLOC_OPTIONS, so it runs on the C library's malloc (on swmalloc without options if it is linked with it) and writes no report\n".utf8))
    } else if isStaticELF(file) {
        FileHandle.standardError.write(Data(
            "swmalloc: note: \(file) is statically linked: LD_PRELOAD has no effect on it, so it runs on its own malloc\n".utf8))
    }
}

/// True when `file` carries file capabilities that put its exec in secure-execution mode
/// (the `security.capability` extended attribute): the kernel sets it when the file's
/// effective flag is set or its permitted set raises the process's. Inheritable
/// capabilities alone, without the effective flag, grant nothing to a process without
/// them (review R84: `cap_net_raw+i` got the note and ran on swmalloc; review R87:
/// `cap_net_raw+ei` got none and ran without it). The attribute is `vfs_cap_data`: a
/// 32-bit word of magic and flags (bit 0: effective), then two pairs of 32-bit
/// (permitted, inheritable) words, little-endian. `getxattr` through `dlsym`: the Glibc
/// module does not import `<sys/xattr.h>`.
func hasFileCapabilities(_ file: String) -> Bool {
    typealias GetXattr = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "getxattr") else { return false }
    var value = [UInt8](repeating: 0, count: 24)
    let length = value.withUnsafeMutableBytes {
        unsafeBitCast(symbol, to: GetXattr.self)(file, "security.capability", $0.baseAddress, $0.count)
    }
    guard length >= 12 else { return false }
    func word(_ offset: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(value[offset + $1]) << (8 * UInt32($1)) } }
    return word(0) & 1 != 0 || word(4) != 0 || (length >= 20 && word(12) != 0)
}

/// True when `file` is a 64-bit little-endian ELF executable without a program
/// interpreter (`PT_INTERP`): statically linked, so no loader reads LD_PRELOAD.
func isStaticELF(_ file: String) -> Bool {
    var info = stat()
    // A regular file only: opening a FIFO would wait for a writer.
    guard stat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG,
          let handle = FileHandle(forReadingAtPath: file) else { return false }
    defer { try? handle.close() }
    guard let header = try? handle.read(upToCount: 64), header.count == 64,
          header.starts(with: [0x7f, 0x45, 0x4c, 0x46, 2, 1]) else { return false }
    func word<T: FixedWidthInteger>(_ data: Data, _ offset: Int, _: T.Type) -> T {
        data[data.startIndex + offset ..< data.startIndex + offset + MemoryLayout<T>.size]
            .reversed().reduce(0) { $0 << 8 | T($1) }
    }
    let type = word(header, 16, UInt16.self)
    let phoff = word(header, 32, UInt64.self), phentsize = Int(word(header, 54, UInt16.self))
    let phnum = Int(word(header, 56, UInt16.self))
    guard type == 2 || type == 3, phentsize >= 4, phnum > 0, phnum < 4096 else { return false }
    guard (try? handle.seek(toOffset: phoff)) != nil,
          let table = try? handle.read(upToCount: phentsize * phnum), table.count == phentsize * phnum else { return false }
    for i in 0..<phnum where word(table, i * phentsize, UInt32.self) == 3 { return false }   // PT_INTERP
    return true
}

/// A program that could not be started: its message on stderr, and the shell's exit
/// status for it (127 not found, 126 found but not runnable), not the usage error's 64.
func cannotRun(_ program: String, _ error: Int32) -> ExitCode {
    FileHandle.standardError.write(Data("swmalloc: cannot run \(program): \(String(cString: strerror(error)))\n".utf8))
    return ExitCode(error == ENOENT ? 127 : 126)
}
