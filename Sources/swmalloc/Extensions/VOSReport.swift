// Extensions layer (VOS): the module table and the leak report, text and JSON, written
// to a file descriptor without calling malloc (appended to the statistics report).

/// The VOS sections of the statistics report.
enum VOSReport {
    /// Text: the module table, then live blocks by site, largest first (nothing when VOS
    /// was never used).
    /// JSON: `,"modules":[…],"sites":[…]` (members of the report's top object), or a whole
    /// object `{"modules":[…],"sites":[…]}` when `standalone`.
    static func write(to fd: Int32, json: Bool, standalone: Bool = false) {
        var line = LineBuffer()
        if json {
            line.append(standalone ? "{\"modules\":[" : ",\"modules\":[")
            var first = true
            VOSStats.forEachModule { s in
                line.flushIfFull(to: fd, room: 300)
                if !first { line.append(",") }
                first = false
                line.append("{\"id\":"); line.append(s.module)
                line.append(",\"live_bytes\":"); line.append(s.liveBytes)
                line.append(",\"live_blocks\":"); line.append(s.liveBlocks)
                line.append(",\"allocs\":"); line.append(s.allocs)
                line.append(",\"frees\":"); line.append(s.frees)
                line.append(",\"peak_bytes\":"); line.append(s.peakBytes)
                line.append(",\"quota_bytes\":"); line.append(s.quotaBytes)
                line.append(",\"quota_live_bytes\":"); line.append(s.quotaLiveBytes)
                line.append(",\"quota_refused\":"); line.append(s.quotaRefused)
                line.append("}")
            }
            line.append("],\"sites\":[")
            first = true
            VOSStats.forEachSite { s in
                // The escaped name alone may take 400 bytes (200, each escaped): room for
                // it, then for the numbers (a 512-byte line dropped the rest: an outside
                // review's 200-backslash name made the report invalid JSON).
                line.flushIfFull(to: fd, room: 2 * VOSSites.nameMax + 16)
                if !first { line.append(",") }
                first = false
                line.append("{\"file\":\""); line.append(cString: s.file, json: true)
                line.flushIfFull(to: fd, room: 200)
                line.append("\",\"line\":"); line.append(s.line)
                line.append(",\"module\":"); line.append(s.module)
                line.append(",\"live_bytes\":"); line.append(s.liveBytes)
                line.append(",\"live_blocks\":"); line.append(s.liveBlocks)
                line.append(",\"allocs\":"); line.append(s.allocs)
                line.append(",\"frees\":"); line.append(s.frees)
                line.append("}")
            }
            line.append(standalone ? "]}\n" : "]")
            line.write(to: fd)
            return
        }
        // A process that never used VOS gets no VOS section in the text report.
        if VOSModules.globalIfMapped == nil { return }
        line.append("VOS modules (module 65536 = every ID above 65535)\n")
        // The quota last: one of up to 20 digits would push every column after it. "quota
        // live": the live bytes counted against the quota (blocks allocated while it was
        // set), which its refusals are decided on.
        line.append("   module   live bytes  live blocks       allocs        frees   peak bytes   quota live  refused        quota\n")
        line.write(to: fd)
        VOSStats.forEachModule { s in
            line.flushIfFull(to: fd)
            Stats.pad(&line, s.module, 9); Stats.padSigned(&line, s.liveBytes, 13); Stats.pad(&line, s.liveBlocks, 13)
            Stats.pad(&line, s.allocs, 13); Stats.pad(&line, s.frees, 13); Stats.pad(&line, s.peakBytes, 13)
            Stats.pad(&line, s.quotaLiveBytes, 13); Stats.pad(&line, s.quotaRefused, 9); Stats.pad(&line, s.quotaBytes, 13)
            line.append("\n")
        }
        // The rows left room for one more row, not for the two headings as well.
        line.write(to: fd)
        line.append("VOS leak report: live blocks by site, largest first\n")
        line.append("   live bytes  live blocks   module  site\n")
        line.write(to: fd)
        VOSStats.forEachSite { s in
            if s.liveBlocks == 0 { return }
            line.flushIfFull(to: fd, room: 300)
            Stats.padSigned(&line, s.liveBytes, 13); Stats.pad(&line, s.liveBlocks, 13); Stats.pad(&line, s.module, 9)
            line.append("  "); line.append(cString: s.file); line.append(":"); line.append(s.line)
            line.append("\n")
        }
        line.write(to: fd)
    }
}
