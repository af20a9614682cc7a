// APIContractTests.swift — the C API contract checklist (Tests/programs/api_contract.c):
// every edge case is its own test argument, run under the libc names and the swm_ names,
// against the release and the debug library.

import Testing

/// The named cases of api_contract.c.
let contractCases = [
    "malloc0_unique", "free_null", "calloc_zeroes", "calloc_dirty_reuse", "calloc_overflow",
    "realloc_null", "realloc_zero", "realloc_grow", "realloc_shrink", "realloc_in_place",
    "realloc_failure", "reallocarray_overflow", "zero_product_huge_factor", "posix_memalign_too_big", "aligned_alloc",
    "aligned_alloc_too_big", "memalign_too_big", "memalign_rounds_up", "valloc", "pvalloc", "usable_size",
    "free_sized", "malloc_too_big", "thread_counters_aligned",
]

/// posix_memalign with every power-of-two alignment from 8 to 2 MiB (valid), and with
/// invalid ones (0, 3, 24: not powers of two; 4: below sizeof(void *)).
let alignmentCases =
    (3...21).map { "posix_memalign_ok_\(1 << $0)" } + [0, 3, 24, 4].map { "posix_memalign_bad_\($0)" }

/// Which names the program calls and which library it is linked to.
enum APIVariant: String, CaseIterable, CustomStringConvertible {
    case libcRelease = "libc names, release", swmRelease = "swm_ names, release"
    case libcDebug = "libc names, debug", swmDebug = "swm_ names, debug"

    /// The library the program is linked to.
    var library: Library { self == .libcRelease || self == .swmRelease ? .release : .debug }

    /// The first argument of api_contract: `libc` or `swm`.
    var names: String { self == .libcRelease || self == .libcDebug ? "libc" : "swm" }

    /// The label in test reports.
    var description: String { rawValue }
}

/// The API contract: each case in its own child process.
@Suite struct APIContractTests {
    /// api_contract.c knows exactly the named cases this file runs.
    @Test func caseListMatches() throws {
        try expectCaseList("api_contract.c", linking: .release, contractCases)
    }

    /// One edge case of the contract holds (and the heap validates afterwards).
    @Test(arguments: contractCases + alignmentCases, APIVariant.allCases)
    func contract(_ name: String, _ variant: APIVariant) throws {
        let program = try compileProgram("api_contract.c", linking: variant.library)
        let result = try runChild(program, [variant.names, name])
        #expect(result.succeeded, "\(name) (\(variant)): \(result)")
        #expect(result.stdout == "ok \(variant.names) \(name)\n")
    }
}
