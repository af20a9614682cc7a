// GlibcAPITests.swift — glibc's malloc extensions (mallinfo2, mallinfo, malloc_trim,
// malloc_stats, malloc_info, mallopt) and its internal names (__libc_malloc …) answered by
// swmalloc, preloaded and linked (Tests/programs/glibc_api.c). Before, they reached
// glibc's idle allocator: zeros, nothing trimmed, and __libc_malloc's blocks were glibc's.

import Testing

/// The cases of glibc_api.c.
let glibcAPICases = [
    "mallinfo2_fields", "mallinfo_saturates", "malloc_trim_returns", "keepcost_after_trim", "malloc_stats_text", "malloc_stats_follows_stderr",
    "malloc_info_xml",
    "mallopt_answers", "mallopt_keeps_user_delay", "libc_aliases",
]

/// Options each case runs with (the defaults unless named here).
let glibcAPIOptions = ["mallopt_keeps_user_delay": "purge_delay_ms=5000"]

/// How the program gets swmalloc.
enum Attachment: String, CaseIterable, Sendable, CustomStringConvertible {
    case preloadedRelease, preloadedDebug, linked
    var description: String { rawValue }
}

@Suite struct GlibcAPITests {
    /// glibc_api.c knows exactly the cases this file runs.
    @Test func caseListMatches() throws {
        try expectCaseList("glibc_api.c", glibcAPICases)
    }

    /// One case, preloaded (release and debug library) or linked with -lswmalloc: exits 0
    /// and says ok; malloc_stats_text's report is swmalloc's, on stderr.
    @Test(arguments: glibcAPICases, Attachment.allCases)
    func glibcExtension(_ name: String, _ attachment: Attachment) throws {
        let program: String
        let preload: Library?
        switch attachment {
        case .preloadedRelease: (program, preload) = (try compileProgram("glibc_api.c"), .release)
        case .preloadedDebug: (program, preload) = (try compileProgram("glibc_api.c"), .debug)
        case .linked: (program, preload) = (try compileProgram("glibc_api.c", linking: .release), nil)
        }
        var environment: [String: String] = [:]
        if let options = glibcAPIOptions[name] { environment["SWMALLOC_OPTIONS"] = options }
        let result = try runChild(program, [name], environment: environment, preload: preload, timeLimit: 120)
        #expect(result.succeeded, "\(name) (\(attachment)): \(result)")
        #expect(result.stdout == "ok \(name)\n", "\(result)")
        if name == "malloc_stats_text" {
            #expect(result.stderr.hasPrefix("swmalloc statistics\n"), "\(result.stderr)")
            #expect(result.stderr.contains("  mapped     "), "\(result.stderr)")
        }
    }
}
