// Placeholder until the benchmark driver lands (issue 3).
print("swmalloc-bench: not built yet")
