// Extensions layer: options from the environment.

import CSwmShim

/// Transparent-huge-page policy (`thp=`).
enum THPPolicy: UInt8 {
    /// Small-object segments opt out of THP (no bloat from partly used huge pages); huge
    /// blocks get no advice: the system's setting decides, as for glibc's, jemalloc's and
    /// mimalloc's mappings. The default (before, `large`: an outside review found a Python
    /// program that writes the first part of 4 MiB buffers at 3.0 GB resident against
    /// 0.26 GB without the advice, glibc 1.9 GB).
    case segments = 3
    /// Small-object segments opt out; huge blocks of 2 MiB and more from malloc opt in, the
    /// whole 2 MiB pages of the request (one fault per 2 MiB), calloc's opt out.
    case large = 0
    /// Every swmalloc mapping opts out (MADV_NOHUGEPAGE).
    case never = 1
    /// No advice: the system's setting decides.
    case system = 2
}

/// Options, parsed once from `SWMALLOC_OPTIONS` (`key=value,key=value`) without allocating.
/// An unknown key or a malformed value prints one warning line and is ignored: the key
/// keeps its default, or the value an earlier item gave it (of a key given twice, the last
/// valid value counts, as in jemalloc's `MALLOC_CONF`).
///
/// | key              | values                 | default | meaning |
/// |------------------|------------------------|---------|---------|
/// | purge_delay_ms   | 0 … 1000000            | 250     | free memory goes back to the OS once it stayed unused this long (0: at once) |
/// | background       | 0, 1, false, true      | 1       | a background thread purges after the delay even when every thread sleeps |
/// | thp              | segments, large, never, system | segments | transparent huge pages (see `THPPolicy`) |
/// | verbose          | 0, 1, false, true      | 0       | print the options in force at start-up |
/// | stats_print      | 0, 1, false, true      | 0       | print the statistics report at exit |
/// | stats_signal     | 0, a catchable signal  | 0       | print the report when this signal arrives (not 9, 19, 32, 33, nor a fault: 4, 5, 7, 8, 11, 31) |
/// | stats_json       | 0, 1, false, true      | 0       | reports in JSON instead of text |
/// | stats_fd         | 1, 2 … 1023            | 2       | file descriptor reports go to (a duplicate of it once the program closed it) |
/// | stats_fd_inode   | 0, an inode number     | 0       | reports go to `stats_fd` only if it is a pipe with this inode number (set by `swmalloc stats`; a later `stats_fd` clears it) |
struct Options {
    var purgeDelayMs: Int
    var background: Bool
    var thp: THPPolicy
    var verbose: Bool
    var statsPrint: Bool
    var statsJSON: Bool
    var statsSignal: Int32
    var statsFD: Int32
    /// When nonzero: the inode number of the pipe `stats_fd` must be (see
    /// `swmshim_report_fd_keep`).
    var statsFDInode: UInt
    /// True when `SWMALLOC_OPTIONS` set `purge_delay_ms` (then `mallopt` leaves it alone).
    var purgeDelayGiven: Bool

    /// The options in force.
    @inline(__always) static var current: UnsafeMutablePointer<Options> { Globals.options }

    /// The purge delay in nanoseconds.
    @inline(__always) var purgeDelayNanoseconds: UInt64 { UInt64(purgeDelayMs) &* 1_000_000 }

    /// The defaults.
    static let defaults = Options(
        purgeDelayMs: 250, background: true, thp: .segments, verbose: false, statsPrint: false, statsJSON: false,
        statsSignal: 0, statsFD: 2, statsFDInode: 0, purgeDelayGiven: false)

    /// Sets the defaults, then applies `SWMALLOC_OPTIONS`.
    static func load() {
        current.pointee = defaults
        let name: StaticString = "SWMALLOC_OPTIONS"
        if let text = swmshim_getenv(UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)) { current.pointee.parse(text) }
        if current.pointee.verbose { current.pointee.print() }
    }

    /// Applies each `key=value` of a comma-separated list.
    mutating func parse(_ text: UnsafePointer<CChar>) {
        var start = 0
        while true {
            var end = start
            while text[end] != 0 && text[end] != 44 /* , */ { end += 1 }
            let item = Token(text + start, end - start).trimmed
            if item.count > 0 { apply(item) }
            if text[end] == 0 { return }
            start = end + 1
        }
    }

    /// Applies one `key=value` item.
    private mutating func apply(_ item: Token) {
        guard let eq = item.firstIndex(of: 61 /* = */) else {
            return Options.warn("option without '=' in SWMALLOC_OPTIONS (ignored): ", item)
        }
        let key = item.prefix(eq).trimmed
        let value = item.suffix(from: eq + 1).trimmed
        if key.count == 0 { return Options.warn("option without a name in SWMALLOC_OPTIONS (ignored): ", item) }
        if key == "purge_delay_ms" {
            if let n = value.integer, n <= 1_000_000 {
                purgeDelayMs = n
                purgeDelayGiven = true
            } else {
                Options.badValue(item, "milliseconds, 0 to 1000000")
            }
        } else if key == "background" {
            if let b = value.flag { background = b } else { Options.badValue(item, "0, 1, false or true") }
        } else if key == "thp" {
            if value == "segments" { thp = .segments }
            else if value == "large" { thp = .large }
            else if value == "never" { thp = .never }
            else if value == "system" { thp = .system }
            else { Options.badValue(item, "segments, large, never or system") }
        } else if key == "verbose" {
            if let b = value.flag { verbose = b } else { Options.badValue(item, "0, 1, false or true") }
        } else if key == "stats_print" {
            if let b = value.flag { statsPrint = b } else { Options.badValue(item, "0, 1, false or true") }
        } else if key == "stats_json" {
            if let b = value.flag { statsJSON = b } else { Options.badValue(item, "0, 1, false or true") }
        } else if key == "stats_signal" {
            if let n = value.integer, n == 0 || (n <= 64 && swmshim_signal_usable(Int32(n)) != 0) {
                statsSignal = Int32(n)
            } else {
                Options.badValue(item, "0, or a signal a handler can catch that is not a fault")
            }
        } else if key == "stats_fd" {
            // A descriptor given again (`swmalloc run --stats-fd 2` under `swmalloc stats`)
            // is not the pipe an earlier `stats_fd_inode` named.
            if let n = value.integer, n >= 1, n < 1024 {
                statsFD = Int32(n)
                statsFDInode = 0
            } else {
                Options.badValue(item, "a file descriptor, 1 to 1023")
            }
        } else if key == "stats_fd_inode" {
            if let n = value.word { statsFDInode = n } else { Options.badValue(item, "an inode number") }
        } else {
            Options.warn("unknown option in SWMALLOC_OPTIONS (ignored): ", item)
        }
    }

    /// Warns about a value the key does not take, saying which values it takes.
    private static func badValue(_ item: Token, _ expected: StaticString) {
        warn("bad value in SWMALLOC_OPTIONS (ignored): ", item, expected: expected)
    }

    /// Prints `message`, the first 100 bytes of `item` (`...` after them when it is
    /// longer) and, when given, the values `expected`, as one line: a control byte (a
    /// newline in the value, say) is written as `?`.
    private static func warn(_ message: StaticString, _ item: Token, expected: StaticString? = nil) {
        var line = LineBuffer()
        line.append("swmalloc: warning: ")
        line.append(message)
        for i in 0..<min(item.count, 100) {
            let byte = UInt8(bitPattern: item.base[i])
            line.append(byte: byte < 32 || byte == 127 ? 63 /* ? */ : byte)
        }
        if item.count > 100 { line.append("...") }
        if let expected {
            line.append(" (expected ")
            line.append(expected)
            line.append(")")
        }
        line.append("\n")
        line.write(to: 2)
    }

    /// Prints the options in force (`verbose=1`).
    func print() {
        var line = LineBuffer()
        line.append("swmalloc: options purge_delay_ms=")
        line.append(purgeDelayMs)
        line.append(" background=")
        line.append(background ? 1 : 0)
        line.append(" thp=")
        switch thp {
        case .segments: line.append("segments")
        case .large: line.append("large")
        case .never: line.append("never")
        case .system: line.append("system")
        }
        line.append(" verbose=")
        line.append(verbose ? 1 : 0)
        line.append(" stats_print=")
        line.append(statsPrint ? 1 : 0)
        line.append(" stats_json=")
        line.append(statsJSON ? 1 : 0)
        line.append(" stats_signal=")
        line.append(Int(statsSignal))
        line.append(" stats_fd=")
        line.append(Int(statsFD))
        if statsFDInode != 0 {
            line.append(" stats_fd_inode=")
            line.append(statsFDInode)
        }
        line.append("\n")
        line.write(to: 2)
    }
}

/// A slice of a C string, compared and converted without allocating.
struct Token {
    let base: UnsafePointer<CChar>
    let count: Int

    init(_ base: UnsafePointer<CChar>, _ count: Int) { self.base = base; self.count = count }

    func firstIndex(of byte: CChar) -> Int? {
        for i in 0..<count where base[i] == byte { return i }
        return nil
    }

    func prefix(_ n: Int) -> Token { Token(base, n) }
    func suffix(from n: Int) -> Token { Token(base + n, count - n) }

    /// Equal to a static string, byte for byte.
    static func == (lhs: Token, rhs: StaticString) -> Bool {
        if lhs.count != rhs.utf8CodeUnitCount { return false }
        let r = rhs.utf8Start
        for i in 0..<lhs.count where UInt8(bitPattern: lhs.base[i]) != r[i] { return false }
        return true
    }

    /// The token without the white space at its ends: spaces, tabs, line ends
    /// (`"verbose=1, thp=never"` is two items, as a user writing it means, and a value
    /// read from a file with its newline, `$(cat opts)` aside, is still the value).
    var trimmed: Token {
        var first = 0, end = count
        while first < end && Token.isSpace(base[first]) { first += 1 }
        while end > first && Token.isSpace(base[end - 1]) { end -= 1 }
        return Token(base + first, end - first)
    }

    /// ASCII white space: space, tab, newline, vertical tab, form feed, carriage return.
    private static func isSpace(_ c: CChar) -> Bool { c == 32 || (c >= 9 && c <= 13) }

    /// A non-negative decimal number (leading zeros allowed, however many), or nil: nil
    /// also for a value above 10^15, which no option but an inode number takes.
    var integer: Int? {
        guard let n = word, n <= 1_000_000_000_000_000 else { return nil }
        return Int(n)
    }

    /// The token as a decimal number of the whole word's range (0 … 2^64 − 1: an inode
    /// number), or nil (not digits, or above the range).
    var word: UInt? {
        if count == 0 { return nil }
        var n: UInt = 0
        for i in 0..<count {
            let d = Int(base[i]) - 48
            if d < 0 || d > 9 { return nil }
            let (tens, over) = n.multipliedReportingOverflow(by: 10)
            let (sum, carry) = tens.addingReportingOverflow(UInt(d))
            if over || carry { return nil }
            n = sum
        }
        return n
    }

    /// 1 or true, 0 or false (a number: `01` is 1), or nil.
    var flag: Bool? {
        if self == "true" { return true }
        if self == "false" { return false }
        if let n = integer, n <= 1 { return n == 1 }
        return nil
    }
}
