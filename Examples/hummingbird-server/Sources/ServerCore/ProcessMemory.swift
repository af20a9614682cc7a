// The process's resident set size, from /proc/self/statm.
import Foundation

/// Reads the memory figures of this process from /proc.
enum ProcessMemory {
    /// Resident bytes (the second field of /proc/self/statm, in pages), or nil off Linux.
    static func residentBytes() -> Int? {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .ascii) else { return nil }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * sysconf(Int32(_SC_PAGESIZE))
    }
}
