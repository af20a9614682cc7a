// hummingbird-server — the example server with swmalloc linked as its malloc.
import ServerCore

/// Entry point of the server that links swmalloc.
@main
enum HummingbirdServer {
    /// Parses the command line and serves (ServerCommand's async entry point).
    static func main() async {
        await ServerCommand.main()
    }
}
