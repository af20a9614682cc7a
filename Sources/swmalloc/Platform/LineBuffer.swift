// Platform layer: formatting text without allocating, for error lines and reports.

/// A fixed 512-byte line of text on the stack; appends past the end are dropped.
/// Used where the allocator must print without calling malloc.
struct LineBuffer {
    private var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
         0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    /// Bytes written so far.
    private(set) var count = 0
    /// Capacity in bytes.
    static let capacity = 512

    init() {}

    /// Appends one byte.
    mutating func append(byte: UInt8) {
        guard count < LineBuffer.capacity else { return }
        withUnsafeMutableBytes(of: &storage) { $0[count] = byte }
        count += 1
    }

    /// Appends a static string.
    mutating func append(_ s: StaticString) {
        let p = s.utf8Start
        for i in 0..<s.utf8CodeUnitCount { append(byte: p[i]) }
    }

    /// Appends a NUL-terminated C string (at most `limit` bytes), escaping `"` and `\`
    /// when `json` is set.
    mutating func append(cString: UnsafePointer<CChar>?, limit: Int = 200, json: Bool = false) {
        guard let cString else { append("?"); return }
        var i = 0
        while i < limit {
            let c = UInt8(bitPattern: cString[i])
            if c == 0 { break }
            if json && (c == 34 || c == 92) { append(byte: 92) }
            append(byte: c < 32 ? 63 : c)
            i += 1
        }
    }

    /// Appends an unsigned decimal number.
    mutating func append(_ value: UInt) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        var n = value
        var len = 0
        withUnsafeMutableBytes(of: &digits) { d in
            repeat { d[len] = UInt8(48 + n % 10); n /= 10; len += 1 } while n > 0
        }
        withUnsafeBytes(of: &digits) { d in
            var i = len
            while i > 0 { i -= 1; append(byte: d[i]) }
        }
    }

    /// Appends a signed decimal number.
    mutating func append(_ value: Int) {
        if value < 0 { append(byte: 45); append(UInt(bitPattern: 0 &- value)) } else { append(UInt(value)) }
    }

    /// Appends `0x` and a hexadecimal number.
    mutating func appendHex(_ value: UInt) {
        append("0x")
        var started = false
        var shift = 60
        while shift >= 0 {
            let nibble = UInt8((value >> UInt(shift)) & 0xF)
            if nibble != 0 || started || shift == 0 {
                started = true
                append(byte: nibble < 10 ? 48 + nibble : 87 + nibble)
            }
            shift -= 4
        }
    }

    /// Writes the line to a file descriptor and empties it; false when a write failed.
    @discardableResult
    mutating func write(to fd: Int32) -> Bool {
        let n = count
        let ok = withUnsafeBytes(of: &storage) { OS.write(fd, $0.baseAddress!, n) }
        count = 0
        return ok
    }

    /// Writes the buffer out if fewer than `room` bytes are left, so the next append fits.
    mutating func flushIfFull(to fd: Int32, room: Int = 160) {
        if count > LineBuffer.capacity - room { write(to: fd) }
    }
}
