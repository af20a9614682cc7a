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

    /// Appends a NUL-terminated C string (at most `limit` bytes); control characters
    /// become `?`. With `json`, `"` and `\` are escaped and every byte that is not part of
    /// a well-formed UTF-8 sequence becomes `?` too: JSON text must be UTF-8, and a file
    /// name may be in any encoding.
    mutating func append(cString: UnsafePointer<CChar>?, limit: Int = 200, json: Bool = false) {
        guard let cString else { append("?"); return }
        let bytes = UnsafeRawPointer(cString).assumingMemoryBound(to: UInt8.self)
        var i = 0
        while i < limit {
            let c = bytes[i]
            if c == 0 { break }
            if json && c >= 0x80 {
                let n = LineBuffer.utf8SequenceLength(bytes + i, limit: limit - i)
                if n == 0 {
                    append(byte: 63)
                    i += 1
                } else {
                    for k in 0..<n { append(byte: bytes[i + k]) }
                    i += n
                }
                continue
            }
            if json && (c == 34 || c == 92) { append(byte: 92) }
            append(byte: c < 32 ? 63 : c)
            i += 1
        }
    }

    /// Length of the well-formed UTF-8 sequence of 2 to 4 bytes at `p` (RFC 3629: no
    /// overlong forms, no surrogates, nothing above U+10FFFF) within `limit` bytes, or 0.
    private static func utf8SequenceLength(_ p: UnsafePointer<UInt8>, limit: Int) -> Int {
        let lead = p[0]
        var n = 0
        var low: UInt8 = 0x80   // bounds of the second byte
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: n = 2
        case 0xE0: n = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: n = 3
        case 0xED: n = 3; high = 0x9F
        case 0xF0: n = 4; low = 0x90
        case 0xF1...0xF3: n = 4
        case 0xF4: n = 4; high = 0x8F
        default: return 0
        }
        if n > limit || p[1] < low || p[1] > high { return 0 }
        for k in 2..<n where p[k] < 0x80 || p[k] > 0xBF { return 0 }
        return n
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
