// The /json response: small Codable structs with strings, made anew for every request.

/// One element of the /json response.
struct Item: Codable, Sendable {
    /// Position in the response, from 0.
    let id: Int
    /// A short name made from the id ("item-42").
    let name: String
    /// Two short tags ("even" or "odd", and a group).
    let tags: [String]
    /// A number derived from the id.
    let score: Double

    /// The item at position `id`.
    init(id: Int) {
        self.id = id
        name = "item-\(id)"
        tags = [id.isMultiple(of: 2) ? "even" : "odd", "group-\(id % 7)"]
        score = Double(id) * 0.5
    }
}

/// The body of a /json response: `{"count": K, "items": [...]}`.
struct Payload: Codable, Sendable {
    /// Number of items.
    let count: Int
    /// The items, 0 ..< count.
    let items: [Item]

    /// A payload of `count` items.
    init(count: Int) {
        self.count = count
        items = (0..<count).map(Item.init(id:))
    }
}
