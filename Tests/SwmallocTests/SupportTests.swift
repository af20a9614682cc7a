// SupportTests.swift — checks of the test support code itself.

import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The helpers of Support.swift work: children run, output and status come back.
@Suite struct SupportTests {
    /// A child's stdout, stderr and exit status come back, and environment values reach it.
    @Test func childOutputAndStatus() throws {
        let r = try runChild("/bin/sh", ["-c", "echo out; echo err >&2; echo $SWM_X; exit 3"], environment: ["SWM_X": "x1"])
        #expect(r.stdout == "out\nx1\n")
        #expect(r.stderr == "err\n")
        #expect(r.exitCode == 3)
        #expect(r.signal == nil)
    }

    /// A child killed by a signal reports the signal and no exit status.
    @Test func childSignal() throws {
        let r = try runChild("/bin/sh", ["-c", "kill -ABRT $$"])
        #expect(r.exitCode == nil)
        #expect(r.signal == 6)
    }

    /// A child runs in the directory it is given.
    @Test func childDirectory() throws {
        let r = try runChild("pwd", directory: "/usr")
        #expect(r.stdout == "/usr\n")
    }

    /// A child past its time limit is killed and reported as timed out.
    @Test func childTimeLimit() throws {
        let r = try runChild("sleep", ["30"], timeLimit: 0.2)
        #expect(r.timedOut)
        #expect(r.signal == SIGKILL)
    }

    /// A missing tool is an error that names the Debian package.
    @Test func missingToolNamesPackage() {
        #expect(throws: SupportError.self) { try requireTool("swm-no-such-tool", debianPackage: "swm-pkg") }
    }
}
