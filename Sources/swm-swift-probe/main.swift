// swm-swift-probe: Swift collections from several threads. The tests run it with and
// without swmalloc preloaded and compare its output; it prints a digest of its work, so
// any corrupted Array, Dictionary or String shows as a different line.

#if canImport(Glibc)
import Glibc
#endif

/// Work of one thread: build, grow, mutate and hash collections; returns a digest.
func work(_ seed: Int) -> Int {
    var digest = seed
    for round in 0..<200 {
        var words: [String] = []
        var counts: [String: Int] = [:]
        for i in 0..<300 {
            let word = "w\((i * 7919 + seed * 31 + round) % 997)-" + String(repeating: "x", count: i % 23)
            words.append(word)
            counts[word, default: 0] += 1
        }
        words.sort()
        var joined = words.prefix(50).joined(separator: ",")
        joined += String(counts.count)
        var numbers = [Int](repeating: 0, count: round % 64 + 1)
        for i in numbers.indices { numbers[i] = i &* seed }
        numbers.append(contentsOf: numbers.reversed())
        digest = digest &* 31 &+ joined.utf8.reduce(0) { $0 &* 131 &+ Int($1) }
        digest = digest &* 31 &+ numbers.reduce(0, &+) &+ counts.values.reduce(0, +)
    }
    return digest
}

/// Runs `work` on `threadCount` pthreads and returns their digests.
func runThreads(_ threadCount: Int) -> [Int] {
    let results = UnsafeMutableBufferPointer<Int>.allocate(capacity: threadCount)
    defer { results.deallocate() }
    var threads: [pthread_t] = []
    for t in 0..<threadCount {
        let job = Unmanaged.passRetained(Job(seed: t + 1, result: results.baseAddress! + t))
        var thread = pthread_t()
        pthread_create(&thread, nil, { arg in
            let job = Unmanaged<Job>.fromOpaque(arg!).takeRetainedValue()
            job.result.pointee = work(job.seed)
            return nil
        }, job.toOpaque())
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
    return Array(results)
}

/// One thread's work order: its seed, and where its digest goes.
final class Job: @unchecked Sendable {
    let seed: Int
    let result: UnsafeMutablePointer<Int>
    init(seed: Int, result: UnsafeMutablePointer<Int>) { self.seed = seed; self.result = result }
}

for (t, r) in runThreads(4).enumerated() { print("thread \(t): \(r)") }
