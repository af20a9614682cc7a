/* swmalloc.h — public interface of swmalloc, a thread-caching malloc written in
 * Embedded Swift. Link with -lswmalloc (or LD_PRELOAD=libswmalloc.so) and the standard
 * allocation functions are swmalloc's; the swm_ names below are always swmalloc's, even
 * where the process's malloc is another allocator. */
#ifndef SWMALLOC_H
#define SWMALLOC_H

#include <stddef.h>
#include <stdint.h>

/* The version this header belongs to; swm_version() gives the loaded library's, so a
 * program can tell that it runs with the library it was built for. */
#define SWMALLOC_VERSION_MAJOR 1
#define SWMALLOC_VERSION_MINOR 1
#define SWMALLOC_VERSION_PATCH 0
#define SWMALLOC_VERSION \
    (SWMALLOC_VERSION_MAJOR * 10000 + SWMALLOC_VERSION_MINOR * 100 + SWMALLOC_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the C allocation API, under swmalloc's own names (same semantics as glibc) ---- */
void *swm_malloc(size_t size);
void swm_free(void *ptr);
void *swm_calloc(size_t count, size_t size);
void *swm_realloc(void *ptr, size_t size);
void *swm_reallocarray(void *ptr, size_t count, size_t size);
int swm_posix_memalign(void **out, size_t alignment, size_t size);
void *swm_aligned_alloc(size_t alignment, size_t size);
void *swm_memalign(size_t alignment, size_t size);
void *swm_valloc(size_t size);
void *swm_pvalloc(size_t size);
size_t swm_malloc_usable_size(void *ptr);
void swm_free_sized(void *ptr, size_t size);
void swm_free_aligned_sized(void *ptr, size_t alignment, size_t size);

/** The loaded library's version, as SWMALLOC_VERSION (major * 10000 + minor * 100 +
 *  patch): 10100 for 1.1.0, the first version that has it. */
unsigned swm_version(void);

/* ---- statistics ---- */

/** Process totals. All sizes in bytes. */
typedef struct swm_stats {
    size_t allocated;   /* in live blocks, by usable size */
    size_t active;      /* in pages the heaps hold (with blocks, or emptied and kept for
                           reuse by their thread: up to 64 one-slice pages
                           and a ring of wider ones, each thread),
                           plus huge blocks' mappings */
    size_t resident;    /* mapped and not purged: the most swmalloc keeps in RAM of the
                           memory it hands out (not its 32 MiB segment map, zero pages
                           unless locked by mlockall; nor what mlockall faults in: with
                           MCL_FUTURE the never-used parts of fresh segments, with
                           MCL_CURRENT the purged ranges of cached segments). Purged
                           means free spans and segments given back: the OS pages that
                           swm_collect gives back inside free blocks of pages that still
                           hold live blocks stay counted here (counted in `returned`),
                           as does the end of a huge block that realloc shrank but the
                           kernel refused to unmap (it purges it, and the block keeps it) */
    size_t mapped;      /* mapped from the OS */
    size_t returned;    /* given back to the OS with madvise since start (cumulative) */
    size_t segments;    /* 4 MiB segments in use or cached (retained ones, whose
                           memory went back but whose address space is kept, count
                           in mapped only) */
    size_t huge_blocks; /* live blocks mapped on their own: above 2 MiB when allocated
                           (with an alignment up to 64 KiB, or a larger one when the
                           block does not fit a segment's large pages: 3 MiB aligned
                           to 2 MiB), or aligned to 4 MiB or more, whatever their
                           size; realloc may shrink one in place below 2 MiB */
    size_t heaps;       /* threads with a heap */
    size_t abandoned_segments; /* segments of exited threads not yet reclaimed */
    size_t mallocs;     /* allocations since start */
    size_t frees;       /* frees since start */
    size_t out_of_memory; /* allocations refused with ENOMEM */
} swm_stats_t;

/** Fills *out with the process totals; returns 0. Exact while no other thread
 *  allocates or frees during the call. While they do, the fields are read one after
 *  another, so they need not fit together: a huge block freed and unmapped between the
 *  reads is still in allocated but no longer in mapped, active or huge_blocks. And
 *  allocated, mallocs and frees are sums of every thread's counters, read thread after
 *  thread while the others go on: they are off by what the other threads allocated and
 *  freed during the read — above the truth when a thread's frees were read before the
 *  allocations of those blocks by another thread, below it the other way round — and by
 *  much when the reader is descheduled in the middle (an outside review: a producer and
 *  a consumer of 64-byte blocks with 1,024 live, read 200,000 times, gave allocated up
 *  to 27 MB in 3 … 5 reads). To compare fields, or for exact counts, read them at a
 *  quiet moment. */
int swm_stats_get(swm_stats_t *out);

/** One size class, summed over all threads. Blocks of an alignment above 64 KiB are
 *  carved from large spans and count in no class (in swm_stats_t's totals only), even
 *  when their usable size is a class's size. */
typedef struct swm_class_stats {
    size_t block_size;
    size_t allocs;
    size_t frees;
    size_t live;        /* allocs - frees */
} swm_class_stats_t;

/** Number of small size classes (0 ... count-1). */
unsigned swm_class_count(void);
/** Block size of class c (0 when c is out of range). */
size_t swm_class_size(unsigned c);
/** Class serving a request of size bytes, or swm_class_count() when it is not small. */
unsigned swm_class_of(size_t size);
/** Fills *out for class c; returns 0, or -1 when c is out of range. */
int swm_class_stats_get(unsigned c, swm_class_stats_t *out);

/** Bytes the calling thread has allocated / freed since it started (usable sizes),
 *  as jemalloc's thread.allocated / thread.deallocated, except for a realloc that keeps
 *  its block (in place, or a large or huge block resized): it counts only the change of
 *  size, growth as allocated and a cut as freed, where jemalloc counts the new size
 *  allocated and the old one freed. The difference of the two is the same either way. */
uint64_t swm_thread_allocated(void);
uint64_t swm_thread_freed(void);

/** Writes the statistics report (text, or JSON when json != 0) to fd without calling
 *  malloc. SWMALLOC_OPTIONS=stats_print=1 does this at exit, stats_signal=N on signal N.
 *  To a non-blocking fd that is full, each write waits for room, at most 1 s, and after
 *  a wait in vain the rest of the report is left out (malloc_stats does not wait, as
 *  glibc's does not: it is cut short at its first write that finds the fd full).
 *  swm_vos_report and malloc_info write the same way. Reports are written one at a
 *  time: while one goes to a slow reader, or is blocked in a write, the others wait,
 *  malloc_stats's included (the report at exit waits 1 s at most, then leaves its own
 *  out with a one-line note).
 *  Not async-signal-safe, nor are malloc_stats, malloc_info (as glibc's), swm_stats_get,
 *  swm_class_stats_get and the swm_vos_* functions: they take locks (the report's, the
 *  VOS records', the heaps' registry), and a signal handler that calls one while the code
 *  it interrupted holds that lock waits for ever (review R116: a handler's swm_vos_report
 *  during VOS_Malloc; R124: a handler's report during its thread's report). For a report
 *  on a signal, use stats_signal=N: a thread of swmalloc's writes it, not the handler. */
void swm_stats_print(int fd, int json);

/** Gives back to the OS, now and regardless of purge_delay_ms, everything that can go
 *  process-wide: the calling thread's empty pages, every heap's free spans (a heap whose
 *  thread is inside the allocator at that moment is skipped: it purges on its own),
 *  empty pages of exited threads, and the caches of empty segments and huge mappings;
 *  then, under an address-space or data limit (RLIMIT_AS, RLIMIT_DATA), the address
 *  space of the empty segments (all but each one's 64 KiB header), for the program's own
 *  mappings. Other threads retire their
 *  emptied pages at their next allocation slow path.
 *  Returns the bytes of the ranges given back (purged or unmapped): an upper bound of
 *  what left the resident set, since parts of a purged range (the never-used end of a
 *  page's span, say) may not have been resident. */
size_t swm_collect(void);

/** Times the background purger (thread "swm-purger") woke up since the process started;
 *  0 when it never ran. It sleeps without a timeout while nothing waits for its purge,
 *  except once the main thread ended with pthread_exit (a Swift program with an async
 *  main, a C program's dispatch_main): then it wakes at least once a second, to end
 *  itself when it is the process's last thread. */
uint64_t swm_purger_wakeups(void);

/** Small-block pages set up since the process started (a span of a segment becoming a
 *  page of a size class). A count that keeps rising while a program repeats the same
 *  work means emptied pages are retired and set up again. */
uint64_t swm_pages_formatted(void);

/** Checks the calling thread's heap against its invariants (page free-list counts,
 *  span tiling, list membership). Prints one line per violation to stderr and returns
 *  their number: 0 means consistent. Debug builds also run it at each thread exit. */
int swm_validate(void);

/* ---- VOS accounting (include/vos_mem.h allocates; docs/vos.md explains) ----
 * Counters are kept per thread without locks and merged when read; a read is exact when
 * the threads using a module are not allocating or freeing in it meanwhile. Sizes are the
 * requested bytes (ulSize). Module IDs 0 ... 65535 are counted apart; every larger ID is
 * counted as module 65536. */

/** One module's counters, summed over all threads. */
typedef struct swm_vos_module_stats {
    unsigned long module;    /* module ID (65536: all IDs above 65535) */
    long live_bytes;         /* bytes of live blocks */
    size_t live_blocks;      /* allocs - frees */
    size_t allocs;           /* allocations since start */
    size_t frees;            /* frees since start, by any thread */
    size_t peak_bytes;       /* highest live bytes seen: at each 64 KiB a thread publishes
                                and at each read (within 64 KiB per thread of the true
                                peak); with a quota, the exact peak of the bytes counted
                                against it (docs/vos.md) */
    size_t quota_bytes;      /* 0 = no quota */
    size_t quota_live_bytes; /* live bytes allocated while a quota was set */
    size_t quota_refused;    /* allocations refused by the quota (NULL, ENOMEM) */
} swm_vos_module_stats_t;

/** One allocation site (module, file, line) in site mode, summed over all threads. */
typedef struct swm_vos_site_stats {
    const char *file;        /* the __FILE__ passed by VOS_Malloc (swmalloc's copy, at most
                                200 bytes, valid for the life of the process); NULL when
                                VOS_MallocWithDebug was given NULL, or there was no memory
                                for the copy (the reports print "?") */
    unsigned long line;
    unsigned long module;
    long live_bytes;
    size_t live_blocks;
    size_t allocs;
    size_t frees;
} swm_vos_site_stats_t;

/** Fills *out for a module ID; returns 0, or -1 when out is NULL. */
int swm_vos_module_stats(unsigned long module, swm_vos_module_stats_t *out);
/** Fills out[0 ... capacity-1] with the modules that have counts (quota refusals included) or a quota, by ID;
 *  returns their number (which may exceed capacity; out may be NULL to count). */
size_t swm_vos_modules(swm_vos_module_stats_t *out, size_t capacity);
/** Fills out[0 ... capacity-1] with the sites that have allocations, largest live bytes
 *  first (the leak report's order); returns their number. */
size_t swm_vos_sites(swm_vos_site_stats_t *out, size_t capacity);
/** Sets a module's quota in bytes (0 removes it). An allocation that would take the live
 *  bytes allocated while a quota was set (quota_live_bytes) above it returns NULL with
 *  ENOMEM and is counted in quota_refused. A block counted against a quota stays counted
 *  until it is freed, through a removal and a new quota: blocks allocated with no quota
 *  set are the ones never counted. Returns 0, or -1 with errno ENOMEM when out of memory. */
int swm_vos_set_quota(unsigned long module, size_t bytes);
/** Writes the module table and the leak report (live blocks by site, largest first), text
 *  or JSON ({"modules":[...],"sites":[...]}), to fd without calling malloc. The full
 *  report of swm_stats_print includes them. */
void swm_vos_report(int fd, int json);

#ifdef __cplusplus
}
#endif
#endif
