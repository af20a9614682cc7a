// hummingbird-server-plain — the example server without swmalloc (glibc or LD_PRELOAD).
import ServerCore

/// Entry point of the server that does not link swmalloc.
@main
enum HummingbirdServerPlain {
    /// Parses the command line and serves (ServerCommand's async entry point).
    static func main() async {
        await ServerCommand.main()
    }
}
