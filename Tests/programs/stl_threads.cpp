// stl_threads.cpp — the C++ standard library from several threads, for the real-program
// tests: vector, string, map, unordered_map and shared_ptr, with objects handed between
// threads. Prints a deterministic digest per thread; the tests run it with and without
// swmalloc preloaded and compare the output.
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

/// Objects one thread creates and another consumes.
struct Mailbox {
    std::mutex lock;
    std::vector<std::shared_ptr<std::string>> items;
};

/// One thread's work: builds containers from a seed, posts strings to the next thread's
/// mailbox, consumes its own (adding their sizes to `received`: how many arrive in time
/// depends on scheduling, the sum with what is left at the end does not), and returns a
/// digest of the containers.
static uint64_t work(int seed, Mailbox &mine, Mailbox &next, size_t &received) {
    uint64_t digest = static_cast<uint64_t>(seed);
    for (int round = 0; round < 60; ++round) {
        std::vector<std::string> words;
        std::map<std::string, int> ordered;
        std::unordered_map<int, std::vector<int>> buckets;
        for (int i = 0; i < 1000; ++i) {
            std::string w = "w" + std::to_string((i * 7919 + seed * 31 + round) % 997) +
                            std::string(static_cast<size_t>(i % 23), 'x');
            words.push_back(w);
            ordered[w] += i;
            buckets[i % 101].push_back(i * seed);
        }
        for (const auto &[key, value] : ordered) digest = digest * 31 + key.size() + static_cast<uint64_t>(value);
        for (const auto &[key, list] : buckets) digest += static_cast<uint64_t>(key) * list.size();
        {
            std::lock_guard<std::mutex> guard(next.lock);
            next.items.push_back(std::make_shared<std::string>(words[static_cast<size_t>(round) % words.size()]));
        }
        std::vector<std::shared_ptr<std::string>> taken;
        {
            std::lock_guard<std::mutex> guard(mine.lock);
            taken.swap(mine.items);
        }
        for (const auto &s : taken) received += s->size();
    }
    return digest;
}

/// Runs `work` on four threads passing objects in a ring; prints each digest and the bytes
/// each mailbox received in all.
int main() {
    constexpr int threads = 4;
    std::vector<Mailbox> boxes(threads);
    std::vector<uint64_t> results(threads);
    std::vector<size_t> received(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([t, &boxes, &results, &received] {
            results[t] = work(t + 1, boxes[t], boxes[(t + 1) % threads], received[t]);
        });
    for (auto &th : pool) th.join();
    for (int t = 0; t < threads; ++t) {
        size_t total = received[t];
        for (const auto &s : boxes[t].items) total += s->size();
        std::cout << "thread " << t << " digest " << results[t] << " mailbox bytes " << total << "\n";
    }
    return 0;
}
