import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One run of one workload on one allocator.
struct Sample: Codable, Equatable {
    /// The workload's name.
    let workload: String
    /// The allocator's (or baseline's) name.
    let allocator: String
    /// Which repetition (1 … k).
    let repetition: Int
    /// The workload program's key=value arguments.
    let arguments: [String]
    /// The workload's timed region (`time_s` of its RESULT line), in seconds.
    let time: Double?
    /// Wall time of the whole child process, from spawn to exit, in seconds.
    let wallSeconds: Double
    /// User + system CPU time of the child (wait4's rusage), in seconds.
    let cpuSeconds: Double
    /// Peak resident set size of the child, in kB: the `peak_rss_kb` it reports (its
    /// VmHWM), else wait4's ru_maxrss.
    let peakRSSKB: Int
    /// wait4's ru_maxrss, in kB. Linux keeps the high-water mark of the address space that
    /// exec replaced, so this is at least the driver's own RSS at spawn time.
    let rusageMaxRSSKB: Int
    /// Every key=value of the RESULT line.
    let values: [String: String]
    /// Why the run failed (exit status, signal, missing RESULT line); nil when it succeeded.
    let error: String?
}

/// The parsed RESULT line of a workload run.
enum ResultLine {
    /// The key=value pairs of the first line of `output` that starts with `RESULT `, or nil.
    /// A token without `=` makes the line malformed (nil).
    static func parse(_ output: String) -> [String: String]? {
        for line in output.split(separator: "\n") where line.hasPrefix("RESULT ") {
            var values: [String: String] = [:]
            for token in line.dropFirst("RESULT ".count).split(separator: " ") {
                guard let eq = token.firstIndex(of: "="), eq != token.startIndex else { return nil }
                values[String(token[..<eq])] = String(token[token.index(after: eq)...])
            }
            return values
        }
        return nil
    }
}

/// What a child process did: its output, how it ended and what it used.
struct ChildOutcome {
    /// Everything it wrote on stdout.
    let stdout: String
    /// Everything it wrote on stderr.
    let stderr: String
    /// The exit code, or nil when a signal ended it.
    let exitCode: Int32?
    /// The signal that ended it, or nil.
    let signal: Int32?
    /// Spawn-to-exit wall time, in seconds.
    let wallSeconds: Double
    /// User + system CPU seconds (wait4 rusage).
    let cpuSeconds: Double
    /// Peak RSS in kB (wait4 rusage).
    let peakRSSKB: Int
    /// True when the time limit ran out and it was killed.
    var timedOut = false
}

/// The stop signal received (0: none), for `Runner.endIfStopped`.
nonisolated(unsafe) private var stopSignal: Int32 = 0
/// A pipe whose read end the running workload's poll loop watches; the stop handler
/// writes to it. (-1, -1) until `Runner.superviseRuns`.
nonisolated(unsafe) private var stopPipe: (read: Int32, write: Int32) = (-1, -1)

/// The stop signals' handler: notes the signal and wakes the poll loop. Async-signal-safe
/// (a store and a write).
private func noteStop(_ signo: Int32) {
    stopSignal = signo
    var byte: UInt8 = 1
    _ = write(stopPipe.write, &byte, 1)
}

/// Starts workload processes with posix_spawn and collects them with wait4.
struct Runner {
    /// The workload program.
    let workloadBinary: String
    /// Seconds a run may take before it is killed (nil: no limit). A run whose allocator
    /// deadlocks (snmalloc 0.7.5's fork child in `retention-spawn` waited for ever on a
    /// lock its parent's other thread held at the fork) would otherwise hold the whole
    /// benchmark.
    var timeLimit: Double? = nil

    /// Prepares the driver to supervise its runs. It becomes the subreaper of its
    /// descendants (`PR_SET_CHILD_SUBREAPER`): a workload's fork children that outlive
    /// it, in whatever session or process group, become the driver's children, so that
    /// `killOrphans` can end them (a hung fork child holding the output pipes would
    /// otherwise outlive its run). And it catches SIGINT, SIGTERM, SIGHUP and SIGQUIT
    /// where they are not ignored (nohup keeps its SIG_IGN): the run under way is ended
    /// with what it forked, then the signal is raised again with its default action
    /// (`endIfStopped`).
    static func superviseRuns() {
        // prctl is not in Swift's Glibc module: looked up by name. 36 is
        // PR_SET_CHILD_SUBREAPER (linux/prctl.h).
        typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "prctl") {
            _ = unsafeBitCast(symbol, to: Prctl.self)(36, 1, 0, 0, 0)
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC); _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
        stopPipe = (fds[0], fds[1])
        var caught = sigset_t()
        sigemptyset(&caught)
        // SIGQUIT too: the Swift runtime's backtracer catches it, prints a crash report
        // and goes on (or waits 30 s for a key on a terminal).
        for signo in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
            var old = sigaction()
            sigaction(signo, nil, &old)
            let handler = old.__sigaction_handler.sa_handler.map { unsafeBitCast($0, to: Int.self) } ?? 0
            if handler != 1 {   // not SIG_IGN
                var action = sigaction()
                action.__sigaction_handler.sa_handler = noteStop
                sigaction(signo, &action, nil)
                sigaddset(&caught, signo)
            }
        }
        // A parent may have started this process with them blocked (a test runner's
        // thread): a caught signal that stays blocked would never end the run.
        pthread_sigmask(SIG_UNBLOCK, &caught, nil)
    }

    /// After a stop signal (`superviseRuns`): raises it again with its default action.
    /// Called between runs and by a run that the signal ended.
    static func endIfStopped() {
        let signo = stopSignal
        guard signo != 0 else { return }
        fflush(nil)   // every stream: the report printed so far
        signal(signo, SIG_DFL)
        raise(signo)
    }

    /// Runs `workload` with `arguments` (key=value) and `preload` in LD_PRELOAD (none when
    /// nil, and any inherited LD_PRELOAD removed), and turns the outcome into a sample.
    func run(
        workload: String, allocator: String, repetition: Int, arguments: [String], preload: String?
    ) -> Sample {
        let outcome: ChildOutcome
        do {
            outcome = try spawn(arguments: [workloadBinary, workload] + arguments, preload: preload)
        } catch {
            return Sample(
                workload: workload, allocator: allocator, repetition: repetition, arguments: arguments, time: nil, wallSeconds: 0,
                cpuSeconds: 0, peakRSSKB: 0, rusageMaxRSSKB: 0, values: [:], error: "\(error)")
        }
        let values = ResultLine.parse(outcome.stdout)
        var failure: String?
        if outcome.timedOut {
            failure = "timed out after \(Int(timeLimit ?? 0)) s (killed, with the processes it forked)"
        } else if let signal = outcome.signal {
            failure = "killed by signal \(signal)"
        } else if outcome.exitCode != 0 {
            failure = "exit status \(outcome.exitCode ?? -1)"
        } else if values == nil {
            failure = "no RESULT line"
        } else if values?["time_s"].flatMap(Double.init) == nil {
            failure = "RESULT line without a numeric time_s"
        }
        if failure != nil {
            let lastLine = outcome.stderr.split(separator: "\n").last.map(String.init) ?? ""
            if !lastLine.isEmpty { failure! += ": " + lastLine }
        }
        return Sample(
            workload: workload, allocator: allocator, repetition: repetition, arguments: arguments,
            time: failure == nil ? values?["time_s"].flatMap(Double.init) : nil, wallSeconds: outcome.wallSeconds,
            cpuSeconds: outcome.cpuSeconds, peakRSSKB: values?["peak_rss_kb"].flatMap { Int($0) } ?? outcome.peakRSSKB,
            rusageMaxRSSKB: outcome.peakRSSKB, values: values ?? [:], error: failure)
    }

    /// An error starting a child process.
    struct SpawnError: Error, CustomStringConvertible {
        /// What failed.
        let description: String
    }

    /// Spawns `arguments[0]` with the environment of this process, LD_PRELOAD replaced.
    func spawn(arguments: [String], preload: String?) throws -> ChildOutcome {
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = preload
        let envStrings = environment.map { "\($0.key)=\($0.value)" }
        let outPipe = try makePipe(), errPipe = try makePipe()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, outPipe.write, 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe.write, 2)
        posix_spawn_file_actions_addclose(&actions, outPipe.read)
        posix_spawn_file_actions_addclose(&actions, errPipe.read)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = envStrings.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let start = Date()
        let rc = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
        close(outPipe.write)
        close(errPipe.write)
        defer {
            close(outPipe.read)
            close(errPipe.read)
        }
        guard rc == 0 else {
            throw SpawnError(description: "posix_spawn \(arguments[0]): \(String(cString: strerror(rc)))")
        }
        let deadline = timeLimit.map { DispatchTime.now() + $0 }
        let born = Runner.childProcesses().first { $0.pid == pid }?.started ?? 0
        var output = [CappedOutput(), CappedOutput()]
        let ending = drain([outPipe.read, errPipe.read], into: &output, until: deadline, child: pid)
        if ending != .exited { kill(pid, SIGKILL) }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        Runner.killOrphans(bornSince: born)
        if ending == .stopped { Runner.endIfStopped() }
        let timedOut = ending == .timedOut
        let wall = Date().timeIntervalSince(start)
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        let termSignal = status & 0x7f
        return ChildOutcome(
            stdout: output[0].text, stderr: output[1].text,
            exitCode: termSignal == 0 ? (status >> 8) & 0xff : nil, signal: termSignal == 0 ? nil : termSignal,
            wallSeconds: wall, cpuSeconds: cpu, peakRSSKB: Int(usage.ru_maxrss), timedOut: timedOut)
    }

    /// How `drain` ended.
    private enum Ending {
        case exited, timedOut, stopped
    }

    /// Reads `fds` into `output` until `child` has exited and the pipes are read (both at
    /// their end, or nothing more to read now, at most 1,000 reads after the exit: a fork
    /// child that outlives it may hold them open or go on writing), or `deadline` passes
    /// with `child` still running, or a stop signal came (`superviseRuns`). Both pipes are
    /// read in one loop, so neither can fill up and block the child; a child that closed
    /// both is waited for against the same deadline.
    private func drain(_ fds: [Int32], into output: inout [CappedOutput], until deadline: DispatchTime?, child: pid_t) -> Ending {
        var open = [true, true]
        var buffer = [UInt8](repeating: 0, count: 65536)
        var exited = false
        var readsAfterExit = 0
        while true {
            if stopSignal != 0 { return .stopped }
            if exited {
                readsAfterExit += 1
                if readsAfterExit > 1000 || !(open[0] || open[1]) { return .exited }
            } else if childExited(child) {
                exited = true
            } else if let deadline, DispatchTime.now() >= deadline {
                // Still running: what it wrote so far is kept.
                readReady(fds, &open, into: &output, &buffer)
                return childExited(child) ? .exited : .timedOut
            }
            var polls = fds.indices.map { pollfd(fd: open[$0] ? fds[$0] : -1, events: Int16(POLLIN), revents: 0) }
            polls.append(pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0))
            // 100 ms at most, to see the child's exit and the deadline; 0 once it exited.
            let ready = poll(&polls, nfds_t(polls.count), exited ? 0 : 100)
            if ready < 0 && errno != EINTR { return exited ? .exited : .timedOut }
            if ready <= 0 {
                if exited { return .exited }
                continue
            }
            for i in fds.indices where open[i] && polls[i].revents != 0 {
                readOnce(fds[i], &open[i], into: &output[i], &buffer)
            }
        }
    }

    /// Reads once from each open pipe that has data now.
    private func readReady(_ fds: [Int32], _ open: inout [Bool], into output: inout [CappedOutput], _ buffer: inout [UInt8]) {
        var polls = fds.indices.map { pollfd(fd: open[$0] ? fds[$0] : -1, events: Int16(POLLIN), revents: 0) }
        guard poll(&polls, nfds_t(polls.count), 0) > 0 else { return }
        for i in fds.indices where open[i] && polls[i].revents != 0 { readOnce(fds[i], &open[i], into: &output[i], &buffer) }
    }

    /// One read of `fd` into `output`; `open` becomes false at its end or on an error.
    private func readOnce(_ fd: Int32, _ open: inout Bool, into output: inout CappedOutput, _ buffer: inout [UInt8]) {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            output.append(buffer[0..<n])
        } else if n == 0 || errno != EINTR {
            open = false
        }
    }

    /// True once `child` has exited (left to be reaped: `WNOWAIT`).
    private func childExited(_ child: pid_t) -> Bool {
        var info = siginfo_t()
        return waitid(P_PID, id_t(child), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info._sifields._sigchld.si_pid == child
    }

    /// Kills and reaps this process's children started at `bornSince` (clock ticks since
    /// boot) or later: the workload's descendants that outlived it, handed to this process
    /// by `superviseRuns` (the workload is reaped already; the driver starts no other
    /// child). Processes started before the workload are left alone: children inherited
    /// across an exec, or descendants of a program that exec'ed the driver, handed over
    /// when their parent ended. Repeated until none is left, as each one killed hands its
    /// own children over.
    static func killOrphans(bornSince: UInt64) {
        for _ in 0..<1000 {
            let children = childProcesses().filter { $0.started >= bornSince }.map(\.pid)
            if children.isEmpty { return }
            for child in children { kill(child, SIGKILL) }
            for child in children {
                var status: Int32 = 0
                while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            }
        }
    }

    /// The processes whose parent is this one, with their start times (clock ticks since
    /// boot), from /proc/PID/stat.
    static func childProcesses() -> [(pid: pid_t, started: UInt64)] {
        let me = getpid()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { name -> (pid: pid_t, started: UInt64)? in
            guard let pid = pid_t(name), pid != me,
                  let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // After the command's closing parenthesis: the state (field 3), the parent's id
            // (4), … the start time (22).
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 19, pid_t(fields[1]) == me, let started = UInt64(fields[19]) else { return nil }
            return (pid, started)
        }
    }
}

/// What a workload wrote on one stream, bounded: the first 4 MiB and the last 1 MiB
/// (its RESULT line comes last). A workload that loops printing would otherwise make the
/// driver hold all of it, and parse it line by line (R56: `exec yes` for 2 s took the
/// driver to 19.9 GB and an abort).
struct CappedOutput {
    static let headBytes = 4 << 20, tailBytes = 1 << 20
    private var head = Data()
    private var tail = Data()
    private var dropped = 0

    /// Keeps `bytes` within the bounds.
    mutating func append(_ bytes: ArraySlice<UInt8>) {
        if head.count < CappedOutput.headBytes {
            head.append(contentsOf: bytes)
            return
        }
        tail.append(contentsOf: bytes)
        if tail.count > 2 * CappedOutput.tailBytes {
            let cut = tail.count - CappedOutput.tailBytes
            dropped += cut
            tail = tail.subdata(in: tail.startIndex + cut..<tail.endIndex)
        }
    }

    /// The text kept, with a line saying how much was left out between head and tail.
    var text: String {
        let gap = dropped > 0 ? "\n[… \(dropped) bytes left out …]\n" : ""
        return String(decoding: head, as: UTF8.self) + gap + String(decoding: tail, as: UTF8.self)
    }
}

/// Creates a pipe whose ends close on exec.
private func makePipe() throws -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else {
        throw Runner.SpawnError(description: "pipe: \(String(cString: strerror(errno)))")
    }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (fds[0], fds[1])
}
