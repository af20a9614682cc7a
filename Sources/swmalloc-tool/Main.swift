// swmalloc — the command-line tool: run programs on swmalloc, read their statistics,
// benchmark allocators side by side, and show what is installed.

import ArgumentParser

/// The version of swmalloc (the library, the tool and the packages; scripts/install.sh
/// reads it from here).
let swmallocVersion = "1.1.0"

/// `swmalloc`, the root command: its subcommands do the work.
@main
struct SwmallocTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swmalloc",
        abstract: "A fast, scalable malloc for multi-threaded programs: run programs on it, read their statistics, benchmark it.",
        discussion: """
            Examples:
              swmalloc run -- python3 app.py                 run a program on swmalloc
              swmalloc run --purge-delay-ms 0 -- ./server    with options (see `swmalloc run --help`)
              swmalloc stats -- ./program args               statistics and VOS leak report at exit
              swmalloc bench                                 compare with glibc, jemalloc, tcmalloc, mimalloc
              swmalloc info                                  version, library, options in force, size classes

            Environment:
              SWMALLOC_OPTIONS  the library's options: key=value items, comma-separated
                                (purge_delay_ms, background, thp, verbose, stats_print,
                                stats_json, stats_signal, stats_fd); `swmalloc info`
                                shows those in force. Secure-execution programs
                                (set-user-ID ...) ignore it.
              SWMALLOC_LIB      the library run, stats, info and bench use by default.
            The options table (values, defaults, effects) is in the README, installed as
            share/doc/swmalloc/README.md under the prefix (/usr for the packages).
            """,
        version: swmallocVersion,
        subcommands: [RunCommand.self, StatsCommand.self, BenchCommand.self, InfoCommand.self])
}
