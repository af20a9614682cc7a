// MisuseTests.swift — invalid frees, double frees (also of a block first freed by another
// thread), interior and foreign pointers passed to free / realloc / malloc_usable_size
// (Tests/programs/misuse.c): the process aborts with SIGABRT and one stderr line starting
// with "swmalloc:" that names the pointer.

import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The cases of misuse.c.
let misuseCases = [
    "double_free_small", "double_free_large", "double_free_huge", "double_free_cross_thread_small",
    "double_free_cross_thread_large", "double_free_cross_thread_huge", "free_stack", "free_static",
    "free_mmap", "interior_free_small", "interior_free_large", "interior_free_huge",
    "realloc_interior", "realloc_foreign", "realloc_freed", "usable_size_interior",
    "usable_size_foreign",
]

/// The `0x…` hexadecimal numbers in a line, as written.
func hexNumbers(in line: String) -> [String] {
    line.split { !$0.isHexDigit && $0 != "x" }.map(String.init).filter { $0.hasPrefix("0x") && $0.count > 2 }
}

/// Misuse is reported, never absorbed.
@Suite struct MisuseTests {
    /// misuse.c knows exactly the cases this file runs.
    @Test func caseListMatches() throws {
        let program = try compileProgram("misuse.c")
        let listed = try runChild(program, ["list"])
        #expect(listed.succeeded)
        #expect(listed.stdout.split(separator: "\n").map(String.init) == misuseCases)
    }

    /// One misuse aborts the process with one line naming the pointer.
    @Test(arguments: misuseCases, Library.allCases)
    func misuseAborts(_ name: String, _ library: Library) throws {
        let program = try compileProgram("misuse.c")
        let result = try runChild(program, [name], preload: library)
        #expect(result.signal == SIGABRT, "\(name) (\(library)): \(result)")
        let announced = result.stdout.split(separator: "\n").first { $0.hasPrefix("pointer 0x") }
        let pointer = try #require(announced.map { String($0.dropFirst("pointer ".count)) }, "\(result)")
        let lines = result.swmallocLines
        #expect(lines.count == 1, "\(name) (\(library)): \(lines)")
        #expect(hexNumbers(in: lines.first ?? "").contains(pointer), "\(name): \(lines) should name \(pointer)")
        #expect(!result.stderr.contains("misuse not detected"))
    }
}
