// RealProgramTests.swift — real programs with swmalloc preloaded give the same output as
// without it: python3 (also Debian's non-PIE /usr/bin/python3), git, sqlite3, a
// multithreaded C++ STL program (compiled with g++ here), the Swift probe (Array/
// Dictionary/String from 4 threads), and g++ -fsyntax-only prints nothing. Each preloaded
// run sets SWMALLOC_OPTIONS=verbose=1, so its stderr proves that swmalloc was loaded.

import Foundation
import Testing

/// Runs of one program with and without the library, compared.
struct Comparison {
    /// The run without swmalloc.
    let plain: ChildResult
    /// The run with swmalloc preloaded.
    let preloaded: ChildResult

    /// Runs `program` twice: plain, then with `library` preloaded and `verbose=1`.
    init(_ program: String, _ arguments: [String] = [], library: Library, stdin: String? = nil,
         environment: [String: String] = [:], directory: String? = nil) throws {
        plain = try runChild(program, arguments, environment: environment, stdin: stdin, directory: directory)
        var loud = environment
        loud["SWMALLOC_OPTIONS"] = "verbose=1"
        preloaded = try runChild(program, arguments, environment: loud, preload: library, stdin: stdin,
                                 directory: directory)
    }

    /// The preloaded run's stderr without swmalloc's option lines.
    var preloadedStderr: String { withoutOptionLines(preloaded.stderr) }

    /// Expects both runs to exit 0 with the same stdout and stderr, and swmalloc to have
    /// been loaded in the preloaded one.
    func expectSame(_ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(plain.succeeded, "\(label) without swmalloc: \(plain)", sourceLocation: sourceLocation)
        #expect(preloaded.succeeded, "\(label) with swmalloc: \(preloaded)", sourceLocation: sourceLocation)
        #expect(preloaded.stderr.contains("swmalloc: options "), "\(label): swmalloc was not loaded",
                sourceLocation: sourceLocation)
        #expect(!plain.stdout.isEmpty, "\(label) printed nothing", sourceLocation: sourceLocation)
        #expect(plain.stdout == preloaded.stdout, "\(label): stdout differs", sourceLocation: sourceLocation)
        #expect(plain.stderr == preloadedStderr, "\(label): stderr differs", sourceLocation: sourceLocation)
    }
}

/// `text` without the lines swmalloc prints for `verbose=1`.
func withoutOptionLines(_ text: String) -> String {
    text.split(separator: "\n", omittingEmptySubsequences: false)
        .filter { !$0.hasPrefix("swmalloc: options ") }
        .joined(separator: "\n")
}

/// Real programs give the same output with swmalloc. Serialized: they are heavy.
@Suite(.serialized) struct RealProgramTests {
    /// python3 runs workload.py (dicts, lists, strings, json, threads) identically: the
    /// python3 first in PATH, and Debian's /usr/bin/python3 too where it is another one.
    /// Debian's is a non-PIE executable (ELF type EXEC), for which ld.so printed "direct
    /// reference to protected function `malloc' ... may break pointer equality" when the
    /// library exported malloc and free with protected visibility (a stderr difference).
    @Test(arguments: Library.allCases)
    func python(_ library: Library) throws {
        var pythons = [try requireTool("python3", debianPackage: "python3")]
        let debian = "/usr/bin/python3"
        /// The file a path names once symbolic links are followed.
        func resolved(_ path: String) -> String { URL(fileURLWithPath: path).resolvingSymlinksInPath().path }
        if access(debian, X_OK) == 0, resolved(debian) != resolved(pythons[0]) { pythons.append(debian) }
        for python in pythons {
            let run = try Comparison(python, ["\(Paths.programs)/workload.py"], library: library)
            run.expectSame("\(python) workload.py")
        }
    }

    /// `g++ -fsyntax-only` on a small C++ file (vector, string, map) succeeds with swmalloc
    /// preloaded and prints nothing on stderr but swmalloc's options lines (verbose=1, the
    /// proof it was loaded). g++ and cc1plus are non-PIE executables on Debian: ld.so
    /// warned "direct reference to protected function `free' in libswmalloc.so may break
    /// pointer equality" when the library exported malloc and free with protected
    /// visibility.
    @Test(arguments: Library.allCases)
    func gxxSyntaxOnlyIsSilent(_ library: Library) throws {
        let gxx = try requireTool("g++", debianPackage: "g++")
        let source = "\(Paths.scratch)/syntax-only-\(library).cpp"
        try """
            #include <map>
            #include <string>
            #include <vector>
            int main() {
                std::map<std::string, std::vector<int>> table;
                table["key"].push_back(1);
                return static_cast<int>(table.size()) - 1;
            }

            """.write(toFile: source, atomically: false, encoding: .utf8)
        let result = try runChild(gxx, ["-fsyntax-only", source], environment: ["SWMALLOC_OPTIONS": "verbose=1"],
                                  preload: library)
        #expect(result.succeeded, "g++ -fsyntax-only (\(library)): \(result)")
        #expect(result.stderr.contains("swmalloc: options "), "g++: swmalloc was not loaded: \(result)")
        #expect(withoutOptionLines(result.stderr).isEmpty, "g++ printed on stderr: \(result.stderr)")
    }

    /// sqlite3 runs workload.sql (table, transaction, indexes, aggregates) identically.
    @Test(arguments: Library.allCases)
    func sqlite(_ library: Library) throws {
        let sqlite = try requireTool("sqlite3", debianPackage: "sqlite3")
        let script = try String(contentsOfFile: "\(Paths.programs)/workload.sql", encoding: .utf8)
        let run = try Comparison(sqlite, [":memory:"], library: library, stdin: script)
        run.expectSame("sqlite3 workload.sql")
        #expect(run.preloaded.stdout.hasSuffix("ok\n"), "integrity_check: \(run.preloaded.stdout.suffix(200))")
    }

    /// A C++ program using vector, string, map, unordered_map, shared_ptr and std::thread
    /// prints the same digests.
    @Test(arguments: Library.allCases)
    func cxxSTL(_ library: Library) throws {
        let program = try compileProgram("stl_threads.cpp")
        let run = try Comparison(program, library: library)
        run.expectSame("stl_threads")
    }

    /// C++'s operator new and delete are swmalloc's, linked with -lswmalloc or preloaded
    /// (each of the 20 forms the C++ runtime defines), and keep the C++ rules: std::bad_alloc
    /// when memory is out, the new-handler first, NULL from the nothrow forms, alignment.
    @Test(arguments: Library.allCases)
    func cxxOperators(_ library: Library) throws {
        let linked = try runChild(try compileProgram("cxx_operators.cpp", linking: library))
        #expect(linked.succeeded && linked.stdout == "cxx operators ok\n", "linked: \(linked)")
        let preloaded = try runChild(try compileProgram("cxx_operators.cpp"), preload: library)
        #expect(preloaded.succeeded && preloaded.stdout == "cxx operators ok\n", "preloaded: \(preloaded)")
    }

    /// A program that replaces only some operators (the basic pair with a header before
    /// each block, as tracking allocators do; or only the aligned pair, with an arena) has
    /// every other form reach its replacements, as the C++ standard has them: swmalloc's
    /// array, sized and nothrow forms went to malloc and free instead, and the program's
    /// delete aborted or its leak count was wrong (review R46).
    @Test(arguments: Library.allCases, ["cxx_replaced", "cxx_replaced_aligned"])
    func cxxOperatorsReplacedByTheProgram(_ library: Library, program: String) throws {
        let expected = program == "cxx_replaced" ? "cxx replaced ok\n" : "cxx replaced aligned ok\n"
        let linked = try runChild(try compileProgram("\(program).cpp", linking: library))
        #expect(linked.succeeded && linked.stdout == expected, "linked: \(linked)")
        let preloaded = try runChild(try compileProgram("\(program).cpp"), preload: library)
        #expect(preloaded.succeeded && preloaded.stdout == expected, "preloaded: \(preloaded)")
    }

    /// The same program when the replaced operators are called before swmalloc's own
    /// constructor runs, by the constructor of a library the program links (preloaded,
    /// swmalloc's constructor runs after every linked library's; linked, when
    /// `-lswmalloc` comes first), and when the program carries a static libstdc++, so that
    /// no shared runtime is there to defer to: swmalloc's forms deferred to the runtime
    /// only once its constructor had found a replacement, and the library's blocks, or
    /// the static program's, reached the wrong delete and aborted (review R47).
    @Test(arguments: Library.allCases)
    func cxxOperatorsReplacedBeforeSwmallocStarts(_ library: Library) throws {
        let gxx = try requireTool("g++", debianPackage: "g++")
        let name = "cxx_replaced_early-\(library.rawValue)"
        let early = "\(Paths.scratch)/lib\(name).so"
        let built = try runChild(gxx, ["-O1", "-shared", "-fPIC", "\(Paths.programs)/cxx_replaced_early.cpp", "-o", early])
        #expect(built.succeeded, "building the library: \(built)")
        let source = ["-O1", "-std=c++17", "-I", Paths.include, "\(Paths.programs)/cxx_replaced.cpp"]
        let withEarly = ["-DEARLY_LIBRARY", "-L", Paths.scratch, "-l\(name)", "-Wl,-rpath,\(Paths.scratch)"]
        let swmalloc = ["-L", library.directory, "-lswmalloc", "-Wl,-rpath,\(library.directory)"]
        let builds: [(String, [String], Bool)] = [
            ("preloaded", withEarly, true),
            ("linked before the library", swmalloc + withEarly, false),
            ("linked, static libstdc++", ["-static-libstdc++"] + swmalloc, false),
        ]
        for (index, (mode, flags, preload)) in builds.enumerated() {
            let program = "\(Paths.scratch)/cxx_replaced_early-\(library.rawValue)-\(index)"
            let compiled = try runChild(gxx, source + flags + ["-o", program])
            #expect(compiled.succeeded, "building (\(mode)): \(compiled)")
            let run = try runChild(program, preload: preload ? library : nil)
            #expect(run.succeeded && run.stdout == "cxx replaced ok\n", "\(mode): \(run)")
        }
    }

    /// The nothrow forms need neither memory nor the loader on their slow paths (review
    /// R109): a library whose constructor joins a thread that calls nothrow `new` (with a
    /// new-handler, out of memory; and for an int) loads, preloaded and linked, and in a
    /// program that replaces `operator new` (whose nothrow forms defer to the C++
    /// runtime's); swmalloc looked the runtime's nothrow forms up there, under the loader's
    /// lock that `dlopen` held: a hang. And at real exhaustion (an address-space limit) a
    /// nothrow `new` calls the new-handler, which frees a reserve, before it returns NULL:
    /// the lookup's `dlopen` needed memory, failed, and NULL came back at once.
    @Test(arguments: Library.allCases)
    func cxxNothrowNeedsNoLoader(_ library: Library) throws {
        let gxx = try requireTool("g++", debianPackage: "g++")
        let module = "\(Paths.scratch)/libcxx_nothrow_loader-\(library.rawValue).so"
        let built = try runChild(gxx, ["-O1", "-g", "-shared", "-fPIC", "-pthread",
                                       "\(Paths.programs)/cxx_nothrow_loader_lib.cpp", "-o", module])
        #expect(built.succeeded, "building the library: \(built)")
        let replacing = "\(Paths.scratch)/cxx_nothrow_loader_replacing-\(library.rawValue)"
        let replacingBuilt = try runChild(gxx, ["-O1", "-g", "-fno-builtin", "-pthread", "-std=c++17", "-DREPLACES_NEW",
                                                "-I", Paths.include, "\(Paths.programs)/cxx_nothrow_loader.cpp",
                                                "-o", replacing, "-ldl"])
        #expect(replacingBuilt.succeeded, "building the replacing program: \(replacingBuilt)")
        let plain = try compileProgram("cxx_nothrow_loader.cpp")
        let runs: [(String, String, [String], Library?)] = [
            ("preloaded", plain, ["constructor", module], library),
            ("linked", try compileProgram("cxx_nothrow_loader.cpp", linking: library), ["constructor", module], nil),
            ("replacing operator new, preloaded", replacing, ["constructor", module], library),
            ("exhausted, preloaded", plain, ["exhausted"], library),
        ]
        for (mode, program, arguments, preload) in runs {
            let run = try runChild(program, arguments, preload: preload)
            #expect(run.succeeded && run.stdout == "cxx nothrow loader ok\n", "\(mode): \(run)")
        }
    }

    /// A C program that loads a C++ module with dlopen (as python3 loads a C++ extension)
    /// gets the C++ rules in that module when memory is out: the module's new-handler,
    /// std::bad_alloc it catches (plain and over-aligned new), NULL from the nothrow form.
    /// The C++ runtime came after swmalloc; before, swmalloc did not find it and aborted
    /// the program. With `staticRuntime` the module carries its own copy of libstdc++:
    /// in the C host the process has no shared one, and swmalloc looked only for the
    /// shared runtimes by name, and aborted (review R34); the runtime is now the one the
    /// calling module's references bind to. The same host built as C++ has the shared
    /// libstdc++, to which the module's references bind (its handler is the shared
    /// runtime's: R36 found it never called when swmalloc asked the module's copy). The
    /// module unloads with dlclose afterwards (R36: it stayed pinned).
    @Test(arguments: Library.allCases, [false, true])
    func cxxModuleLoadedLater(_ library: Library, staticRuntime: Bool) throws {
        let gxx = try requireTool("g++", debianPackage: "g++")
        let module = "\(Paths.scratch)/cxx_plugin-\(library.rawValue)\(staticRuntime ? "-static" : "").so"
        let runtime = staticRuntime ? ["-static-libstdc++", "-static-libgcc"] : []
        let built = try runChild(gxx, ["-O1", "-shared", "-fPIC", "-std=c++17"] + runtime
                                     + ["\(Paths.programs)/cxx_plugin.cpp", "-o", module])
        #expect(built.succeeded, "building the module: \(built)")
        // A C host with a static-runtime module: nothrow new returns NULL without the
        // handler (README), the throwing forms get it.
        let cHostArgs = staticRuntime ? [module, "no-nothrow-handler"] : [module]
        let run = try runChild(try compileProgram("cxx_plugin_host.c"), cHostArgs, preload: library)
        #expect(run.succeeded && run.stdout == "plugin caught bad_alloc\n", "C host: \(run)")
        let cxxHost = "\(Paths.scratch)/cxx_plugin_host_cxx-\(library.rawValue)\(staticRuntime ? "-static" : "")"
        let hostBuilt = try runChild(gxx, ["-x", "c++", "-O1", "-Wl,--no-as-needed",
                                           "\(Paths.programs)/cxx_plugin_host.c", "-o", cxxHost, "-ldl"])
        #expect(hostBuilt.succeeded, "building the C++ host: \(hostBuilt)")
        let cxxRun = try runChild(cxxHost, [module], preload: library)
        #expect(cxxRun.succeeded && cxxRun.stdout == "plugin caught bad_alloc\n", "C++ host: \(cxxRun)")
    }

    /// The Swift probe (Array, Dictionary, String from 4 threads) prints the same digests.
    @Test(arguments: Library.allCases)
    func swiftProbe(_ library: Library) throws {
        let probe = Library.debug.directory + "/swm-swift-probe"
        guard access(probe, X_OK) == 0 else {
            throw SupportError("\(probe) missing: run `swift build` first")
        }
        let run = try Comparison(probe, library: library)
        run.expectSame("swm-swift-probe")
        #expect(run.plain.stdout.split(separator: "\n").count == 4)
    }

    /// git builds a repository of a few commits, then `git log --stat`, `git fsck` and
    /// `git gc` (and log, fsck, count-objects after it) print the same with swmalloc.
    @Test(arguments: Library.allCases)
    func git(_ library: Library) throws {
        let git = try requireTool("git", debianPackage: "git")
        let plain = try gitTranscript(git, preload: nil)
        let preloaded = try gitTranscript(git, preload: library)
        #expect(plain.count == preloaded.count)
        for (a, b) in zip(plain, preloaded) {
            #expect(a == b, "git output differs with swmalloc")
        }
        #expect(plain.contains { $0.contains("commit 5") }, "\(plain.first ?? "")")
    }

    /// Builds a repository in a new directory with fixed names and dates (so hashes are
    /// the same every time) and returns each inspecting command's exit status and output.
    /// With `preload`, every git process runs with swmalloc and must show it was loaded.
    func gitTranscript(_ git: String, preload: Library?) throws -> [String] {
        let repo = try Paths.newDirectory("git")
        defer { try? FileManager.default.removeItem(atPath: repo) }
        let environment = [
            "HOME": repo, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
            "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
            "LC_ALL": "C", "SWMALLOC_OPTIONS": "verbose=1",
        ]
        var transcript: [String] = []
        /// Runs one git command in the repository; fails on a non-zero status.
        func run(_ arguments: [String]) throws -> String {
            let result = try runChild(git, ["-C", repo, "-c", "pack.threads=1"] + arguments,
                                      environment: environment, preload: preload)
            #expect(result.succeeded, "git \(arguments.joined(separator: " ")): \(result)")
            if preload != nil {
                #expect(result.stderr.contains("swmalloc: options "), "git \(arguments): swmalloc not loaded")
            }
            return "git \(arguments.joined(separator: " ")): \(result.exitCode ?? -1)\n\(result.stdout)\n\(withoutOptionLines(result.stderr))"
        }
        _ = try run(["init", "-q", "-b", "main"])
        for commit in 1...5 {
            for file in 0..<(commit * 3) {
                let text = (0..<(40 * file + commit)).map { "line \($0) of file \(file), commit \(commit)\n" }.joined()
                try text.write(toFile: "\(repo)/file\(file).txt", atomically: false, encoding: .utf8)
            }
            _ = try run(["add", "-A"])
            _ = try run(["commit", "-q", "-m", "commit \(commit)"])
        }
        for arguments in [["log", "--stat"], ["fsck", "--full"], ["gc"], ["count-objects", "-v"],
                          ["log", "--stat", "-p"], ["fsck", "--full"]] {
            transcript.append(try run(arguments))
        }
        return transcript
    }
}
