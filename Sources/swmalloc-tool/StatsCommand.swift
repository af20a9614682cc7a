// `swmalloc stats` — runs a program with swmalloc preloaded and prints its statistics
// and its VOS module and site report when it exits.
//
// The program inherits the write end of a pipe; SWMALLOC_OPTIONS makes swmalloc write
// its JSON report there at exit (stats_print=1,stats_json=1,stats_fd=N). Every process of
// the program that exits normally writes one line; each is decoded and printed.

import ArgumentParser
import Foundation
import SwmallocStats

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `swmalloc stats`.
struct StatsCommand: ParsableCommand {
    /// Name and summary for --help.
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Run a program with swmalloc preloaded and print its statistics and VOS report at exit.",
        usage: "swmalloc stats [--json] [--top <top>] [--library <library>] -- <program> [<arguments> ...]")

    /// The library to preload.
    @OptionGroup var library: LibraryOption

    /// Sites shown per process.
    @Option(name: .long, help: "Leak report: at most this many sites per process.")
    var top = 20

    /// Raw JSON instead of tables.
    @Flag(name: .long, help: "Print the raw JSON report lines instead of tables.")
    var json = false

    /// The program and its arguments (after an optional `--`).
    @Argument(parsing: .captureForPassthrough, help: "The program and its arguments.")
    var command: [String]

    /// Runs the program, prints each report, exits with the program's status.
    mutating func run() throws {
        // The program's arguments are passed through untouched, so --help and -h before
        // any program are looked at here, and --version, which --help lists.
        if command.first == "--help" || command.first == "-h" { throw CleanExit.helpRequest(Self.self) }
        if command.first == "--version" { throw CleanExit.message(swmallocVersion) }
        let args = command.first == "--" ? Array(command.dropFirst()) : command
        guard !args.isEmpty else { throw ValidationError("no program given") }
        let lib = try library.path()
        let (lines, status) = try runWithReport(args, library: lib)
        if lines.isEmpty {
            FileHandle.standardError.write(Data("swmalloc stats: no report came back (did the program exit normally?)\n".utf8))
        }
        var unreadable = 0
        for (index, line) in lines.enumerated() {
            if json {
                print(line)
                continue
            }
            // A line cut short (a process killed while it wrote its report) is counted and
            // skipped: the other processes' reports and the program's status still count.
            guard let report = try? JSONDecoder().decode(SwmallocReport.self, from: Data(line.utf8)) else {
                unreadable += 1
                continue
            }
            if lines.count > 1 { print("process \(index + 1) of \(lines.count)") }
            print(format(report.swmalloc, top: top))
        }
        if unreadable > 0 {
            FileHandle.standardError.write(Data(
                "swmalloc stats: \(unreadable) report line\(unreadable == 1 ? "" : "s") could not be read (a process killed while writing it?)\n".utf8))
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// Checks the options before the program runs.
    func validate() throws {
        if top < 0 { throw ValidationError("--top must be 0 or more") }
    }

}

/// Runs `args` with `library` preloaded and the report sent to a pipe; returns the report
/// lines (one per process that exited normally) and the exit status (128 + signal when a
/// signal killed it).
func runWithReport(_ args: [String], library: String) throws -> (lines: [String], status: Int32) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw ValidationError("pipe failed") }
    let (readEnd, writeEnd) = (fds[0], fds[1])
    var env = ProcessInfo.processInfo.environment
    let preload = env["LD_PRELOAD"].map { "\(library):\($0)" } ?? library
    env["LD_PRELOAD"] = preload
    // The pipe's inode too: the options reach the program's children, and one that has
    // a file of its own on that descriptor number must not write its report there.
    var pipeStat = stat()
    guard fstat(writeEnd, &pipeStat) == 0 else { throw ValidationError("fstat of the report pipe failed") }
    let options = "stats_print=1,stats_json=1,stats_fd=\(writeEnd),stats_fd_inode=\(pipeStat.st_ino)"
    env["SWMALLOC_OPTIONS"] = env["SWMALLOC_OPTIONS"].map { "\($0),\(options)" } ?? options

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addclose(&actions, readEnd)
    let argv = args.map { strdup($0) } + [nil]
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for p in argv + envp { free(p) } }
    noteNoPreload(args[0])
    // Ctrl-C and Ctrl-\ are held off until the tool ignores them (`InterruptShield`); the
    // program starts with the tool's own mask and dispositions.
    var shield = InterruptShield()
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var mask = shield.originalMask
    posix_spawnattr_setsigmask(&attributes, &mask)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
    var pid = pid_t()
    var rc = posix_spawnp(&pid, args[0], &actions, &attributes, argv, envp)
    if rc == ENOEXEC, let file = resolveProgram(args[0]) {
        // A script without a `#!` line: run by /bin/sh, as execvp (and `swmalloc run`) do.
        let shellArgv = [strdup("/bin/sh"), strdup(file)] + argv.dropFirst()
        rc = posix_spawn(&pid, "/bin/sh", &actions, &attributes, shellArgv, envp)
        free(shellArgv[0])
        free(shellArgv[1])
    }
    close(writeEnd)
    guard rc == 0 else {
        shield.restore()
        close(readEnd)
        throw cannotRun(args[0], rc)
    }
    shield.raise()
    // The reports until every process holding the pipe has ended. The program is reaped
    // as soon as it ends, and then Ctrl-C works again: a process it left running in the
    // background may hold the pipe for long.
    var output = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    var status: Int32 = 0
    var reaped = false
    while true {
        if !reaped && waitpid(pid, &status, WNOHANG) == pid {
            reaped = true
            shield.restore()
        }
        var ready = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
        let polled = poll(&ready, 1, reaped ? -1 : 100)
        if polled == 0 || (polled < 0 && errno == EINTR) { continue }
        let n = read(readEnd, &buffer, buffer.count)
        if n > 0 { output.append(contentsOf: buffer[0..<n]) }
        else if n == 0 || (errno != EINTR && errno != EAGAIN) { break }
    }
    close(readEnd)
    if !reaped {
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        shield.restore()
    }
    let signal = status & 0x7f
    let code = signal == 0 ? (status >> 8) & 0xff : 128 + signal
    let lines = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
    return (lines.filter { $0.hasPrefix("{\"swmalloc\"") }, code)
}

/// Ctrl-C and Ctrl-\ while `stats` waits for its program, as `system(3)` does: the
/// terminal sends them to the whole foreground group, and a program that handles them and
/// exits then writes its report to a tool that is still there to print it. A signal the
/// tool inherited as ignored (`nohup`, a background job of a script) stays as it was,
/// for the program too. SIGTERM and SIGHUP are left alone: forwarded, the program got a
/// signal sent to its whole group twice.
struct InterruptShield {
    /// The tool's signal mask before it blocked SIGINT and SIGQUIT (the program's).
    let originalMask: sigset_t
    /// The dispositions of SIGINT and SIGQUIT before `raise`.
    private var saved: [sigaction] = []

    /// Blocks SIGINT and SIGQUIT until `raise` or `restore`.
    init() {
        var block = sigset_t(), old = sigset_t()
        sigemptyset(&block)
        sigaddset(&block, SIGINT)
        sigaddset(&block, SIGQUIT)
        sigprocmask(SIG_BLOCK, &block, &old)
        originalMask = old
    }

    /// Ignores SIGINT and SIGQUIT (one ignored already stays so), then unblocks them: one
    /// that came in meanwhile is discarded.
    mutating func raise() {
        saved = []
        for signo in [SIGINT, SIGQUIT] {
            var ignore = sigaction(), old = sigaction()
            ignore.__sigaction_handler.sa_handler = SIG_IGN
            sigaction(signo, &ignore, &old)
            saved.append(old)
        }
        var mask = originalMask
        sigprocmask(SIG_SETMASK, &mask, nil)
    }

    /// Gives SIGINT and SIGQUIT back their dispositions and the original mask.
    func restore() {
        for (i, signo) in [SIGINT, SIGQUIT].enumerated() where i < saved.count {
            var old = saved[i]
            sigaction(signo, &old, nil)
        }
        var mask = originalMask
        sigprocmask(SIG_SETMASK, &mask, nil)
    }
}

/// The module table and the leak report of one process, as text.
func format(_ r: SwmallocReport.Body, top: Int) -> String {
    var out = "totals: \(r.allocated) bytes allocated, \(r.resident) resident, \(r.mallocs) mallocs, \(r.frees) frees\n"
    if r.modules.isEmpty {
        out += "no VOS allocations\n"
        return out
    }
    out += "VOS modules\n"
    out += row(["module", "live bytes", "live blocks", "allocs", "frees", "peak bytes", "quota", "refused"])
    for m in r.modules {
        out += row([moduleLabel(m.module), "\(m.liveBytes)", "\(m.liveBlocks)",
                    "\(m.allocs)", "\(m.frees)", "\(m.peakBytes)", m.quotaBytes == 0 ? "-" : "\(m.quotaBytes)",
                    "\(m.quotaRefused)"])
    }
    let leaks = r.sites.filter { $0.liveBlocks != 0 }
    out += "VOS leak report: \(leaks.count) site\(leaks.count == 1 ? "" : "s") with live blocks, largest first\n"
    out += row(["live bytes", "live blocks", "module", "site"], last: true)
    for s in leaks.prefix(top) {
        out += row(["\(s.liveBytes)", "\(s.liveBlocks)", moduleLabel(s.module), "\(s.file):\(s.line)"], last: true)
    }
    if leaks.count > top { out += "  … \(leaks.count - top) more\n" }
    return out
}

/// A module index as the tables show it: 65536 is every ID above 65535.
func moduleLabel(_ module: UInt) -> String { module == 65536 ? ">65535" : "\(module)" }

/// One table row: right-aligned columns of 12, the last left-aligned when `last`.
func row(_ cells: [String], last: Bool = false) -> String {
    var line = ""
    for (i, cell) in cells.enumerated() {
        if last && i == cells.count - 1 {
            line += "  " + cell
        } else {
            line += String(repeating: " ", count: max(0, 12 - cell.count)) + cell
        }
    }
    return line + "\n"
}
