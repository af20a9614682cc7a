// Placeholder until the stats runner lands (issue 4).
import SwmallocStats
print("swmalloc-stats: not built yet", Swmalloc.isLoaded)
