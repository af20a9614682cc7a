"""workload.py — a Python workload for the real-program tests: dicts, lists, strings,
json and threads, printing a deterministic digest of its results. The tests run it with
and without swmalloc preloaded and compare the output."""

import hashlib
import json
import threading


def build(seed):
    """Builds nested dicts, lists and strings from a seed and returns their JSON text."""
    records = []
    for i in range(3000):
        key = "k%05d-%s" % ((i * 7919 + seed) % 10007, "x" * (i % 37))
        records.append({
            "key": key,
            "values": [j * seed % 1009 for j in range(i % 50)],
            "tags": {("t%d" % (j % 11)): j for j in range(i % 13)},
            "text": " ".join(str(j) for j in range(i % 29)),
        })
    index = {r["key"]: r for r in records}
    words = sorted(set(w for r in records for w in r["text"].split()))
    return json.dumps({"count": len(index), "words": words, "records": records}, sort_keys=True)


def digest(seed):
    """Round-trips the workload through json several times and hashes it."""
    text = build(seed)
    for _ in range(3):
        data = json.loads(text)
        data["records"].sort(key=lambda r: (len(r["values"]), r["key"]))
        data["records"] = data["records"][::-1]
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def main():
    """Runs the workload on the main thread and on eight threads; prints the digests."""
    results = [None] * 8

    def run(i):
        results[i] = digest(i + 1)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("main", digest(0))
    for i, r in enumerate(results):
        print("thread", i, r)
    big = ["%d" % i * (i % 7) for i in range(200000)]
    print("strings", len("".join(big)), sum(map(len, big)))
    table = {}
    for i in range(200000):
        table[i % 50021] = table.get(i % 50021, 0) + i
    print("dict", len(table), sum(table.values()))


main()
