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
    /// True when the time limit ran out and its process group was killed.
    var timedOut = false
}

/// The process group of the workload running now (0: none), for `killRunningGroup`.
nonisolated(unsafe) private var runningGroup: pid_t = 0

/// On SIGINT, SIGQUIT, SIGTERM or SIGHUP: kills the running workload's process group
/// (each runs in a group of its own, which the terminal's signals do not reach), then
/// ends the driver as the signal would. Async-signal-safe: kill, signal and raise.
private func killRunningGroup(_ signo: Int32) {
    if runningGroup > 0 { kill(-runningGroup, SIGKILL) }
    signal(signo, SIG_DFL)
    raise(signo)
}

/// Starts workload processes with posix_spawn and collects them with wait4.
struct Runner {
    /// The workload program.
    let workloadBinary: String
    /// Seconds a run may take before its process group is killed (nil: no limit). A run
    /// whose allocator deadlocks (snmalloc 0.7.5's fork child in `retention-spawn` waited
    /// for ever on a lock its parent's other thread held at the fork) would otherwise
    /// hold the whole benchmark.
    var timeLimit: Double? = nil

    /// Makes the driver's stop signals kill the running workload's process group first.
    static func installStopHandlers() {
        for signo in [SIGINT, SIGQUIT, SIGTERM, SIGHUP] { signal(signo, killRunningGroup) }
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
            failure = "timed out after \(Int(timeLimit ?? 0)) s (its process group was killed)"
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
        // A process group of its own, so that a time limit kills its fork children too
        // (one that hangs keeps the output pipes open).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = envStrings.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let start = Date()
        let rc = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        close(outPipe.write)
        close(errPipe.write)
        guard rc == 0 else {
            close(outPipe.read)
            close(errPipe.read)
            throw SpawnError(description: "posix_spawn \(arguments[0]): \(String(cString: strerror(rc)))")
        }
        runningGroup = pid
        defer { runningGroup = 0 }
        let watchdog = Watchdog()
        if let timeLimit {
            let group = pid
            Thread {
                if watchdog.done.wait(timeout: .now() + timeLimit) == .timedOut {
                    watchdog.fired = true
                    kill(-group, SIGKILL)
                }
            }.start()
        }
        // Drain stderr on another thread so neither pipe can fill up and block the child.
        let errorData = ReadBox()
        let finished = DispatchSemaphore(value: 0)
        let errorReader = Thread {
            errorData.data = readAll(errPipe.read)
            finished.signal()
        }
        errorReader.start()
        let outData = readAll(outPipe.read)
        finished.wait()
        close(outPipe.read)
        close(errPipe.read)
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        watchdog.done.signal()
        let wall = Date().timeIntervalSince(start)
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        let termSignal = status & 0x7f
        return ChildOutcome(
            stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errorData.data, as: UTF8.self),
            exitCode: termSignal == 0 ? (status >> 8) & 0xff : nil, signal: termSignal == 0 ? nil : termSignal,
            wallSeconds: wall, cpuSeconds: cpu, peakRSSKB: Int(usage.ru_maxrss), timedOut: watchdog.fired)
    }
}

/// A run's time limit: `done` is signalled when the child was collected; `fired` says
/// that the limit ran out first and the group was killed.
private final class Watchdog: @unchecked Sendable {
    let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var firedValue = false
    var fired: Bool {
        get { lock.withLock { firedValue } }
        set { lock.withLock { firedValue = newValue } }
    }
}

/// Bytes read by another thread.
private final class ReadBox: @unchecked Sendable {
    /// The bytes, complete once the reading thread has finished.
    var data = Data()
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

/// Reads a file descriptor to its end.
private func readAll(_ fd: Int32) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            data.append(contentsOf: buffer[0..<n])
        } else if n == 0 || errno != EINTR {
            return data
        }
    }
}
