// UnitTests.swift — unit tests of the core through its C API (Tests/programs/units.c):
// size classes, address-to-metadata lookup, free lists; option parsing; and the shape of
// the built library (dependencies, exported symbols).

import Foundation
import Testing

/// The cases of units.c, each run in its own child process.
let unitCases = [
    "class_table", "class_of", "usable_is_class_size", "lookup_tiers", "large_realloc_in_place", "huge_cache_grows",
    "freed_block_reused",
    "free_list_patterns", "small_blocks_spread", "class_cycle_keeps_pages", "remote_frees_batched",
    "huge_resident_as_touched", "huge_advice_per_block", "huge_cache_reuse_resident", "huge_calloc_locked", "noop",
]

/// Size classes, lookup and free lists, against the release and the debug library.
@Suite struct UnitTests {
    /// units.c knows exactly the cases this file runs.
    @Test func caseListMatches() throws {
        let units = try compileProgram("units.c", linking: .release)
        let listed = try runChild(units, ["list"])
        #expect(listed.succeeded)
        #expect(listed.stdout.split(separator: "\n").map(String.init) == unitCases)
    }

    /// One unit case: it exits 0 and its heap validates.
    @Test(arguments: unitCases, Library.allCases)
    func unit(_ name: String, _ library: Library) throws {
        let units = try compileProgram("units.c", linking: library)
        let result = try runChild(units, [name])
        #expect(result.succeeded, "units \(name) against the \(library) library: \(result)")
        #expect(result.stdout == "ok \(name)\n")
    }

    /// move_target.c, built with the shim's shim.c: after a failed `mremap` to a
    /// reserved target, the target is unmapped only when it is still the reservation; a
    /// mapping another thread placed where an older kernel had unmapped it stays (review
    /// R75: the whole reservation was unmapped).
    @Test func failedMoveLeavesOtherMappings() throws {
        let cc = try requireTool("cc", debianPackage: "gcc")
        let output = "\(Paths.scratch)/move_target"
        let built = try runChild(cc, ["-O1", "-g", "-pthread", "-I", Paths.root + "/Sources/CSwmShim/include",
                                      "\(Paths.programs)/move_target.c", Paths.root + "/Sources/CSwmShim/shim.c",
                                      "-o", output, "-ldl"])
        #expect(built.succeeded, "\(built)")
        let result = try runChild(output)
        #expect(result.succeeded && result.stdout == "move target ok\n", "\(result)")
    }

    /// The `thp=large` and `thp=never` policies hold for every huge block, from the huge
    /// cache too (units.c's `huge_advice_per_block`; the default policy runs in `unit`).
    @Test(arguments: ["thp=large", "thp=never"], Library.allCases)
    func hugeAdviceUnderPolicy(_ options: String, _ library: Library) throws {
        let units = try compileProgram("units.c", linking: library)
        let result = try runChild(units, ["huge_advice_per_block"], environment: ["SWMALLOC_OPTIONS": options])
        #expect(result.succeeded, "units huge_advice_per_block, \(options), \(library) library: \(result)")
    }
}

/// The default options line that `verbose=1` prints, with `verbose=1` itself.
let defaultOptionsLine =
    "swmalloc: options purge_delay_ms=250 background=1 thp=segments verbose=1 stats_print=0 stats_json=0 stats_signal=0 stats_fd=2"

/// `SWMALLOC_OPTIONS` parsing: values in force are printed with verbose=1; unknown keys
/// and bad values print a warning and are ignored.
@Suite struct OptionTests {
    /// Runs units.c's no-op case with `SWMALLOC_OPTIONS=options`; returns its result.
    func run(options: String) throws -> ChildResult {
        let units = try compileProgram("units.c", linking: .release)
        let result = try runChild(units, ["noop"], environment: ["SWMALLOC_OPTIONS": options])
        #expect(result.succeeded, "\(result)")
        return result
    }

    /// verbose=1 alone prints the defaults, once, and nothing else.
    @Test func verbosePrintsDefaults() throws {
        let result = try run(options: "verbose=1")
        #expect(result.swmallocLines == [defaultOptionsLine])
    }

    /// Every key set to a valid non-default value is printed as set.
    @Test func validValuesAreApplied() throws {
        let result = try run(options: "verbose=1,purge_delay_ms=40,background=0,thp=never,stats_json=1,stats_signal=12,stats_fd=5")
        #expect(result.swmallocLines == [
            "swmalloc: options purge_delay_ms=40 background=0 thp=never verbose=1 stats_print=0 stats_json=1 stats_signal=12 stats_fd=5",
        ])
        let other = try run(options: "thp=system,purge_delay_ms=0,verbose=true")
        #expect(other.swmallocLines == [
            "swmalloc: options purge_delay_ms=0 background=1 thp=system verbose=1 stats_print=0 stats_json=0 stats_signal=0 stats_fd=2",
        ])
    }

    /// White space around items, keys and values is ignored, and numbers take any
    /// number of leading zeros (an outside review: `verbose=1, purge_delay_ms=5` warned of
    /// an unknown option, `purge_delay_ms=0000000007` and `background=01` of bad values;
    /// another: a trailing newline made the last item a bad value).
    @Test func spacesAndLeadingZerosAreAccepted() throws {
        let result = try run(options: " verbose = 1 ,\tpurge_delay_ms=0000000007 , background=00 ,stats_fd=0005 ")
        #expect(result.swmallocLines == [
            "swmalloc: options purge_delay_ms=7 background=0 thp=segments verbose=1 stats_print=0 stats_json=0 stats_signal=0 stats_fd=5",
        ])
        let lines = try run(options: "purge_delay_ms=9\r\n,\nverbose=1\n")
        #expect(lines.swmallocLines == [
            "swmalloc: options purge_delay_ms=9 background=1 thp=segments verbose=1 stats_print=0 stats_json=0 stats_signal=0 stats_fd=2",
        ])
        let big = try run(options: "verbose=01,purge_delay_ms=99999999999999999999")
        #expect(big.swmallocLines.count == 2, "\(big.swmallocLines)")
        #expect(big.swmallocLines.contains(defaultOptionsLine), "\(big.swmallocLines)")
    }

    /// A set-user-ID program ignores `SWMALLOC_OPTIONS` (an unprivileged user could make a
    /// privileged program write reports to a descriptor or handle a signal; an outside
    /// review), as glibc ignores its tunables there; the same program without the bit
    /// reads them. Needs root, to give the copy another owner.
    @Test(.enabled(if: getuid() == 0, "needs root")) func setuidProgramIgnoresOptions() throws {
        let units = try compileProgram("units.c", linking: .release)
        let copy = "\(Paths.scratch)/units-setuid"
        try? FileManager.default.removeItem(atPath: copy)
        // Copied by cp: a file this process held open for writing would be inherited by
        // the children other tests spawn meanwhile, and exec would fail (ETXTBSY).
        #expect(try runChild("/bin/cp", [units, copy]).succeeded)
        #expect(chown(copy, 65534, 65534) == 0 && chmod(copy, 0o4755) == 0)
        let options = ["SWMALLOC_OPTIONS": "verbose=1"]
        let privileged = try runChild(copy, ["noop"], environment: options)
        #expect(privileged.succeeded && privileged.swmallocLines.isEmpty, "\(privileged)")
        let plain = try runChild(units, ["noop"], environment: options)
        #expect(plain.swmallocLines == [defaultOptionsLine], "\(plain)")
    }

    /// A program whose first allocation runs in its `.preinit_array`, before libc has set
    /// `environ`: the options are read all the same, preloaded and linked (before, they
    /// were lost for the whole run: review R94).
    @Test(arguments: Library.allCases)
    func optionsReadBeforeLibcSetsEnviron(_ library: Library) throws {
        let options = ["SWMALLOC_OPTIONS": "verbose=1,purge_delay_ms=40"]
        let line = "swmalloc: options purge_delay_ms=40 background=1 thp=segments verbose=1 stats_print=0 stats_json=0 stats_signal=0 stats_fd=2"
        let preloaded = try runChild(try compileProgram("preinit_options.c"), [], environment: options, preload: library)
        #expect(preloaded.succeeded && preloaded.stdout == "preinit ran\n", "\(library): \(preloaded)")
        #expect(preloaded.swmallocLines == [line], "\(library): \(preloaded)")
        let linked = try runChild(try compileProgram("preinit_options.c", linking: library), [], environment: options)
        #expect(linked.succeeded && linked.swmallocLines == [line], "\(library), linked: \(linked)")
    }

    /// `stats_fd_inode` lets reports go only to the pipe with that inode (stderr here is
    /// not it: no report); a later `stats_fd` clears it (an outside review: under
    /// `swmalloc stats`, `swmalloc run --stats --stats-fd 2` in the program wrote no report).
    @Test func statsFDInodeNamesThePipe() throws {
        let units = try compileProgram("units.c", linking: .release)
        let withInode = try runChild(units, ["noop"], environment: ["SWMALLOC_OPTIONS": "stats_print=1,stats_fd=2,stats_fd_inode=12345"])
        #expect(withInode.succeeded && !withInode.stderr.contains("swmalloc statistics"), "\(withInode)")
        let cleared = try runChild(units, ["noop"], environment: ["SWMALLOC_OPTIONS": "stats_print=1,stats_fd=2,stats_fd_inode=12345,stats_fd=2"])
        #expect(cleared.succeeded && cleared.stderr.contains("swmalloc statistics"), "\(cleared)")
        // An inode number takes the whole 64-bit range (review R109: 2^64 − 1 was refused
        // as a bad value); one more warns.
        let widest = try run(options: "verbose=1,stats_fd_inode=18446744073709551615")
        #expect(widest.swmallocLines == [defaultOptionsLine.replacingOccurrences(of: "stats_fd=2", with: "stats_fd=2 stats_fd_inode=18446744073709551615")],
                "\(widest.swmallocLines)")
        let over = try run(options: "verbose=1,stats_fd_inode=18446744073709551616")
        #expect(over.swmallocLines.count == 2 && over.swmallocLines.contains(defaultOptionsLine), "\(over.swmallocLines)")
    }

    /// An unknown key prints one warning naming it and changes nothing.
    @Test func unknownKeyWarns() throws {
        let result = try run(options: "verbose=1,bogus_key=3")
        let lines = result.swmallocLines
        #expect(lines.count == 2, "\(lines)")
        #expect(lines.first { $0.hasPrefix("swmalloc: warning: ") && $0.contains("bogus_key=3") } != nil, "\(lines)")
        #expect(lines.contains(defaultOptionsLine), "\(lines)")
    }

    /// A bad value (or an item without `=`, or without a key) prints one warning naming
    /// it and keeps the default; a bad value's warning says what the key takes.
    @Test(arguments: [
        "purge_delay_ms=abc", "purge_delay_ms=1000001", "purge_delay_ms=", "purge_delay_ms=-5", "background=2",
        "thp=always", "thp=", "stats_print=2", "stats_json=yes", "stats_signal=65",
        "stats_fd=0", "stats_fd=1024", "nokeyvalue", "=5",
    ])
    func badValueWarnsAndKeepsDefault(_ item: String) throws {
        let result = try run(options: "verbose=1,\(item)")
        let lines = result.swmallocLines
        #expect(lines.count == 2, "\(lines)")
        let warning = lines.first { $0.hasPrefix("swmalloc: warning: ") && $0.contains(item) }
        #expect(warning != nil, "\(lines)")
        if item.contains("=") && !item.hasPrefix("=") {
            #expect(warning?.hasSuffix(")") == true && warning?.contains(" (expected ") == true, "\(lines)")
        }
        #expect(lines.contains(defaultOptionsLine), "\(lines)")
    }

    /// An item longer than the 100 bytes a warning quotes is marked as cut (`...`).
    @Test func longItemWarningSaysItIsCut() throws {
        let key = String(repeating: "k", count: 150)
        let result = try run(options: "verbose=1,\(key)=1")
        let expected = "swmalloc: warning: unknown option in SWMALLOC_OPTIONS (ignored): \(key.prefix(100))..."
        #expect(result.swmallocLines.contains(expected), "\(result.swmallocLines)")
    }

    /// A bad value after a valid one for the same key is ignored, and the warning says so
    /// (it said "default kept" while the earlier value stayed in force); a control byte in
    /// the item is written as `?`, so the warning stays one line.
    @Test func badValueAfterValidOneKeepsIt() throws {
        let result = try run(options: "verbose=1,purge_delay_ms=5,purge_delay_ms=x,thp=never,thp=bogus")
        let lines = result.swmallocLines
        #expect(lines.filter { $0.hasPrefix("swmalloc: warning: bad value in SWMALLOC_OPTIONS (ignored): ") }.count == 2, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("swmalloc: options purge_delay_ms=5 background=1 thp=never ") }, "\(lines)")
        let newline = try run(options: "verbose=1,purge_delay_ms=1\nx")
        let stderr = newline.stderr.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        #expect(stderr.count == 2, "\(newline.stderr)")
        #expect(newline.swmallocLines.contains(
                    "swmalloc: warning: bad value in SWMALLOC_OPTIONS (ignored): purge_delay_ms=1?x (expected milliseconds, 0 to 1000000)"),
                "\(newline.stderr)")
    }
}

/// The built libswmalloc.so depends on libc only and exports the C API only.
@Suite struct LibraryShapeTests {
    /// `ldd` lists libc, the dynamic loader and the vDSO, nothing else.
    @Test(arguments: Library.allCases)
    func dependsOnLibcOnly(_ library: Library) throws {
        let result = try runChild("ldd", [try library.existingPath()])
        #expect(result.succeeded, "\(result)")
        let lines = result.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.contains { $0.hasPrefix("libc.so.6") })
        for line in lines {
            let allowed = line.hasPrefix("libc.so.") || line.hasPrefix("linux-vdso.so.") || line.contains("ld-linux")
            #expect(allowed, "unexpected dependency: \(line)")
        }
    }

    /// `nm -D --defined-only` shows the allocation API and no Swift symbol.
    @Test(arguments: Library.allCases)
    func exportsCAPIOnly(_ library: Library) throws {
        let result = try runChild("nm", ["-D", "--defined-only", try library.existingPath()])
        #expect(result.succeeded, "\(result)")
        let names = Set(result.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) })
        for name in ["malloc", "free", "calloc", "realloc", "posix_memalign", "aligned_alloc",
                     "malloc_usable_size", "free_sized", "swm_malloc", "swm_validate",
                     "_Znwm", "_ZnamSt11align_val_t", "_ZdlPvm", "_ZdaPvSt11align_val_tRKSt9nothrow_t"] {
            #expect(names.contains(name), "\(name) not exported")
        }
        let swift = names.filter { $0.hasPrefix("swift_") || $0.hasPrefix("$s") || $0.hasPrefix("$e") || $0.hasPrefix("_$s") }
        #expect(swift.isEmpty, "Swift symbols exported: \(swift.sorted().prefix(20))")
    }
}
