// The command line: parse --port, then serve until SIGINT or SIGTERM.
import ArgumentParser
import Hummingbird

/// `hummingbird-server [--port N]`: serves /json and /metrics on 127.0.0.1.
public struct ServerCommand: AsyncParsableCommand {
    /// Named after the executable that runs it, so both builds print their own name.
    public static let configuration = CommandConfiguration(
        commandName: CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "") },
        abstract: "An HTTP server on 127.0.0.1 that allocates per request and exposes swmalloc's statistics.")

    /// The TCP port; 0 lets the kernel pick a free one (the start-up log line names it).
    @Option(help: "TCP port on 127.0.0.1 (0: a free port, logged at start-up).")
    var port = 8080

    /// Creates the command with its default options (ArgumentParser fills them in).
    public init() {}

    /// Serves until the process gets SIGINT or SIGTERM, then shuts down gracefully.
    public func run() async throws {
        let app = Application(
            router: Routes.make(),
            configuration: .init(
                address: .hostname("127.0.0.1", port: port),
                serverName: Self.configuration.commandName ?? "hummingbird-server"))
        try await app.runService()
    }
}
