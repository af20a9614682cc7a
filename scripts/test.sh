#!/usr/bin/env bash
# The test command (README). Builds the release and the debug libswmalloc.so (the debug
# one checks heap invariants at every thread exit), then runs the Swift test suite, which
# drives C programs, real programs and the tools against the built libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release
swift build
# The suites are Swift Testing's; without --disable-xctest, XCTest would also run and
# print "Executed 0 tests" before them.
swift test --disable-xctest
