// The HTTP routes: GET /json and GET /metrics.
import Foundation
import Hummingbird

/// Builds the router of the server.
enum Routes {
    /// Most items one /json request may ask for, so that one request stays bounded.
    static let maxItems = 100_000

    /// A router with `GET /json?n=K` and `GET /metrics`.
    static func make() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("json") { request, _ in try json(request) }
        router.get("metrics") { _, _ in metrics() }
        return router
    }

    /// `GET /json?n=K`: K items (default 100) built and encoded with JSONEncoder per request.
    static func json(_ request: Request) throws -> Response {
        let count = request.uri.queryParameters.get("n", as: Int.self) ?? 100
        guard (0...maxItems).contains(count) else {
            throw HTTPError(.badRequest, message: "n must be between 0 and \(maxItems)")
        }
        let body = try JSONEncoder().encode(Payload(count: count))
        return Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// `GET /metrics`: swmalloc's statistics and the process RSS, Prometheus text format.
    static func metrics() -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: MetricsPage.render())))
    }
}
