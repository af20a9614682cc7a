// `swmalloc stats` — runs a program with swmalloc preloaded and prints its statistics
// and its VOS module and site report when it exits.
//
// The program inherits the write end of a pipe; SWMALLOC_OPTIONS makes swmalloc write
// its JSON report there at exit (stats_print=1,stats_json=1,stats_fd=N). Every process of
// the program that exits normally writes one line; each is decoded and printed.

import ArgumentParser
import Foundation
import SwmallocStats
import Synchronization

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
        let args = try programArguments(command, of: Self.self)
        let lib = try library.path()
        let (lines, status, stoppedBy) = try runWithReport(args, library: lib)
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
        // Stopped by a signal, or the program ended by Ctrl-C or Ctrl-\: the tool ends by
        // that signal too, after the reports, so that a shell loop over it stops as it
        // would over the program.
        // A stop signal that came while the reports were printed ends the tool once they are.
        let late = StopSignals.take()
        if stoppedBy != 0 || late != 0 { endBySignal(stoppedBy != 0 ? stoppedBy : late) }
        if status != 0 { throw ExitCode(status) }
    }

    /// Checks the options before the program runs.
    func validate() throws {
        _ = try programArguments(command, of: Self.self)   // errors with this subcommand's usage
        if top < 0 { throw ValidationError("--top must be 0 or more") }
    }

}

/// Runs `args` with `library` preloaded and the report sent to a pipe; returns the report
/// lines (one per process that exited normally), the exit status (128 + signal when a
/// signal killed it), and the signal the tool should end by after printing them (0: none;
/// see `StopSignals`).
func runWithReport(_ args: [String], library: String) throws -> (lines: [String], status: Int32, stoppedBy: Int32) {
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
    // An inherited ignored SIGCHLD would reap the program behind the tool's back (its
    // status lost); the program gets it at its default, as with system(3).
    signal(SIGCHLD, SIG_DFL)
    // The stop signals are held off until the tool catches them (`StopSignals`); the
    // program starts with the tool's own mask and dispositions.
    let stops = StopSignals()
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var mask = stops.originalMask
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
        stops.unblock()
        close(readEnd)
        throw cannotRun(args[0], rc)
    }
    stops.catchAndUnblock()
    // The reports until every process holding the pipe has ended and the program is
    // reaped (as soon as it ends); or until a stop signal says to stop waiting
    // (`StopSignals`): then what is already in the pipe is read, and the tool ends by it.
    var output = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    var status: Int32 = 0
    var reaped = false, ended = false
    var stoppedBy: Int32 = 0
    var pendingStop: Int32 = 0, graceEnd: UInt64 = 0
    /// Reads what comes into the pipe within `wait` milliseconds (0: what it holds now):
    /// .data, .nothing, or .end (every writer has closed it).
    enum PipeRead { case data, nothing, end }
    func readPipe(waiting wait: Int32) -> PipeRead {
        var ready = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
        if poll(&ready, 1, wait) <= 0 { return .nothing }
        let n = read(readEnd, &buffer, buffer.count)
        if n > 0 { output.append(contentsOf: buffer[0..<n]); return .data }
        return n < 0 && (errno == EINTR || errno == EAGAIN) ? .nothing : .end
    }
    while !(ended && reaped) {
        // The signal first, then the reap: one caught while the program ran is the
        // program's, even when it ended since.
        var received = StopSignals.take()
        let ranUntilNow = !reaped
        if !reaped {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { reaped = true }
            else if r < 0 && errno == ECHILD { reaped = true; status = 1 << 8 }   // cannot happen with SIGCHLD at default
            // One caught between the take and this reap came before the tool saw the end.
            if reaped { let late = StopSignals.take(); if late != 0 { received = late } }
        }
        if received != 0 {
            if !ranUntilNow { stoppedBy = received }
            else if (received == SIGTERM || received == SIGHUP) && pendingStop == 0 {
                // Sent to the whole group, the program got it too and may be shutting down:
                // its report is worth a short wait. Sent to the tool alone, it keeps running.
                pendingStop = received
                graceEnd = DispatchTime.now().uptimeNanoseconds + StopSignals.grace
            }   // Ctrl-C or Ctrl-\ while the program runs: the program's
        }
        if stoppedBy == 0 && pendingStop != 0 && (reaped || DispatchTime.now().uptimeNanoseconds >= graceEnd) {
            stoppedBy = pendingStop
        }
        if stoppedBy != 0 {
            while !ended && readPipe(waiting: 0) == .data {}   // what is in the pipe already
            break
        }
        if ended {
            usleep(100_000)   // the pipe closed before the program ended (it closed its descriptors)
        } else if readPipe(waiting: 100) == .end {
            ended = true
        }
    }
    close(readEnd)
    let signal = status & 0x7f
    let code = signal == 0 ? (status >> 8) & 0xff : 128 + signal
    // A program ended by Ctrl-C or Ctrl-\ ends the tool by it too.
    if stoppedBy == 0 && (signal == SIGINT || signal == SIGQUIT) { stoppedBy = signal }
    let lines = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
    return (lines.filter { $0.hasPrefix("{\"swmalloc\"") }, code, stoppedBy)
}

/// The last stop signal the tool caught (0: none), for `StopSignals.take`.
private let caughtStop = Atomic<Int32>(0)

/// SIGINT, SIGQUIT, SIGTERM and SIGHUP while `stats` waits: caught (a flag the wait loop
/// reads), so that the reports already in hand are printed before the tool ends. Ctrl-C
/// and Ctrl-\ reach the whole foreground group: while the program runs they are the
/// program's to handle (its report still comes, as with system(3)); once it has ended
/// (a process it left in the background may hold the pipe for long) they end the wait.
/// SIGTERM or SIGHUP ends the wait once the program has ended, or after `grace`: the
/// program got the signal too when it went to the whole group (`kill %1`, `timeout`, a
/// service manager), and is not sent it again (it got it twice when the tool forwarded
/// it); sent to the tool alone it leaves the program running, as with time(1). A signal
/// the tool inherited as ignored (`nohup`, a script's background job) stays ignored, for
/// the program too.
struct StopSignals {
    /// The signals.
    static let all = [SIGINT, SIGQUIT, SIGTERM, SIGHUP]
    /// How long SIGTERM or SIGHUP waits for the program (nanoseconds).
    static let grace: UInt64 = 3_000_000_000
    /// The tool's signal mask before it blocked the stop signals (the program's).
    let originalMask: sigset_t

    /// Blocks the stop signals until `catchAndUnblock` or `unblock`.
    init() {
        var block = sigset_t(), old = sigset_t()
        sigemptyset(&block)
        for signo in StopSignals.all { sigaddset(&block, signo) }
        sigprocmask(SIG_BLOCK, &block, &old)
        originalMask = old
    }

    /// Catches each stop signal not inherited as ignored, then unblocks them.
    func catchAndUnblock() {
        for signo in StopSignals.all {
            var old = sigaction()
            sigaction(signo, nil, &old)
            if unsafeBitCast(old.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { continue }
            var catcher = sigaction()
            catcher.__sigaction_handler.sa_handler = { caught in caughtStop.store(caught, ordering: .relaxed) }
            // SA_RESTART: the reports' writes go on (an interrupted write made stdio drop
            // its buffer); poll and usleep return at once all the same.
            catcher.sa_flags = SA_RESTART
            sigaction(signo, &catcher, nil)
        }
        unblock()
    }

    /// Gives the tool its original signal mask back.
    func unblock() {
        var mask = originalMask
        sigprocmask(SIG_SETMASK, &mask, nil)
    }

    /// The stop signal caught since the last call (0: none).
    static func take() -> Int32 { caughtStop.exchange(0, ordering: .relaxed) }
}

/// Ends the tool by `signo` at its default action (the Swift runtime's own SIGQUIT
/// handler, which prints a crash backtrace, included), as if it had not caught it.
func endBySignal(_ signo: Int32) -> Never {
    fflush(nil)   // the reports printed so far
    signal(signo, SIG_DFL)
    var mask = sigset_t()
    sigemptyset(&mask)
    sigaddset(&mask, signo)
    sigprocmask(SIG_UNBLOCK, &mask, nil)
    raise(signo)
    exit(128 + signo)
}

/// The module table and the leak report of one process, as text.
func format(_ r: SwmallocReport.Body, top: Int) -> String {
    var out = "totals: \(r.allocated) bytes allocated, \(r.resident) resident, \(r.mallocs) mallocs, \(r.frees) frees\n"
    if r.modules.isEmpty {
        out += "no VOS allocations\n"
        return out
    }
    out += "VOS modules\n"
    // The quota last, as in the library's report: one of up to 20 digits would push every
    // column after it.
    out += row(["module", "live bytes", "live blocks", "allocs", "frees", "peak bytes", "quota live", "refused", "quota"])
    for m in r.modules {
        out += row([moduleLabel(m.module), "\(m.liveBytes)", "\(m.liveBlocks)",
                    "\(m.allocs)", "\(m.frees)", "\(m.peakBytes)", "\(m.quotaLiveBytes)", "\(m.quotaRefused)",
                    m.quotaBytes == 0 ? "-" : "\(m.quotaBytes)"])
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

/// One table row: right-aligned columns of 12, at least one space before each cell (a
/// wider number keeps it), the last left-aligned when `last`.
func row(_ cells: [String], last: Bool = false) -> String {
    var line = ""
    for (i, cell) in cells.enumerated() {
        if last && i == cells.count - 1 {
            line += "  " + cell
        } else {
            line += String(repeating: " ", count: max(1, 12 - cell.count)) + cell
        }
    }
    return line + "\n"
}
