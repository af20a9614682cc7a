/* retention.c — memory that must go back to the OS, and the background purger's
 * lifecycle: `retention CASE` (or `retention list`). Each case prints "ok CASE" and exits
 * 0, or says what failed and exits 1. Runs with swmalloc preloaded (its API is found with
 * dlsym); the default options unless the test sets SWMALLOC_OPTIONS.
 *
 *   idle_threads        16 threads each allocate 3 MiB of 16 … 4,000-byte blocks, free them
 *                       and go to sleep; the main thread sleeps too (reading its RSS
 *                       without calling the allocator). The resident set must come back
 *                       within 17 MiB of where it started (the purge delay is 250 ms; the
 *                       wait is bounded by 3 s for a loaded machine; before: +59 MiB, then
 *                       +19.9 MiB while pages were extended 16 KiB at a time).
 *                       What stays is each thread's kept empty class pages (at most 64;
 *                       about 0.9 MiB a thread here: what it touched of them), which only
 *                       the thread itself may retire.
 *   idle_wide_pages     8 threads each allocate 8 blocks of every class from 9 KiB to
 *                       128 KiB (pages of 2 … 16 slices), write and free them, and sleep:
 *                       the resident set must come back within 40 MiB of the start (each
 *                       thread keeps at most 4 MiB of such empty pages; before: all of
 *                       them, about 100 MiB).
 *   remote_batch_idle   32 pool threads each free 8 of the main thread's 120 KiB blocks
 *                       and then wait; the main thread allocates as many blocks again:
 *                       mapped memory must not grow by the 32 MiB the pool threads free
 *                       (large blocks are sent to their owner at once, never batched).
 *   fork_child_reuse    4 threads allocate 16 MiB each and stay alive; the process forks;
 *                       the child frees all 64 MiB and allocates 64 MiB again: its mapped
 *                       memory must grow by less than 32 MiB (the heaps of the threads the
 *                       child does not have are let go, so it reuses their memory), and
 *                       its resident set by less than 2 MiB (it takes the freed memory,
 *                       still resident, before the never-touched ends of the segments,
 *                       and before its own room; +15 MiB before the first, +3.6 MiB with
 *                       the room bound of `Heap.hasRoom` alone; +0.6 MiB).
 *   purger_absent       a small program (1 MiB allocated and freed, 10 times) never gets
 *                       the purger thread: the process keeps exactly one thread.
 *   purger_lifecycle    after 64 MiB are allocated and freed the purger thread exists
 *                       ("swm-purger"), gives the memory back (within 8 MiB of the start)
 *                       while every other thread sleeps, then sleeps itself: at most 2
 *                       wakeups in the next second.
 *                       A fork child gets its own purger at its first allocations that
 *                       need one, and gives its memory back the same way.
 *   purger_off          with background=0 no purger thread is ever started.
 *   big_freed_then_sleep   a program keeps a 40 MiB block, frees a 48 MiB one and sleeps
 *                       (a few allocations in all): the resident set must fall back to
 *                       the kept block within 3 s. Before: the purger started only at a
 *                       periodic check of a later slow path, so it never started, and
 *                       the 48 MiB stayed in the huge cache. Also run with background=0
 *                       (big_freed_then_sleep_sync), where the cache keeps at most 16 MiB.
 *   realloc_chain_then_sleep  a buffer grown by realloc to 40 MiB, freed: back within 3 s
 *                       (before: +53 MiB for good).
 *   small_freed_then_sleep  20 MiB of 1,000-byte blocks freed before sleeping, in a process
 *                       too small to want a purger: back within 8 MiB of the start (the
 *                       synchronous fallback now applies until a purger runs; before:
 *                       +20 MiB for good).
 *   fork_child_sleeps   4 threads hold 16 MiB each; a fork child frees the 64 MiB, makes
 *                       one allocation and sleeps: its resident set must fall by 48 MiB
 *                       (before: the child's freed spans waited for a purger that was
 *                       never started again).
 *   remote_owner_sleeps a thread allocates 32 MiB of 16 KiB blocks and 32 MiB of 256 KiB
 *                       blocks, hands them to the main thread and sleeps; the main thread
 *                       frees them all: back within 8 MiB of the start in 3 s. Before: the
 *                       owner's full pages kept the blocks for good, swm_collect included.
 *   remote_owner_sleeps_delay0  the same with purge_delay_ms=0 (RetentionTests sets it):
 *                       before, that option switched the purger off and the 64 MiB stayed.
 *   pool_idle           8 threads replace random slots of a shared table of 4,096 blocks,
 *                       40,000 times each with 9 … 64 KiB blocks, then (after a barrier)
 *                       40,000 times with 16 … 128-byte ones, and sleep (0.3 MiB live): the resident set
 *                       must come back within 40 MiB of the start in 3 s. Before: 56 … 104
 *                       MiB stayed, the first size's pages kept in the owners' class lists
 *                       by the blocks other threads freed into them, which only an owner
 *                       collected (27 … 29 MiB now, within 0.6 s: each class's head page
 *                       keeps the first OS page of such blocks, and the blocks its owner
 *                       freed itself).
 *   trickle_to_sleeping_owner  a thread allocates 32,768 blocks of 2,048 bytes (64 MiB),
 *                       frees every 8th itself and sleeps; another thread frees 1 in 8,
 *                       and 400 ms later a third frees the rest: back within 8 MiB of the
 *                       start in 3 s. Before (review R72): the purger was told of a free
 *                       only when it went to an empty thread-free list or a full page, so
 *                       the frees that emptied the pages, into lists it had seen, went
 *                       unnoticed and the 64 MiB stayed.
 *   trim_sleeping_owner_frees  a thread allocates 8,192 blocks of 16 KiB (128 MiB) and
 *                       sleeps; another frees every other one; malloc_trim(0) must give
 *                       back at least 40 MiB at once (the OS pages inside those blocks).
 *                       Before (review R72): the purger's bound of 32 lists per heap and
 *                       pass held for malloc_trim too, which gave back 1.4 MiB.
 *   trim_right_after_trim  (and _sync, background=0) a thread allocates 8,192 blocks of
 *                       16 KiB (128 MiB) and sleeps; malloc_trim(0); another thread frees
 *                       all of them and ends; malloc_trim(0) at once must give back at
 *                       least 100 MiB (a trim within 10 ms of the last walk of the page
 *                       lists walks them again only if a free into another thread's page
 *                       was noted since: this one must be).
 *   locked_then_trimmed  (and _delay0, purge_delay_ms=0) under mlockall a thread allocates
 *                       48 MiB of 192 KiB blocks and frees half (their purges are refused);
 *                       600 ms later munlockall, and malloc_trim(0) in the main thread must
 *                       give back 16 MiB (reviews R107, R108: the heap's spans were left
 *                       out of every later pass, as none counted as waiting).
 *   trim_twice_before_purger  as trim_after_purger_walk with 16 MiB, below the purger's
 *                       start: a malloc_trim, the owner's frees, a malloc_trim at once must
 *                       give back 12 MiB (review R108: the second skipped its walk and left
 *                       it to a purger that did not run: the memory stayed for good).
 *   owner_last_after_purger_walk  as trim_after_purger_walk without the trim: once the
 *                       owner freed its 16ths, every thread sleeps, and the resident set
 *                       must fall to 16 MiB above the start within 3 s (review R107: the
 *                       purger's walk had seen the pages partly freed, nothing announced
 *                       the owner's frees, and the 64 MiB stayed for good).
 *   trim_after_purger_walk  a thread allocates 64 MiB of 4 KiB blocks; another frees all but
 *                       every 16th; right after the purger's next pass (which walks the page
 *                       lists for those frees) the owner frees the 16ths and the program's
 *                       only malloc_trim(0) must give back 48 MiB at once (review R107: it
 *                       skipped the walk within 10 ms of the purger's, and the memory stayed
 *                       for good).
 *   huge_shrink         realloc of a 64 MiB block to 33 MiB gives the rest back at once
 *                       (before: all 64 MiB stayed resident while the block lived).
 *   huge_cache_reuse    huge blocks freed and allocated again in other sizes reuse the
 *                       huge cache (cut, trimmed, grown): contents are intact, calloc of
 *                       a reused mapping reads zero, and once all are freed the counts
 *                       of live huge blocks and bytes are back to 0 (a cut mapping was
 *                       once counted by the size asked for and freed by its mapping,
 *                       which wrapped the counter and trapped).
 *   huge_cache_refill   (purge_delay_ms=10000, so nothing ages out on a slow machine)
 *                       a 100 MiB block freed while no other huge block lives comes back
 *                       resident when asked for again (mincore), and grows by realloc
 *                       with its contents (before: the cache held at most as many bytes
 *                       as live huge blocks, 64 MiB at least, and unmapped it). Eight
 *                       20 MiB blocks freed, then eight 4 MiB-aligned ones (their own
 *                       mappings): live and cached huge memory stay within the live peak
 *                       and 64 MiB (before: the cache kept all 160 MiB until the delay).
 *                       calloc of 9 MiB cut from a freed 20 MiB block reads zero over its
 *                       whole usable size (before: 3 MiB of the old data past the request).
 *   huge_cut_cycles     a 128 MiB block written and freed, then 3 MiB blocks allocated,
 *                       written and freed every 20 ms: the 128 MiB go back to the OS
 *                       after the delay (within 3 s) though the small blocks are cut from
 *                       their cached mapping and join it again at each free (before: the
 *                       join made the mapping as young as its newest part, for good).
 *   map_count_frees     the process uses up vm.max_map_count but 8 mappings itself (4 KiB
 *                       pages that cannot merge), then allocates, writes and frees 16
 *                       blocks of 22 MiB, 3 rounds, and calls swm_collect: the resident
 *                       set must come back within 32 MiB of the start. Unmapping one of
 *                       the huge mappings (which lie side by side and merge) splits a
 *                       kernel mapping, which the kernel refuses there (before: the
 *                       refusal was ignored and 155 MiB stayed resident for good).
 *   vfork_child_purger  a vfork child's malloc takes the process past the mapped size that
 *                       starts the purger, then the child _exits: the purger must not be
 *                       started there (it died with the child: the parent hung on a span
 *                       lock the dead thread held, or the purger counted as running with no
 *                       thread, for good); the parent's next allocation starts it, and
 *                       64 MiB the parent frees go back while it sleeps.
 *   main_exit_after_remote_frees  a thread allocates 4,096 blocks of 16 KiB (64 MiB) and
 *                       sleeps; the main thread frees them all and 2 ms later calls
 *                       pthread_exit: the purger, which stays, must give them back (within
 *                       10 MiB of the start after 1.5 s, read by another thread). Before
 *                       (review R73), when the purger stopped there: its last pass skipped
 *                       the walk of the page lists when the previous one was less than
 *                       10 ms before, and up to 64 MiB stayed (this case caught it in 1 of
 *                       6 runs: it needs that timing).
 *   main_pthread_exit   with the purger (and, with stats_signal, the reporter) running,
 *                       the main thread prints "ok" and ends with pthread_exit: the
 *                       process must exit 0 (it never ended: the C library waits for every
 *                       thread, swmalloc's own included).
 *   main_exit_fork_child  the main thread frees 64 MiB and ends with pthread_exit; a
 *                       thread waits for them to go back (within 8 MiB of the start in
 *                       3 s) and forks, and the child, whose main thread is alive, must
 *                       get a purger that gives back 64 MiB it frees (when the main
 *                       thread's end stopped the purger for good, the child's stayed off:
 *                       18.6 MiB kept after 1.5 s).
 *   main_exit_purger_stays  in a child process, the main thread ends with pthread_exit at
 *                       once (as libdispatch's does in a Swift program with an async main);
 *                       a thread allocates 40 MiB of 16 KiB blocks, frees the last 12 MiB
 *                       and sleeps: 8 MiB of them must go back within 3 s (the purger
 *                       stays after the main thread's end; stopped for good there, it left
 *                       all 12 resident, review R97); then that thread ends, and the child
 *                       must exit 0 within 4 s (the purger ends itself as the last thread;
 *                       it takes milliseconds).
 *   main_exit_last_without_heap  in a child, the main thread frees 64 MiB (the purger
 *                       starts), starts a thread that never allocates and ends with
 *                       pthread_exit; that thread ends 300 ms later without a hint to the
 *                       purger: the child must exit 0 within 4 s (the purger looks at
 *                       least every second: about 0.5 s).
 *   dlopen_worker_last_without_heap  a program runs again without swmalloc preloaded;
 *                       a worker loads it with dlopen, allocates and frees 64 MiB through
 *                       it (the purger starts) and ends; the main thread, which never
 *                       allocated through it, ended with pthread_exit, and the last
 *                       thread never allocated through it either: the program must exit 0
 *                       within 4 s of its last thread (nothing told the purger that the
 *                       main thread ended: it kept the process alive until SIGKILL).
 *   dlopen_worker_reporter  (stats_signal=10) the same with the reporter running too.
 *   dlopen_reporter_without_purger  (stats_signal=10) the same with 1 MiB used: no purger
 *                       starts, and the reporter alone must not keep the program alive
 *                       (review R106: it did, for ever).
 *   dlopen_fork_child   the same in a child forked by the program's main thread (which
 *                       never allocated through swmalloc) once a first worker used it
 *                       (review R106: the child's main thread, without a heap, was taken
 *                       for seen, and the child never ended).
 *   fork_in_purger_create  a signal handler forks while the purger's start is inside
 *                       pthread_create, before the thread exists (this program's
 *                       pthread_create raises the signal): the child's copy of the call
 *                       makes the thread there. The child starts a thread that frees 12 of
 *                       40 MiB and ends its main thread: it must exit 0 within 4 s of that
 *                       thread (review R105: the thread went uncounted, the child started a
 *                       second purger, and it never ended).
 *   nested_thread_start  (stats_signal=10) the program runs again; its pthread_setname_np
 *                       starts the purger while swmalloc starts the reporter (at load), as
 *                       an allocation in a signal handler there would; then a worker ends
 *                       100 ms after the main thread's pthread_exit: the process's exit must
 *                       run in the worker (review R105: the nested start made the reporter
 *                       go uncounted, and the exit ran in the purger).
 *   fork_in_purger_setname  the same with the fork after the thread exists, in the
 *                       pthread_setname_np that follows (this program's raises the
 *                       signal): the child has no purger from it (review R104: counted
 *                       there, each thread exit in the child waited 2 s).
 *   main_parked_in_destructor  in a child, the main thread frees 64 MiB and ends with
 *                       pthread_exit, where a key destructor of the program's keeps it
 *                       400 ms (libdispatch's never returns): the purger, alone with a main
 *                       thread that has not ended, must stay; then the destructor starts
 *                       the thread of main_exit_purger_stays (its 12 MiB must go back) and
 *                       joins it, and the child must exit 0 within 4 s.
 *   main_exit_raw_thread  as main_exit_last_without_heap, with one more thread made with a
 *                       raw clone, which never ends: the kernel counts it, the C library
 *                       does not (as io_uring's SQPOLL thread), and the child must exit 0
 *                       within 4 s of its last C library thread (the purger counted the
 *                       kernel's threads, and the child never ended: review R98).
 *   main_exit_atexit_thread  in a child, an atexit handler records its signal mask and its
 *                       thread's name; the main thread frees 64 MiB and ends with
 *                       pthread_exit, and a thread frees 12 MiB and ends: the handler
 *                       must run with SIGTERM and SIGUSR1 unblocked, in a thread named as
 *                       the main thread (it ran in swm-purger with every signal blocked: a
 *                       child it spawned could not be stopped, a SIGTERM was lost, R98).
 *   main_exit_last_thread_state  in a child whose main thread ended, the last thread
 *                       frees 12 MiB, blocks SIGTERM and SIGUSR1 (which has a handler),
 *                       sends both to the process, sets a thread-local text and ends: the
 *                       child must exit 0 (the signals stay pending, as under glibc), the
 *                       handler must not run, and an atexit handler must read that text
 *                       (the exit runs in the last thread; when the purger ended last, it
 *                       ran the exit with the main thread's mask: status 143, R100).
 *   purger_start_race   the main thread starts the purger (mallopt(M_TRIM_THRESHOLD, 0))
 *                       through a pthread_create that this program slows by 50 ms, while
 *                       its only other thread ends: that exit must take under 1 s and the
 *                       purger must run afterwards (a thread that ended during the start
 *                       took the starting purger for a running one, stopped it and waited
 *                       4 s for a thread count that never came: review R102).
 *   main_exit_thread_chain  in a child whose main thread ended, a chain of 2,000 threads
 *                       that each allocate, start the next and end: the purger must wake
 *                       fewer than 200 times meanwhile (925 when every exit that left no
 *                       live heap woke it, R98: the chain took twice as long).
 *   main_exit_threads_at_once  in a child whose main thread ended, twelve threads that
 *                       allocated end together (a key destructor of the program's holds
 *                       each until all are in it), once the purger's look at the thread
 *                       count is a second apart: the child must exit within 0.15 s of
 *                       them (each found the others counted, and the exit waited for the
 *                       purger's next look: 0.25 s at f486e34, up to 1 s; and at 0c673fa
 *                       for more than 8, review R111).
 *   main_exit_atexit_allocates  in a child whose main thread ended, the last thread's
 *                       end runs the exit, where an atexit handler frees 16 MiB (the
 *                       purger's start would come there): the handler must run to its end
 *                       and the one registered before it after (review R112: the purger
 *                       started, ended as the last thread and ran exit a second time,
 *                       which cut the first handler short). And a block the handler
 *                       allocates must count in swm_thread_allocated: the thread keeps a
 *                       heap while the process ends in it (review R114: a heap attached
 *                       and detached for every call, none counted, a million malloc/free
 *                       pairs 30x slower than under glibc).
 *   main_exit_thread_churn  in a child whose main thread ended, a thread starts and joins
 *                       a short thread (it allocates) every 20 ms for 3 s: the purger must
 *                       wake fewer than 42 times meanwhile (review R111: each end asked it
 *                       to look again from 1 ms, 119 wake-ups in 6 s where f486e34 woke 33).
 *   long_lived_among_short  one long-lived thread and a stream of short-lived ones (one at
 *                       a time) each allocate 32 … 3,031-byte blocks and swap them into
 *                       512 shared slots, freeing the block each displaces (mostly another
 *                       thread's): live memory stays under 1.6 MB, and swmalloc's active
 *                       bytes must stay under 48 MiB for 2 … 3 s. Run with background=0 and
 *                       purge_delay_ms=0 (long_lived_among_short_sync) and with
 *                       purge_delay_ms=0 only. Before: the long-lived thread's class lists
 *                       grew by 300 MiB a second of pages whose blocks other threads had
 *                       all freed, never collected (it adopted exited threads' segments
 *                       on every tidy pass and for every span, and looked only at the first
 *                       page of a list with a free block).
 *   thread_churn_resident  300 threads one after another, each touching 31 size classes,
 *                       in a process too small for a purger (and with background=0,
 *                       thread_churn_resident_sync): swmalloc may give back at most 4 MiB
 *                       meanwhile (each exit purged the 2 MiB the next thread faulted in
 *                       again: 581 MiB).
 *   thread_churn_wide_classes  300 threads with one block of every class up to 128 KiB
 *                       (pages of up to 16 slices, a few KiB of each touched): at most
 *                       3,000 page faults (before: each exit counted the kept empty
 *                       pages' whole spans, purged, and the next thread faulted them in
 *                       again).
 *   exit_after_remote_frees  a thread's 20 MiB of blocks, all freed by the main thread,
 *                       must not stay resident after its exit in a process too small for a
 *                       purger (and with background=0, exit_after_remote_frees_sync).
 *   locked_memory_resident  with every page locked (mlockall), 48 MiB of 192 KiB blocks
 *                       written, freed and collected: swmalloc's resident count may
 *                       fall by no more than the resident set did, and the empty
 *                       segments past the cache's 8 must give at least 4 MiB back (the
 *                       kernel refuses to purge locked memory, but unmaps it; before,
 *                       every refused purge of a free span counted as memory given
 *                       back: `resident` fell by 48 MiB, the RSS by 0), and the purger
 *                       does not wake again and again for it; after munlockall, what
 *                       stayed goes back within 6 s (the first fix never retried it).
 *   partly_locked_span  six 1 MiB blocks written, one 4 KiB page of each locked (mlock),
 *                       freed and collected: all but about 64 KiB around each locked page
 *                       must go back (the kernel refuses a purge at its first locked page;
 *                       before, the rest of the free span, 5.7 of the 6 MiB, stayed).
 *   purger_retries_start  the purger's thread cannot be created when the process first
 *                       maps 32 MiB (an address-space limit leaves no room for its 8 MiB
 *                       stack); once the limit is lifted, a later allocation slow path
 *                       starts it (before, one failure turned it off for good: freed
 *                       memory below the owners' own purge threshold stayed resident).
 *   vos_thread_tables   a thread that used VOS modules 0, 32, 64 … 65,504 (a block each,
 *                       freed) and exited, then 16 such threads alive at once, all exited:
 *                       the resident set after them must be within 8 MiB of where it was
 *                       after the first (the exited threads' VOS tables go back to the OS
 *                       when pooled; before, each kept the 2 MiB of entries its thread
 *                       touched: +32 MiB for good, swm_collect included).
 *   purger_futex_refused  a seccomp filter refuses futex (EPERM); 200 MiB of 10,000-byte
 *                       blocks allocated and freed start the purger, whose waits then
 *                       fail: while the program sleeps 1 s the process must use under
 *                       0.25 s of CPU (the purger stops for good, as with background=0;
 *                       before, it went round its loop without sleeping: 0.65 … 0.98 s
 *                       of CPU a second, review R93).
 *   purger_futex_eagain, purger_futex_eintr, purger_futex_zero, purger_futex_etimedout
 *                       the same under a filter that answers futex with EAGAIN, EINTR, 0
 *                       (success without sleeping) or ETIMEDOUT: every wait returns at
 *                       once, as a wait the purger may take for a wake-up or its timeout's
 *                       end; it must not spin either (review R106: with ETIMEDOUT it did).
 *   purger_futex_refused_later  64 MiB freed start the purger, which gives them back
 *                       and sleeps without a timeout; then the filter refuses futex in
 *                       the main thread, which allocates and frees 256 MiB of 4 KiB
 *                       blocks: its wake of the purger is refused, and the resident set
 *                       must still come back within 32 MiB of the start in 3 s (the
 *                       owners purge as with background=0; before, all of it stayed:
 *                       review R95).
 *   purger_refused_then_main_exits  the purger sleeps without a timeout; a thread that
 *                       refuses futex to itself (as a sandboxed worker) frees 256 MiB, so
 *                       its wake of the purger is refused and the purger turns off; then
 *                       the main thread ends with pthread_exit: the process must end
 *                       (review R96: the sleeping purger, never woken, kept it alive; only
 *                       SIGKILL ended it).
 *   reporter_futex_refused  (stats_signal=10) the program runs again under a filter that
 *                       refuses futex, as a sandbox launcher would run it, so that the
 *                       stats_signal reporter starts under it: while the program sleeps
 *                       1 s the process must use under 0.25 s of CPU (the reporter stops
 *                       at its refused wait; before, it took a whole CPU: review R95).
 *   reporter_futex_eagain, reporter_futex_etimedout  (stats_signal=10) the same with futex
 *                       answering EAGAIN, ETIMEDOUT.
 *   rare_allocators_among_short  80 threads each replace one of 16 blocks every 20 ms
 *                       beside short-lived threads that fill a shared pool: swmalloc's
 *                       mapped memory must stay under 4 GiB for 4 s (see the function). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "swmalloc.h"

static int (*stats_get)(swm_stats_t *);
static uint64_t (*purger_wakeups)(void);

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {}
}

/** Resident set size in MiB. */
static double rss_mib(void) { return (double)statm_bytes(1) / (1 << 20); }

/** The resident set's high-water mark (VmHWM in /proc/thread-self/status), MiB. */
static double peak_rss_mib(void) {
    char text[8192];
    read_proc("/proc/thread-self/status", text, sizeof text);
    const char *line = strstr(text, "VmHWM:");
    CHECK(line != NULL);
    return strtod(line + 6, NULL) / 1024;
}

/** Waits (sleeping, calling no allocator function) until the resident set is at most
 *  `limit` MiB or `max_ms` passed; returns the last reading and sets `*waited_ms`. */
static double rss_fall_to(double limit, long max_ms, long *waited_ms) {
    double rss = rss_mib();
    long waited = 0;
    while (rss > limit && waited < max_ms) {
        sleep_ms(50);
        waited += 50;
        rss = rss_mib();
    }
    *waited_ms = waited;
    return rss;
}

/** swmalloc's mapped bytes, in MiB. */
static double mapped_mib(void) {
    swm_stats_t st;
    CHECK(stats_get(&st) == 0);
    return (double)st.mapped / (1 << 20);
}

/** Threads of this process, and whether one is named `name` (/proc/self/task/N/comm). */
static int thread_count(const char *name, int *found) {
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    int n = 0;
    if (found) *found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        n++;
        char path[64], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(comm, sizeof comm, f) && found && strncmp(comm, name, strlen(name)) == 0) *found = 1;
        if (f) fclose(f);
    }
    closedir(d);
    return n;
}

/** A block size from 16 to 4,000 bytes. */
static size_t small_size(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return 16 + (*seed >> 8) % 3985;
}

/* ---- idle_threads ---- */

static pthread_barrier_t freed_barrier;
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;
static int park_release;

/** Sleeps on a condition variable until the main thread releases it. */
static void park(void) {
    pthread_mutex_lock(&park_lock);
    while (!park_release) pthread_cond_wait(&park_cond, &park_lock);
    pthread_mutex_unlock(&park_lock);
}

static void unpark(void) {
    pthread_mutex_lock(&park_lock);
    park_release = 1;
    pthread_cond_broadcast(&park_cond);
    pthread_mutex_unlock(&park_lock);
}

enum { IDLE_THREADS = 16, IDLE_MAX = 8192 };
static void *idle_blocks[IDLE_THREADS][IDLE_MAX];

static void *idle_worker(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    enum { MAX = IDLE_MAX };
    void **blocks = idle_blocks[seed - 1];
    size_t total = 0, n = 0;
    while (total < (3u << 20) && n < MAX) {
        size_t size = small_size(&seed);
        blocks[n] = malloc(size);
        CHECK(blocks[n] != NULL);
        memset(blocks[n], 1, size);
        total += size;
        n++;
    }
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    pthread_barrier_wait(&freed_barrier);
    park();
    return NULL;
}

/** Starts `threads` threads running `worker` (argument: 1, 2, …), which free what they
 *  allocated, wait on `freed_barrier` and park; then, while every thread sleeps, waits
 *  up to 3 s for the resident set to fall within `limit` MiB of where it started.
 *  Checks that the threads' blocks raised the resident set's peak by more than `least`
 *  MiB (else nothing was tested) and that it fell. (The resident set after the frees
 *  said it less well: on a loaded machine the first threads' frees were already given
 *  back when the last one reached the barrier.) */
static void expect_idle_rss_falls(int threads, void *(*worker)(void *), double least, double limit) {
    double start = rss_mib();
    pthread_t t[IDLE_THREADS];
    CHECK(threads <= IDLE_THREADS);
    pthread_barrier_init(&freed_barrier, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0);
    pthread_barrier_wait(&freed_barrier);
    double freed = rss_mib(), peak = peak_rss_mib();
    long waited = 0;
    double end = rss_fall_to(start + limit, 3000, &waited);
    unpark();
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    printf("rss MiB: start %.1f peak %.1f after frees %.1f after %ld ms %.1f\n", start, peak, freed, waited, end);
    CHECKF(peak - start > least, "the threads' blocks raised the resident set by only %.1f MiB: the test did not test",
           peak - start);
    CHECKF(end - start <= limit, "%.1f MiB still resident 3 s after %d sleeping threads freed everything",
           end - start, threads);
}

static void idle_threads(void) { expect_idle_rss_falls(IDLE_THREADS, idle_worker, 24, 17); }

/* ---- idle_wide_pages ---- */

enum { WIDE_THREADS = 8 };

/** Allocates 8 blocks of every class from 9 KiB to 128 KiB (pages of 2 … 16 slices),
 *  writes them, frees them, and sleeps. */
static void *wide_worker(void *arg) {
    (void)arg;
    enum { CLASSES = 32, EACH = 8 };
    void *blocks[CLASSES * EACH];
    size_t n = 0;
    for (size_t size = 9216; size <= 131072; size += size < 16384 ? 1024 : size < 32768 ? 2048 : size < 65536 ? 4096 : 8192) {
        for (int k = 0; k < EACH; k++) {
            blocks[n] = malloc(size);
            CHECK(blocks[n] != NULL);
            memset(blocks[n], 1, size);
            n++;
        }
    }
    CHECK(n == CLASSES * EACH);
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    pthread_barrier_wait(&freed_barrier);
    park();
    return NULL;
}

static void idle_wide_pages(void) { expect_idle_rss_falls(WIDE_THREADS, wide_worker, 64, 40); }

/* ---- remote_batch_idle ---- */

enum { POOL = 32, PER_THREAD = 8, BIG = 120 * 1024 };
static void *big_blocks[POOL * PER_THREAD];

static void *pool_worker(void *arg) {
    size_t k = (size_t)(uintptr_t)arg;
    for (size_t i = 0; i < PER_THREAD; i++) free(big_blocks[k * PER_THREAD + i]);
    pthread_barrier_wait(&freed_barrier);
    park();
    return NULL;
}

static void remote_batch_idle(void) {
    for (size_t i = 0; i < POOL * PER_THREAD; i++) {
        big_blocks[i] = malloc(BIG);
        CHECK(big_blocks[i] != NULL);
        memset(big_blocks[i], 2, BIG);
    }
    pthread_t t[POOL];
    pthread_barrier_init(&freed_barrier, NULL, POOL + 1);
    for (size_t i = 0; i < POOL; i++) CHECK(pthread_create(&t[i], NULL, pool_worker, (void *)(uintptr_t)i) == 0);
    pthread_barrier_wait(&freed_barrier);
    double before = mapped_mib();
    for (size_t i = 0; i < POOL * PER_THREAD; i++) {
        big_blocks[i] = malloc(BIG);
        CHECK(big_blocks[i] != NULL);
    }
    double after = mapped_mib();
    unpark();
    for (size_t i = 0; i < POOL; i++) pthread_join(t[i], NULL);
    for (size_t i = 0; i < POOL * PER_THREAD; i++) free(big_blocks[i]);
    printf("mapped MiB: %.1f before allocating again, %.1f after\n", before, after);
    CHECKF(after - before < 8, "mapped %.1f MiB more to allocate what idle threads had freed", after - before);
}

/* ---- fork_child_reuse ---- */

enum { HOLDERS = 4, HOLD_BLOCKS = 16 * 1024, HOLD_SIZE = 1024 };
static void *held[HOLDERS][HOLD_BLOCKS];

static void *holder(void *arg) {
    size_t k = (size_t)(uintptr_t)arg;
    for (size_t i = 0; i < HOLD_BLOCKS; i++) {
        held[k][i] = malloc(HOLD_SIZE);
        CHECK(held[k][i] != NULL);
        memset(held[k][i], 3, HOLD_SIZE);
    }
    pthread_barrier_wait(&freed_barrier);
    park();
    return NULL;
}

/** Starts the holders (16 MiB each), forks, runs `child` in the child (its result is the
 *  child's exit status), then lets the holders go; fails with `failure` unless the child
 *  exited 0. */
static void fork_with_holders(int (*child)(void), const char *failure) {
    pthread_t t[HOLDERS];
    pthread_barrier_init(&freed_barrier, NULL, HOLDERS + 1);
    for (size_t i = 0; i < HOLDERS; i++) CHECK(pthread_create(&t[i], NULL, holder, (void *)(uintptr_t)i) == 0);
    pthread_barrier_wait(&freed_barrier);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int code = child();
        fflush(stdout);
        _exit(code);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    unpark();
    for (size_t i = 0; i < HOLDERS; i++) pthread_join(t[i], NULL);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s (status %#x)", failure, status);
}

/** Frees the holders' blocks. */
static void free_held(void) {
    for (size_t k = 0; k < HOLDERS; k++)
        for (size_t i = 0; i < HOLD_BLOCKS; i++) free(held[k][i]);
}

/** fork_child_reuse's child: frees the 64 MiB and allocates as much again. */
static int reuse_child(void) {
    free_held();
    double before = mapped_mib(), rss_before = rss_mib();
    for (size_t k = 0; k < HOLDERS; k++)
        for (size_t i = 0; i < HOLD_BLOCKS; i++) {
            held[k][i] = malloc(HOLD_SIZE);
            if (!held[k][i]) return 3;
            memset(held[k][i], 4, HOLD_SIZE);
        }
    double after = mapped_mib(), rss_after = rss_mib();
    printf("child mapped MiB: %.1f after freeing 64 MiB, %.1f after allocating it again; "
           "resident %.1f, then %.1f\n", before, after, rss_before, rss_after);
    return after - before >= 32 ? 4 : rss_after - rss_before >= 2 ? 5 : 0;
}

static void fork_child_reuse(void) {
    fork_with_holders(reuse_child, "the fork child did not reuse the memory its parent's other threads held");
}

/* ---- the purger's lifecycle ---- */

static void purger_absent(void) {
    for (int round = 0; round < 10; round++) {
        void *blocks[1024];
        for (int i = 0; i < 1024; i++) blocks[i] = malloc(1024);
        for (int i = 0; i < 1024; i++) free(blocks[i]);
    }
    sleep_ms(50);
    CHECKF(thread_count("swm-purger", NULL) == 1, "a small program got a second thread");
}

/** Allocates `n` (at most 65,536) blocks of `size` bytes, writes them, frees them all. */
static void churn_blocks(int n, size_t size) {
    static void *blocks[65536];
    CHECK(n <= 65536);
    for (int i = 0; i < n; i++) {
        CHECK((blocks[i] = malloc(size)) != NULL);
        memset(blocks[i], 5, size);
    }
    for (int i = 0; i < n; i++) free(blocks[i]);
}

/** Allocates and frees 64 MiB of 1 KiB blocks; returns the RSS (MiB) just after the frees. */
static double churn_64_mib(void) {
    churn_blocks(64 * 1024, 1024);
    return rss_mib();
}

/** Allocates and frees 64 MiB of 1 KiB blocks, which start the purger, and checks that it
 *  runs (the case tests nothing otherwise). */
static void churn_until_purger(void) {
    churn_64_mib();
    int found = 0;
    thread_count("swm-purger", &found);
    CHECKF(found, "no purger after 64 MiB were freed: nothing was tested");
}

/** The purger exists, gives `freed_rss` back within 600 ms and then sleeps. */
static void expect_purger_returns(double start, double freed_rss, const char *who) {
    int found = 0;
    thread_count("swm-purger", &found);
    CHECKF(found, "%s: no swm-purger thread after 64 MiB were freed", who);
    long waited = 0;
    double end = rss_fall_to(start + 8, 3000, &waited);
    printf("%s: rss MiB start %.1f after frees %.1f after %ld ms %.1f\n", who, start, freed_rss, waited, end);
    fflush(stdout);
    CHECKF(freed_rss - start > 48, "%s: only %.1f MiB resident after the frees: the test did not test", who,
           freed_rss - start);
    CHECKF(end - start <= 8, "%s: %.1f MiB still resident 3 s after the frees", who, end - start);
    uint64_t before = purger_wakeups();
    sleep_ms(1000);
    uint64_t wakeups = purger_wakeups() - before;
    CHECKF(wakeups <= 2, "%s: the purger woke %llu times in an idle second", who, (unsigned long long)wakeups);
}

/** Forks a child that frees 64 MiB and expects a purger of its own to give them back
 *  (`who` names it in messages; with `alone`, the child is checked to start as the only
 *  thread of its process, without a purger); waits for it and checks that it passed. */
static void fork_child_purger_returns(const char *who, int alone) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int found = 0;
        if (alone) CHECK(thread_count("swm-purger", &found) == 1 && !found);
        double start = rss_mib();
        double freed = churn_64_mib();
        expect_purger_returns(start, freed, who);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s failed (status %#x)", who, status);
}

static void purger_lifecycle(void) {
    double start = rss_mib();
    CHECK(thread_count("swm-purger", NULL) == 1);
    double freed = churn_64_mib();
    expect_purger_returns(start, freed, "parent");
    fork_child_purger_returns("fork child", 1);
}

static void purger_off(void) {
    churn_64_mib();
    void *p = malloc(100);
    free(p);
    sleep_ms(50);
    int found = 0;
    CHECKF(thread_count("swm-purger", &found) == 1 && !found, "background=0 started a thread");
    CHECK(purger_wakeups() == 0);
}

static void huge_cache_reuse(void) {
    static const size_t mib[] = {60, 5, 40, 3, 20, 64, 9, 33, 7, 50};
    void *live[4] = {0};
    size_t sizes[4] = {0};
    for (int round = 0; round < 40; round++) {
        int k = round % 4;
        free(live[k]);
        size_t size = mib[round % 10] << 20;
        sizes[k] = size;
        unsigned char *p = round % 3 == 0 ? calloc(1, size) : malloc(size);
        CHECK(p != NULL);
        CHECKF(malloc_usable_size(p) >= size, "usable %zu < %zu", malloc_usable_size(p), size);
        if (round % 3 == 0)
            for (size_t i = 0; i < size; i += 4096) CHECKF(p[i] == 0, "calloc'd reused block not zero at %zu", i);
        memset(p, round + 1, size);
        live[k] = p;
        for (int j = 0; j < 4; j++) {
            unsigned char *q = live[j];
            if (q && j != k) CHECKF(q[0] != 0 && q[sizes[j] / 2] == q[0] && q[sizes[j] - 1] == q[0], "block %d changed", j);
        }
    }
    for (int k = 0; k < 4; k++) free(live[k]);
    swm_stats_t st;
    CHECK(stats_get(&st) == 0);
    CHECKF(st.huge_blocks == 0, "%zu huge blocks live after freeing all", st.huge_blocks);
    struct mallinfo2 m = mallinfo2();
    CHECKF(m.hblkhd == 0 && m.hblks == 0, "mallinfo2: hblks %zu hblkhd %zu after freeing all", m.hblks, m.hblkhd);
}

/* ---- memory freed before every thread sleeps ---- */

/** Waits up to 3 s for the resident set to fall to `limit` MiB; fails naming `what`. */
static void expect_rss_falls(double limit, const char *what) {
    long waited = 0;
    double rss = rss_fall_to(limit, 3000, &waited);
    CHECKF(rss <= limit, "%s: resident %.1f MiB after %ld ms, limit %.1f MiB", what, rss, waited, limit);
}

/** Allocates `mib` MiB in one block and touches it. */
static unsigned char *touched_block(size_t mib) {
    unsigned char *p = malloc(mib << 20);
    CHECK(p != NULL);
    memset(p, 7, mib << 20);
    return p;
}

static void big_freed_then_sleep(void) {
    double start = rss_mib();
    unsigned char *keep = touched_block(40);
    free(touched_block(48));
    expect_rss_falls(start + 40 + 8, "a freed 48 MiB block, a 40 MiB one kept");
    free(keep);
}

static void realloc_chain_then_sleep(void) {
    double start = rss_mib();
    unsigned char *p = NULL;
    size_t size = 16;
    while (size < ((size_t)40 << 20)) {
        size_t grown = size + size / 2;
        p = realloc(p, grown);
        CHECK(p != NULL);
        memset(p + size, 8, grown - size);
        size = grown;
    }
    free(p);
    expect_rss_falls(start + 8, "a buffer grown by realloc to 40 MiB, freed");
}

/** malloc_trim gives back the OS pages inside free blocks of pages that keep live ones
 *  (an outside review: 256 MB of 32 KiB blocks, one in eight kept, stayed resident at 8×
 *  the live bytes through malloc_trim; glibc came to 1.13×), the calling thread's and
 *  those of threads that exited; and for a thread that exited the purger does after the
 *  purge delay, every thread asleep (`sparse_survivors_exited_asleep`; review R110: 144
 *  MB stayed for good where a trim left 35). The blocks kept keep their bytes, and the
 *  freed ones come back usable, calloc's zeroed. */
enum { TS_N = 2048, TS_SIZE = 32 * 1024, TS_KEEP = 8 };
static unsigned char *ts_blocks[TS_N];

/** Allocates the blocks, written, and frees all but one in TS_KEEP. */
static void *ts_fill(void *arg) {
    for (int i = 0; i < TS_N; i++) {
        ts_blocks[i] = malloc(TS_SIZE);
        CHECK(ts_blocks[i] != NULL);
        memset(ts_blocks[i], (unsigned char)i, TS_SIZE);
    }
    for (int i = 0; i < TS_N; i++) if (i % TS_KEEP != 0) { free(ts_blocks[i]); ts_blocks[i] = NULL; }
    return arg;
}

/** `in_thread`: the blocks are allocated and freed by a thread that then exits; `trim`:
 *  malloc_trim(0) gives the memory back, else the purger must, with every thread asleep. */
static void trim_sparse(int in_thread, int trim) {
    if (in_thread) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, ts_fill, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    } else {
        ts_fill(NULL);
    }
    double before = rss_mib();
    double after;
    if (trim) {
        malloc_trim(0);
        after = rss_mib();
    } else {
        long waited = 0;
        after = rss_fall_to(before - 41, 3000, &waited);
        printf("rss MiB %.1f, %ld ms later %.1f\n", before, waited, after);
    }
    /* 56 MiB freed, 7/8 of it inside the blocks past their first OS page. */
    CHECKF(after < before - 40, "%s with one 32 KiB block in %d kept%s: resident %.1f -> %.1f MiB",
           trim ? "malloc_trim" : "3 s asleep", TS_KEEP, in_thread ? " by an exited thread" : "", before, after);
    for (int i = 0; i < TS_N; i += TS_KEEP)
        for (int at = 0; at < TS_SIZE; at += 512)
            CHECKF(ts_blocks[i][at] == (unsigned char)i, "kept block %d byte %d is %d", i, at, ts_blocks[i][at]);
    for (int i = 0; i < TS_N; i++) {
        if (i % TS_KEEP == 0) continue;
        ts_blocks[i] = (i & 1) ? calloc(1, TS_SIZE) : malloc(TS_SIZE);
        CHECK(ts_blocks[i] != NULL);
        if (i & 1)
            for (int at = 0; at < TS_SIZE; at += 64) CHECKF(ts_blocks[i][at] == 0, "calloc'd block byte %d is %d", at, ts_blocks[i][at]);
        memset(ts_blocks[i], 3, TS_SIZE);
    }
    for (int i = 0; i < TS_N; i++) free(ts_blocks[i]);
}

/** Allocates the blocks, written, and frees one in TS_KEEP (the first of each group). */
static void *ts_fill_keep_most(void *arg) {
    for (int i = 0; i < TS_N; i++) {
        ts_blocks[i] = malloc(TS_SIZE);
        CHECK(ts_blocks[i] != NULL);
        memset(ts_blocks[i], (unsigned char)i, TS_SIZE);
    }
    for (int i = 0; i < TS_N; i += TS_KEEP) { free(ts_blocks[i]); ts_blocks[i] = NULL; }
    return arg;
}

/** An exited thread's pages, purged once (it freed one block in TS_KEEP), then another
 *  thread frees six in TS_KEEP into them: they go back too (review R113: the purger took
 *  the page's free list for the one it had purged, as the collect appended the frees
 *  behind its first block, and 42 MB stayed). */
static void sparse_survivors_exited_freed_later(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, ts_fill_keep_most, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    sleep_ms(1000);
    for (int i = 0; i < TS_N; i++) {
        if (i % TS_KEEP == 0 || i % TS_KEEP == 1) continue;
        free(ts_blocks[i]);
        ts_blocks[i] = NULL;
    }
    double before = rss_mib();
    long waited = 0;
    double after = rss_fall_to(before - 30, 3000, &waited);
    printf("rss MiB %.1f, %ld ms later %.1f\n", before, waited, after);
    CHECKF(after < before - 30, "48 MiB freed into an exited thread's pages purged before: resident %.1f -> %.1f MiB "
           "after 3 s", before, after);
    for (int i = 1; i < TS_N; i += TS_KEEP) free(ts_blocks[i]);
}

static void trim_sparse_survivors(void) { trim_sparse(0, 1); }
static void trim_sparse_survivors_exited(void) { trim_sparse(1, 1); }
static void sparse_survivors_exited_asleep(void) { trim_sparse(1, 0); }

static void small_freed_then_sleep(void) {
    enum { N = 20 * 1024 };
    static void *blocks[N];
    double start = rss_mib();
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(1000);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 9, 1000);
    }
    for (int i = 0; i < N; i++) free(blocks[i]);
    expect_rss_falls(start + 8, "20 MiB of 1,000-byte blocks, freed");
}

/** fork_child_sleeps' child: frees the 64 MiB, allocates once, waits for its RSS to fall. */
static int sleeping_child(void) {
    double before = rss_mib();
    free_held();
    void *volatile p = malloc(100000);
    free(p);
    long waited = 0;
    double after = rss_fall_to(before - 48, 3000, &waited);
    printf("child resident MiB: %.1f before freeing its parent's 64 MiB, %.1f %ld ms after\n", before, after,
           waited);
    return after <= before - 48 ? 0 : 4;
}

static void fork_child_sleeps(void) {
    fork_with_holders(sleeping_child, "the fork child kept what it freed of its parent's threads' memory");
}

enum { HANDED_SMALL = 2048, HANDED_LARGE = 128 };
static void *handed[HANDED_SMALL + HANDED_LARGE];
static pthread_barrier_t handed_barrier;

/** Allocates the blocks the main thread frees, then sleeps until released. */
static void *producer(void *arg) {
    (void)arg;
    for (int i = 0; i < HANDED_SMALL + HANDED_LARGE; i++) {
        size_t size = i < HANDED_SMALL ? 16 * 1024 : 256 * 1024;
        handed[i] = malloc(size);
        CHECK(handed[i] != NULL);
        memset(handed[i], 10, size);
    }
    pthread_barrier_wait(&handed_barrier);
    park();
    return NULL;
}

static void remote_owner_sleeps(void) {
    double start = rss_mib();
    pthread_t t;
    pthread_barrier_init(&handed_barrier, NULL, 2);
    CHECK(pthread_create(&t, NULL, producer, NULL) == 0);
    pthread_barrier_wait(&handed_barrier);
    for (int i = 0; i < HANDED_SMALL + HANDED_LARGE; i++) free(handed[i]);
    expect_rss_falls(start + 8, "64 MiB freed by another thread than their sleeping owner");
    unpark();
    pthread_join(t, NULL);
}

/* ---- pool_idle ---- */

enum { POOL_THREADS = 8, POOL_SLOTS = 4096, POOL_OPS = 40000 };
static void *_Atomic pool_table[POOL_SLOTS];
static pthread_barrier_t pool_barrier;

/** Replaces random slots of the shared table (writing each block), first with 9 … 64
 *  KiB blocks, then (once every thread is done with those) with 16 … 128-byte ones;
 *  then sleeps until released. */
static void *pool_replacer(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 7919u + 1;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < POOL_OPS; i++) {
            size_t size = round == 0 ? 9216 + (size_t)rand_r(&seed) % (56 * 1024) : 16 + (size_t)rand_r(&seed) % 113;
            void *p = malloc(size);
            CHECK(p != NULL);
            memset(p, 1, size);
            free(atomic_exchange(&pool_table[(size_t)rand_r(&seed) % POOL_SLOTS], p));
        }
        pthread_barrier_wait(&pool_barrier);
    }
    park();
    return NULL;
}

static void pool_idle(void) {
    double start = rss_mib();
    pthread_t t[POOL_THREADS];
    pthread_barrier_init(&pool_barrier, NULL, POOL_THREADS + 1);
    for (int i = 0; i < POOL_THREADS; i++) CHECK(pthread_create(&t[i], NULL, pool_replacer, (void *)(uintptr_t)i) == 0);
    pthread_barrier_wait(&pool_barrier);
    pthread_barrier_wait(&pool_barrier);
    double busy = rss_mib();
    long waited = 0;
    double end = rss_fall_to(start + 40, 3000, &waited);
    printf("rss MiB: start %.1f after the rounds %.1f after %ld ms %.1f\n", start, busy, waited, end);
    CHECKF(busy - start > 100, "the rounds left only %.1f MiB resident: the test did not test", busy - start);
    CHECKF(end - start <= 40, "%.1f MiB still resident 3 s after 8 threads that freed each other's blocks went to sleep",
           end - start);
    unpark();
    for (int i = 0; i < POOL_THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < POOL_SLOTS; i++) free(pool_table[i]);
}

/* ---- trickle_to_sleeping_owner, trim_sleeping_owner_frees ---- */

static char **owned;
static long owned_count;
static size_t owned_size;
static pthread_barrier_t owned_barrier;

/** Allocates and writes `owned_count` blocks of `owned_size` bytes, frees every 8th one
 *  (with `arg` non-NULL), and sleeps until released. */
static void *sleeping_owner(void *arg) {
    for (long i = 0; i < owned_count; i++) {
        owned[i] = malloc(owned_size);
        CHECK(owned[i] != NULL);
        memset(owned[i], 7, owned_size);
    }
    if (arg != NULL) {
        for (long i = 0; i < owned_count; i += 8) free(owned[i]);
    }
    pthread_barrier_wait(&owned_barrier);
    park();
    return NULL;
}

/** Frees the owned blocks whose index modulo 8 is in [from, to]. */
struct free_range { long from, to; };
static void *free_owned(void *arg) {
    const struct free_range *r = arg;
    for (long i = 0; i < owned_count; i++) {
        if (i % 8 >= r->from && i % 8 <= r->to) free(owned[i]);
    }
    return NULL;
}

static void run_freer(long from, long to) {
    struct free_range r = {from, to};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_owned, &r) == 0);
    pthread_join(t, NULL);
}

static void start_sleeping_owner(pthread_t *t, long count, size_t size, int frees_some) {
    owned_count = count;
    owned_size = size;
    owned = malloc((size_t)count * sizeof *owned);
    CHECK(owned != NULL);
    pthread_barrier_init(&owned_barrier, NULL, 2);
    CHECK(pthread_create(t, NULL, sleeping_owner, frees_some ? (void *)1 : NULL) == 0);
    pthread_barrier_wait(&owned_barrier);
}

static void trickle_to_sleeping_owner(void) {
    double start = rss_mib();
    pthread_t t;
    start_sleeping_owner(&t, 32768, 2048, 1);
    run_freer(1, 1);
    sleep_ms(400);
    run_freer(2, 7);
    expect_rss_falls(start + 8, "64 MiB other threads freed into a sleeping owner's pages, the last of them 400 ms after the first");
    unpark();
    pthread_join(t, NULL);
    free(owned);
}

/** malloc_trim(0) now (`which` names it in the output): the MiB the resident set fell by. */
static double trim_gain(const char *which) {
    double before = rss_mib();
    malloc_trim(0);
    double after = rss_mib();
    printf("rss MiB: before %s %.1f after %.1f\n", which, before, after);
    return before - after;
}

static void trim_sleeping_owner_frees(void) {
    pthread_t t;
    start_sleeping_owner(&t, 8192, 16384, 0);
    run_freer(0, 0);
    run_freer(2, 2);
    run_freer(4, 4);
    run_freer(6, 6);
    double gain = trim_gain("malloc_trim");
    CHECKF(gain >= 40, "malloc_trim gave back %.1f MiB of the 64 MiB other threads freed into a sleeping owner's pages", gain);
    unpark();
    pthread_join(t, NULL);
    for (long i = 1; i < owned_count; i += 2) free(owned[i]);
    free(owned);
}

static void trim_right_after_trim(void) {
    pthread_t t;
    start_sleeping_owner(&t, 8192, 16384, 0);
    malloc_trim(0);
    run_freer(0, 7);
    double gain = trim_gain("the second malloc_trim");
    CHECKF(gain >= 100, "malloc_trim right after another gave back %.1f MiB of the 128 MiB another thread freed into a sleeping owner's pages",
           gain);
    unpark();
    pthread_join(t, NULL);
    free(owned);
}

/* ---- locked_then_trimmed ---- */

static sem_t locked_done, locked_quit;
static void *locked_blocks[256];

/** Allocates 256 blocks of 192 KiB, frees every other one (while memory is locked: the
 *  purges are refused) and waits. */
static void *locked_worker(void *arg) {
    for (int i = 0; i < 256; i++) {
        CHECK((locked_blocks[i] = malloc(192 << 10)) != NULL);
        memset(locked_blocks[i], 1, 192 << 10);
    }
    for (int i = 0; i < 256; i += 2) free(locked_blocks[i]);
    sem_post(&locked_done);
    sem_wait(&locked_quit);
    for (int i = 1; i < 256; i += 2) free(locked_blocks[i]);
    return arg;
}

static void locked_then_trimmed(void) {
    CHECK(sem_init(&locked_done, 0, 0) == 0 && sem_init(&locked_quit, 0, 0) == 0);
    CHECKF(mlockall(MCL_CURRENT | MCL_FUTURE) == 0, "mlockall: errno %d", errno);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, locked_worker, NULL) == 0);
    sem_wait(&locked_done);
    sleep_ms(600);   /* longer than the purge delay: passes find the refused spans */
    CHECK(munlockall() == 0);
    double gain = trim_gain("malloc_trim after munlockall");
    CHECKF(gain >= 16, "malloc_trim gave back %.1f MiB of the 24 MiB another thread freed while memory was locked", gain);
    sem_post(&locked_quit);
    CHECK(pthread_join(t, NULL) == 0);
}

/* ---- trim_after_purger_walk ---- */

static atomic_int owner_step;

/** Allocates and writes `owned_count` blocks of `owned_size` bytes (step 1), frees every
 *  16th one when told (step 2 → 3), and ends when told (step 4). */
static void *stepping_owner(void *arg) {
    for (long i = 0; i < owned_count; i++) {
        CHECK((owned[i] = malloc(owned_size)) != NULL);
        memset(owned[i], 7, owned_size);
    }
    atomic_store(&owner_step, 1);
    while (atomic_load(&owner_step) != 2) sleep_ms(1);
    for (long i = 15; i < owned_count; i += 16) free(owned[i]);
    atomic_store(&owner_step, 3);
    while (atomic_load(&owner_step) != 4) sleep_ms(1);
    return arg;
}

/** Frees every owned block but every 16th. */
static void *free_all_but_sixteenths(void *arg) {
    for (long i = 0; i < owned_count; i++) {
        if (i % 16 != 15) free(owned[i]);
    }
    return arg;
}

/** Starts a stepping owner of `count` 4 KiB blocks and has another thread free all of
 *  them but every 16th; returns the owner. */
static pthread_t owner_freed_by_others(long count) {
    owned_count = count;
    owned_size = 4096;
    CHECK((owned = malloc((size_t)owned_count * sizeof *owned)) != NULL);
    pthread_t owner, freer;
    CHECK(pthread_create(&owner, NULL, stepping_owner, NULL) == 0);
    while (atomic_load(&owner_step) != 1) sleep_ms(1);
    CHECK(pthread_create(&freer, NULL, free_all_but_sixteenths, NULL) == 0);
    CHECK(pthread_join(freer, NULL) == 0);
    return owner;
}

/** The owner frees its 16ths, a malloc_trim(0) at once (`which` names it), the owner
 *  ends; returns the MiB the trim gave back. */
static double owner_frees_then_trim(pthread_t owner, const char *which) {
    atomic_store(&owner_step, 2);
    while (atomic_load(&owner_step) != 3) sched_yield();
    double gain = trim_gain(which);
    atomic_store(&owner_step, 4);
    CHECK(pthread_join(owner, NULL) == 0);
    free(owned);
    return gain;
}

static void trim_after_purger_walk(void) {
    pthread_t owner = owner_freed_by_others(16384);
    /* The purger's next pass walks the page lists for the frees noted last. */
    uint64_t wakeups = purger_wakeups();
    for (int i = 0; i < 2000 && purger_wakeups() == wakeups; i++) sleep_ms(1);
    sleep_ms(1);
    double gain = owner_frees_then_trim(owner, "malloc_trim right after the purger's walk");
    CHECKF(gain >= 48, "malloc_trim gave back %.1f MiB of the 64 MiB freed (the owner's own frees last)", gain);
}

static void owner_last_after_purger_walk(void) {
    double start = rss_mib();
    pthread_t owner = owner_freed_by_others(16384);
    uint64_t wakeups = purger_wakeups();
    for (int i = 0; i < 2000 && purger_wakeups() == wakeups; i++) sleep_ms(1);
    sleep_ms(1);
    atomic_store(&owner_step, 2);
    while (atomic_load(&owner_step) != 3) sched_yield();
    long waited = 0;
    double rss = rss_fall_to(start + 16, 3000, &waited);
    printf("rss MiB at start %.1f, %ld ms after the owner's frees %.1f\n", start, waited, rss);
    CHECKF(rss <= start + 16, "64 MiB of 4 KiB blocks, all but every 16th freed by another thread, the owner's 16ths "
           "freed after the purger's walk, then every thread asleep: %.1f MiB resident after 3 s (start %.1f)", rss, start);
    atomic_store(&owner_step, 4);
    CHECK(pthread_join(owner, NULL) == 0);
    free(owned);
}

static void trim_twice_before_purger(void) {
    pthread_t owner = owner_freed_by_others(4096);
    int purger = 0;
    thread_count("swm-purger", &purger);
    CHECKF(!purger, "the purger runs: the case does not test a process without one");
    trim_gain("the first malloc_trim");
    double gain = owner_frees_then_trim(owner, "the second malloc_trim");
    CHECKF(gain >= 12, "malloc_trim gave back %.1f MiB of the 16 MiB freed (the owner's own frees last), no purger running", gain);
}

static void huge_shrink(void) {
    double start = rss_mib();
    unsigned char *p = touched_block(64);
    p = realloc(p, (size_t)33 << 20);
    CHECK(p != NULL && p[0] == 7 && p[((size_t)33 << 20) - 1] == 7);
    double rss = rss_mib();
    CHECKF(rss <= start + 33 + 6, "a 64 MiB block shrunk to 33 MiB: resident %.1f MiB (start %.1f)", rss, start);
    free(p);
}


/** Share of the pages of [p, p + size) resident now (mincore; the allocator is not called). */
static double resident_share(void *p, size_t size) {
    static unsigned char vec[1 << 16];
    uintptr_t start = (uintptr_t)p & ~(uintptr_t)4095, end = ((uintptr_t)p + size + 4095) & ~(uintptr_t)4095;
    size_t pages = (end - start) / 4096;
    CHECK(pages <= sizeof vec);
    CHECK(mincore((void *)start, end - start, vec) == 0);
    size_t resident = 0;
    for (size_t i = 0; i < pages; i++) resident += vec[i] & 1;
    return (double)resident / (double)pages;
}

static void huge_cache_refill(void) {
    /* The cache holds 16 MiB until the purger runs: start it, and wait for it. */
    free(touched_block(48));
    int found = 0;
    for (int waited = 0; waited < 3000 && !found; waited += 50) {
        thread_count("swm-purger", &found);
        if (!found) sleep_ms(50);
    }
    CHECKF(found, "no swm-purger thread after a 48 MiB block was freed");

    free(touched_block(100));
    size_t size = (size_t)100 << 20;
    unsigned char *p = malloc(size);
    CHECK(p != NULL);
    double share = resident_share(p, size);
    CHECKF(share >= 0.95, "a 100 MiB block freed and asked for again: %.0f%% of it resident (fresh pages)",
           share * 100);
    for (size_t i = 0; i < size; i += 4096) p[i] = (unsigned char)(i >> 12);
    size_t grown = (size_t)120 << 20;
    p = realloc(p, grown);
    CHECK(p != NULL);
    for (size_t i = 0; i < size; i += 4096) CHECKF(p[i] == (unsigned char)(i >> 12), "realloc lost byte %zu", i);
    free(p);

    unsigned char *eight[8];
    for (int i = 0; i < 8; i++) eight[i] = touched_block(20);
    double start = mapped_mib();
    for (int i = 0; i < 8; i++) free(eight[i]);
    for (int i = 0; i < 8; i++) {
        CHECK(posix_memalign((void **)&eight[i], (size_t)4 << 20, (size_t)20 << 20) == 0);
        memset(eight[i], 5, (size_t)20 << 20);
    }
    double mapped = mapped_mib();
    CHECKF(mapped <= start + 64 + 16, "eight 20 MiB blocks freed, eight 4 MiB-aligned ones allocated: mapped %.0f MiB,"
           " %.0f MiB before the frees", mapped, start);
    for (int i = 0; i < 8; i++) free(eight[i]);

    unsigned char *old = touched_block(20);
    memset(old, 0xAA, (size_t)20 << 20);
    free(old);
    unsigned char *z = calloc(1, (size_t)9 << 20);
    CHECK(z != NULL);
    size_t usable = malloc_usable_size(z);
    for (size_t i = 0; i < usable; i++)
        if (z[i] != 0) CHECKF(0, "calloc of 9 MiB: byte %zu of %zu usable is %#x", i, usable, z[i]);
    free(z);
}

static void huge_cut_cycles(void) {
    double start = rss_mib();
    free(touched_block(128));
    double rss = rss_mib();
    for (int waited = 0; waited < 3000 && rss > start + 32; waited += 20) {
        unsigned char *p = malloc((size_t)3 << 20);
        CHECK(p != NULL);
        memset(p, 9, (size_t)3 << 20);
        free(p);
        sleep_ms(20);
        rss = rss_mib();
    }
    CHECKF(rss <= start + 32, "a freed 128 MiB block, 3 MiB blocks cut from it every 20 ms: resident %.0f MiB after 3 s "
           "(start %.0f)", rss, start);
}

static void map_count_frees(void) {
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    CHECK(f != NULL);
    int limit = 0;
    CHECK(fscanf(f, "%d", &limit) == 1);
    fclose(f);
    int used = 0;
    f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    for (int c; (c = fgetc(f)) != EOF;) used += c == '\n';
    fclose(f);
    int fill = limit - used - 8;
    CHECK(fill > 0);
    char *region = mmap(NULL, ((size_t)fill + 1) * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(region != MAP_FAILED);
    for (int i = 0; i < fill; i += 2) CHECK(mprotect(region + (size_t)i * 4096, 4096, PROT_READ) == 0);
    int (*collect)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "swm_collect");
    CHECK(collect != NULL);
    double start = rss_mib();
    enum { N = 16 };
    const size_t size = (size_t)22 << 20;
    for (int round = 0; round < 3; round++) {
        void *p[N];
        for (int i = 0; i < N; i++) {
            p[i] = calloc(1, size);
            if (p[i]) memset(p[i], 1, size);
        }
        for (int i = 1; i < N; i += 2) free(p[i]);
        for (int i = 0; i < N; i += 2) free(p[i]);
        collect();
    }
    double rss = rss_mib();
    munmap(region, ((size_t)fill + 1) * 4096);
    CHECKF(rss <= start + 32, "16 blocks of 22 MiB freed at vm.max_map_count: resident %.0f MiB (start %.0f)", rss, start);
}

static void vfork_child_purger(void) {
    int found = 0;
    thread_count("swm-purger", &found);
    CHECKF(!found, "the purger runs before the test");
    double start = rss_mib();
    pid_t pid = vfork();
    CHECK(pid >= 0);
    if (pid == 0) {
        void *big = malloc((size_t)40 << 20);   /* past the 32 MiB that start the purger */
        (void)big;
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    double freed = churn_64_mib();   /* the parent's own slow paths start the purger */
    expect_purger_returns(start, freed, "vfork parent");
}

/** Lifts the locked-memory limit (root may) and returns swm_collect. */
static size_t (*collect_for_locking(void))(void) {
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    setrlimit(RLIMIT_MEMLOCK, &unlimited);
    size_t (*collect)(void) = (size_t (*)(void))dlsym(RTLD_DEFAULT, "swm_collect");
    CHECK(collect != NULL);
    return collect;
}

/** locked_memory_resident: see the header. */
static void locked_memory_resident(void) {
    size_t (*collect)(void) = collect_for_locking();
    CHECKF(mlockall(MCL_CURRENT | MCL_FUTURE) == 0, "mlockall refused (run as root): nothing was tested");
    enum { N = 256 };
    const size_t size = 192 << 10;
    void *blocks[N];
    for (int i = 0; i < N; i++) {
        CHECK((blocks[i] = malloc(size)) != NULL);
        memset(blocks[i], 5, size);
    }
    swm_stats_t before, after;
    CHECK(stats_get(&before) == 0);
    double rss_before = rss_mib();
    for (int i = 0; i < N; i++) free(blocks[i]);
    collect();
    sleep_ms(600);
    collect();
    CHECK(stats_get(&after) == 0);
    double rss_fall = rss_before - rss_mib();
    double counted_fall = ((double)before.resident - (double)after.resident) / (1 << 20);
    printf("resident fell by %.1f MiB, counted %.1f MiB\n", rss_fall, counted_fall);
    CHECKF(rss_fall >= 4, "locked memory: the resident set fell by %.1f MiB: the empty segments kept "
           "it", rss_fall);
    CHECKF(counted_fall <= rss_fall + 3, "locked memory: swmalloc's resident count fell by %.1f MiB, the "
           "resident set by %.1f MiB", counted_fall, rss_fall);
    uint64_t wakeups = purger_wakeups();
    sleep_ms(1000);
    wakeups = purger_wakeups() - wakeups;
    CHECKF(wakeups <= 3, "the purger woke %lu times in 1 s for locked memory it cannot purge",
           (unsigned long)wakeups);
    CHECK(munlockall() == 0);
    double locked_rss = rss_mib();
    long waited = 0;
    double rss = rss_fall_to(locked_rss - 16, 6000, &waited);
    printf("after munlockall: %.1f -> %.1f MiB in %ld ms\n", locked_rss, rss, waited);
    CHECKF(rss <= locked_rss - 16, "after munlockall the freed memory stayed resident: %.1f -> %.1f MiB in 6 s",
           locked_rss, rss);
}

/** partly_locked_span: see the header. */
static void partly_locked_span(void) {
    size_t (*collect)(void) = collect_for_locking();
    enum { N = 6 };
    const size_t size = 1 << 20;
    char *blocks[N];
    for (int i = 0; i < N; i++) {
        CHECK((blocks[i] = malloc(size)) != NULL);
        memset(blocks[i], 5, size);
    }
    for (int i = 0; i < N; i++) {
        char *page = (char *)(((uintptr_t)blocks[i] + (64 << 10)) & ~(uintptr_t)4095);
        CHECKF(mlock(page, 4096) == 0, "mlock refused (run as root): nothing was tested");
    }
    double rss_before = rss_mib();
    for (int i = 0; i < N; i++) free(blocks[i]);
    collect();
    double fall = rss_before - rss_mib();
    printf("resident fell by %.2f MiB of %d MiB freed\n", fall, N);
    CHECKF(fall >= N - 1, "a locked page kept its free span: the resident set fell by %.2f MiB of %d MiB freed",
           fall, N);
}

/** purger_retries_start: see the header. */
static void purger_retries_start(void) {
    free(malloc(100));
    struct rlimit old, tight;
    CHECK(getrlimit(RLIMIT_AS, &old) == 0);
    tight = old;
    /* Room for the segments up to 32 MiB mapped, plus 6 MiB: less than the stack. */
    tight.rlim_cur = (rlim_t)statm_bytes(0) + ((rlim_t)(38 - mapped_mib()) << 20);
    CHECK(setrlimit(RLIMIT_AS, &tight) == 0);
    enum { N = 24 };
    void *blocks[N];
    for (int i = 0; i < N; i++) CHECK((blocks[i] = malloc(1 << 20)) != NULL);
    int found = 0;
    thread_count("swm-purger", &found);
    CHECK(setrlimit(RLIMIT_AS, &old) == 0);
    CHECKF(!found && mapped_mib() >= 32, "the purger started under the limit (%.0f MiB mapped): nothing was tested",
           mapped_mib());
    for (int i = 0; i < N; i++) free(blocks[i]);
    for (int t = 0; t < 60 && !found; t++) {
        sleep_ms(50);
        void *p = malloc(1 << 20);
        CHECK(p != NULL);
        free(p);
        thread_count("swm-purger", &found);
    }
    CHECKF(found, "no purger 3 s after its first start failed and the limit was lifted");
}

/** The case main runs (main_pthread_exit says ok itself: main does not return). */
static const char *running_case;

static void main_pthread_exit(void) {
    churn_until_purger();
    if (getenv("SWMALLOC_OPTIONS") && strstr(getenv("SWMALLOC_OPTIONS"), "stats_signal")) {
        int found = 0;
        thread_count("swm-reporter", &found);
        CHECKF(found, "no reporter thread with stats_signal: nothing was tested");
    }
    printf("ok %s\n", running_case);
    fflush(stdout);
    pthread_exit(NULL);
}

/** main_exit_fork_child: the RSS before the main thread's churn. */
static double fork_exit_start_rss;

/** After the main thread's pthread_exit: waits for the parent's purger to give back the
 *  64 MiB the main thread freed, forks a child that frees 64 MiB and expects its purger
 *  to give them back, then says ok and ends the process. */
static void *fork_after_main_exit(void *arg) {
    long waited = 0;
    double rss = rss_fall_to(fork_exit_start_rss + 8, 3000, &waited);
    CHECKF(rss - fork_exit_start_rss <= 8, "%.1f MiB still resident 3 s after the main thread freed 64 MiB and "
           "called pthread_exit (%.1f at the start)", rss, fork_exit_start_rss);
    /* Not `alone`: the child's first allocation (reading /proc) may start its purger. */
    fork_child_purger_returns("fork child after the main thread's pthread_exit", 0);
    printf("ok %s\n", running_case);
    fflush(stdout);
    exit(0);
    return arg;
}

static void main_exit_fork_child(void) {
    fork_exit_start_rss = rss_mib();
    churn_64_mib();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fork_after_main_exit, NULL) == 0);
    pthread_exit(NULL);
}

/** main_exit_after_remote_frees: the RSS before the owner allocated, and the flag the
 *  main thread raises just before its pthread_exit. */
static double exit_start_rss;
static atomic_int main_exiting;

/** Once the main thread is about to call pthread_exit: waits 1.5 s for the purger's last
 *  pass to give back the 64 MiB the main thread freed into the sleeping owner's pages,
 *  says ok and ends the process. */
static void *check_after_main_exit(void *arg) {
    while (!atomic_load(&main_exiting)) sleep_ms(1);
    sleep_ms(1500);
    double rss = rss_mib();
    CHECKF(rss - exit_start_rss <= 10, "%.1f MiB resident 1.5 s after the main thread freed 64 MiB of a sleeping "
           "thread's blocks and called pthread_exit (%.1f at the start)", rss, exit_start_rss);
    printf("ok %s\n", running_case);
    fflush(stdout);
    exit(0);
    return arg;
}

static void main_exit_after_remote_frees(void) {
    exit_start_rss = rss_mib();
    pthread_t owner, checker;
    start_sleeping_owner(&owner, 4096, 16384, 0);
    CHECK(pthread_create(&checker, NULL, check_after_main_exit, NULL) == 0);
    sleep_ms(400);
    for (long i = 0; i < owned_count; i++) free(owned[i]);
    sleep_ms(2);
    atomic_store(&main_exiting, 1);
    pthread_exit(NULL);
}

/** long_lived_among_short: the slots the threads swap blocks into, and the flag that
 *  stops the long-lived thread. */
static _Atomic(void *) shared_slots[512];
static atomic_int long_lived_stop;

/** Swaps `rounds` fresh blocks of 32 … 3,031 bytes into random shared slots, freeing the
 *  blocks they displace. */
static void swap_blocks(uint64_t seed, int rounds) {
    for (int i = 0; i < rounds; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = 32 + (size_t)(seed >> 33) % 3000;
        char *p = malloc(n);
        CHECK(p != NULL);
        memset(p, 1, n);
        free(atomic_exchange(&shared_slots[(seed >> 20) % 512], p));
    }
}

static void *short_lived(void *arg) {
    swap_blocks((uint64_t)(uintptr_t)arg, 400);
    return NULL;
}

static void *long_lived(void *arg) {
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    while (!atomic_load(&long_lived_stop)) swap_blocks(seed++, 400);
    return NULL;
}

static void long_lived_among_short(void) {
    pthread_t keeper;
    CHECK(pthread_create(&keeper, NULL, long_lived, (void *)12345) == 0);
    time_t start = time(NULL);
    size_t most = 0;
    for (uintptr_t id = 1; time(NULL) - start < 3; id++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, short_lived, (void *)id) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        swm_stats_t st;
        CHECK(stats_get(&st) == 0);
        if (st.active > most) most = st.active;
        CHECKF(st.active < (size_t)48 << 20, "after %lu short-lived threads: %zu bytes active, %zu allocated",
               (unsigned long)id, st.active, st.allocated);
    }
    atomic_store(&long_lived_stop, 1);
    CHECK(pthread_join(keeper, NULL) == 0);
    for (int i = 0; i < 512; i++) free(atomic_exchange(&shared_slots[i], NULL));
    printf("most active: %zu MiB\n", most >> 20);
}

/** thread_churn_resident: threads started one after another, each touching 31 size
 *  classes, in a process too small for a purger. What each one frees stays resident for
 *  the next: before, every exit without a purger purged its pages at once, and each new
 *  thread faulted the same 2 MiB in again (32 `madvise` calls a thread). */
static void *churn_worker(void *arg) {
    void *blocks[64];
    for (int i = 0; i < 64; i++) {
        blocks[i] = malloc(16 + (size_t)i * 24);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 7, 16 + (size_t)i * 24);
    }
    for (int i = 0; i < 64; i++) free(blocks[i]);
    return arg;
}

/** Allocates one block of every size class (swm_class_size) and writes its first 64
 *  bytes (or all of it), then frees them all: every class above 8 KiB has pages of
 *  several slices. */
static void *wide_churn_worker(void *arg) {
    unsigned (*class_count)(void) = (unsigned (*)(void))dlsym(RTLD_DEFAULT, "swm_class_count");
    size_t (*class_size)(unsigned) = (size_t (*)(unsigned))dlsym(RTLD_DEFAULT, "swm_class_size");
    CHECK(class_count && class_size && class_count() <= 128);
    void *blocks[128];
    unsigned n = class_count();
    for (unsigned c = 0; c < n; c++) {
        size_t size = class_size(c);
        CHECK((blocks[c] = malloc(size)) != NULL);
        memset(blocks[c], 8, size < 64 ? size : 64);
    }
    for (unsigned c = 0; c < n; c++) free(blocks[c]);
    return arg;
}

/** Runs 300 threads of `worker` one after another; returns the page faults meanwhile. */
static long churn_threads(void *(*worker)(void *)) {
    struct rusage usage;
    CHECK(getrusage(RUSAGE_SELF, &usage) == 0);
    long faults = usage.ru_minflt;
    for (int i = 0; i < 300; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    CHECK(getrusage(RUSAGE_SELF, &usage) == 0);
    return usage.ru_minflt - faults;
}

/** thread_churn_wide_classes: as thread_churn_resident, with one block of every class
 *  up to 128 KiB: each thread keeps an empty page of each class, up to 1 MiB of span for
 *  a few KiB touched, and its exit must not count whole spans of pages set up on fresh
 *  or purged slices as memory to purge (it did: every exit purged, and the next thread
 *  faulted the pages in again: 26,429 faults). The purger may start meanwhile (what the
 *  exits leave waits for a purge); then the exits park their heaps. */
static void thread_churn_wide_classes(void) {
    long faults = churn_threads(wide_churn_worker);
    printf("300 threads: %ld page faults\n", faults);
    CHECKF(faults <= 3000, "300 short threads took %ld page faults: each exit purged what the next thread "
           "faulted in again", faults);
}

static void thread_churn_resident(void) {
    enum { THREADS = 300 };
    swm_stats_t before, after;
    CHECK(stats_get(&before) == 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, churn_worker, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    CHECK(stats_get(&after) == 0);
    int found = 0;
    thread_count("swm-purger", &found);
    CHECKF(!found, "a purger started: the case tests the exits without one");
    size_t returned = after.returned - before.returned;
    printf("%d threads: %zu KiB given back\n", THREADS, returned >> 10);
    CHECKF(returned <= (size_t)4 << 20, "%d short threads gave back %zu KiB: each exit purged what the next "
           "thread faulted in again", THREADS, returned >> 10);
}

/** exit_after_remote_frees: a thread allocates 20 MiB of 256-byte blocks and hands them
 *  to the main thread, which frees them all (into the producer's pages) while the
 *  producer waits; the producer then exits, in a process too small for a purger (and
 *  with background=0, exit_after_remote_frees_sync). What its exit leaves must not stay
 *  resident: before, its exit counted only the memory the process's counters showed
 *  waiting, not its own pages that the frees had emptied, and kept all 20 MiB. */
enum { HANDOFF_BLOCKS = 20 * 4096 };
static void *handoff[HANDOFF_BLOCKS];
static pthread_barrier_t handoff_barrier;

static void *handoff_producer(void *arg) {
    for (int i = 0; i < HANDOFF_BLOCKS; i++) {
        CHECK((handoff[i] = malloc(256)) != NULL);
        memset(handoff[i], 6, 256);
    }
    pthread_barrier_wait(&handoff_barrier);   /* the main thread frees them */
    pthread_barrier_wait(&handoff_barrier);
    return arg;
}

static void exit_after_remote_frees(void) {
    pthread_t t;
    CHECK(pthread_barrier_init(&handoff_barrier, NULL, 2) == 0);
    CHECK(pthread_create(&t, NULL, handoff_producer, NULL) == 0);
    pthread_barrier_wait(&handoff_barrier);
    for (int i = 0; i < HANDOFF_BLOCKS; i++) free(handoff[i]);
    pthread_barrier_wait(&handoff_barrier);
    CHECK(pthread_join(t, NULL) == 0);
    int found = 0;
    thread_count("swm-purger", &found);
    CHECKF(!found, "a purger started: the case tests an exit without one");
    swm_stats_t st;
    CHECK(stats_get(&st) == 0);
    printf("resident %.1f MiB, mapped %.1f MiB\n", st.resident / 1048576.0, st.mapped / 1048576.0);
    CHECKF(st.resident <= (size_t)8 << 20, "%.1f MiB stayed resident after the producer's exit",
           st.resident / 1048576.0);
}

/** rare_allocators_among_short: the pool the short-lived threads fill (a slot is taken by
 *  setting `busy`), the flag that stops everyone, and the short-lived threads' count. */
enum { RARE_HOLDERS = 80, RARE_HELD = 16, RARE_POOL = 2048, RARE_SPAWNERS = 3, RARE_TAKERS = 2 };
static struct rare_slot {
    atomic_int busy;
    unsigned char *p;
    size_t n;
    uint64_t tag;
} rare_pool[RARE_POOL];
static atomic_int rare_stop;
static atomic_long rare_threads;

static uint64_t rare_next(uint64_t *seed) {
    uint64_t x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *seed = x;
}

static uint64_t rare_mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/** A size as the outside review drew them: mostly small, some up to 200 KB, a few huge. */
static size_t rare_size(uint64_t *seed) {
    unsigned k = (unsigned)(rare_next(seed) % 100);
    if (k < 85) return 1 + rare_next(seed) % 2000;
    if (k < 98) return 2000 + rare_next(seed) % 200000;
    return 2100000 + rare_next(seed) % 1000000;
}

/** Fills (or, with `check`, verifies) the pattern of a block: every byte up to 64 KiB, the
 *  first and last 4 KiB and every 4,072nd byte beyond. */
static void rare_pattern(unsigned char *p, size_t n, uint64_t tag, int check) {
    for (size_t i = 0; i < n; i = (n > 65536 && i >= 4096 && i + 4096 < n) ? i + 4072 : i + 1) {
        unsigned char want = (unsigned char)rare_mix(tag + i);
        if (check) CHECKF(p[i] == want, "block %p of %zu bytes: byte %zu changed", (void *)p, n, i);
        else p[i] = want;
    }
}

/** Takes a random free slot: checks its block; without `put`, reallocates it in place
 *  half of the time and frees it otherwise; with `put`, frees it and puts a new one. */
static void rare_use_slot(uint64_t *seed, int put) {
    struct rare_slot *s = &rare_pool[rare_next(seed) % RARE_POOL];
    int idle = 0;
    if (!atomic_compare_exchange_strong(&s->busy, &idle, 1)) return;
    if (s->p) {
        rare_pattern(s->p, s->n, s->tag, 1);
        if (!put && rare_next(seed) & 1) {
            size_t n = rare_size(seed);
            CHECK((s->p = realloc(s->p, n)) != NULL);
            s->n = n;
            s->tag = rare_next(seed);
            rare_pattern(s->p, n, s->tag, 0);
            atomic_store(&s->busy, 0);
            return;
        }
        free(s->p);
        s->p = NULL;
    }
    if (put) {
        s->n = rare_size(seed);
        CHECK((s->p = malloc(s->n)) != NULL);
        s->tag = rare_next(seed);
        rare_pattern(s->p, s->n, s->tag, 0);
    }
    atomic_store(&s->busy, 0);
}

/** Holds 16 blocks, checks them every 20 ms and replaces one: a page now and then. */
static void *rare_holder(void *arg) {
    uint64_t seed = (uint64_t)(uintptr_t)arg * 977 + 1;
    unsigned char *mine[RARE_HELD];
    size_t sizes[RARE_HELD];
    for (int i = 0; i < RARE_HELD; i++) {
        sizes[i] = rare_size(&seed);
        CHECK((mine[i] = malloc(sizes[i])) != NULL);
        rare_pattern(mine[i], sizes[i], (uintptr_t)mine[i], 0);
    }
    while (!atomic_load(&rare_stop)) {
        sleep_ms(20);
        for (int i = 0; i < RARE_HELD; i++) rare_pattern(mine[i], sizes[i], (uintptr_t)mine[i], 1);
        int k = (int)(rare_next(&seed) % RARE_HELD);
        free(mine[k]);
        sizes[k] = rare_size(&seed);
        CHECK((mine[k] = malloc(sizes[k])) != NULL);
        rare_pattern(mine[k], sizes[k], (uintptr_t)mine[k], 0);
    }
    for (int i = 0; i < RARE_HELD; i++) free(mine[i]);
    return NULL;
}

/** A short-lived thread: puts 30 blocks into random pool slots. */
static void *rare_short(void *arg) {
    uint64_t seed = rare_mix((uint64_t)(uintptr_t)arg) | 1;
    for (int i = 0; i < 30; i++) rare_use_slot(&seed, 1);
    atomic_fetch_add(&rare_threads, 1);
    return NULL;
}

static void *rare_spawner(void *arg) {
    for (uintptr_t id = (uintptr_t)arg; !atomic_load(&rare_stop); id += RARE_SPAWNERS) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, rare_short, (void *)id) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    return NULL;
}

static void *rare_taker(void *arg) {
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    while (!atomic_load(&rare_stop)) rare_use_slot(&seed, 0);
    return NULL;
}

/** 80 threads that allocate a block every 20 ms beside three streams of short-lived
 *  threads that fill a pool of 2,048 blocks and two threads that reallocate or free them
 *  (live memory about 100 MB; every block checked): swmalloc's mapped memory must stay
 *  under 4 GiB, the review's `ulimit -v`, for 4 s (about 3.2 GiB now, glibc's whole
 *  address space about 1.1 GiB; 6.4 GiB and growing before). Before, the rare allocators adopted other threads' segments and
 *  took cached ones for nearly every page, kept each with a page or a block, and mapping
 *  grew without bound (the outside review: 13 GB after 54 s, ENOMEM under ulimit -v 4G). */
static void rare_allocators_among_short(void) {
    pthread_t holders[RARE_HOLDERS], spawners[RARE_SPAWNERS], takers[RARE_TAKERS];
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0);
    CHECK(pthread_attr_setstacksize(&attr, 65536) == 0);
    for (int i = 0; i < RARE_HOLDERS; i++)
        CHECK(pthread_create(&holders[i], &attr, rare_holder, (void *)(uintptr_t)(i + 1)) == 0);
    for (int i = 0; i < RARE_SPAWNERS; i++)
        CHECK(pthread_create(&spawners[i], NULL, rare_spawner, (void *)(uintptr_t)(i + 1)) == 0);
    for (int i = 0; i < RARE_TAKERS; i++)
        CHECK(pthread_create(&takers[i], NULL, rare_taker, (void *)(uintptr_t)(i + 500)) == 0);
    double most = 0;
    for (int tick = 0; tick < 8; tick++) {
        sleep_ms(500);
        double mapped = mapped_mib();
        if (mapped > most) most = mapped;
    }
    atomic_store(&rare_stop, 1);
    for (int i = 0; i < RARE_HOLDERS; i++) CHECK(pthread_join(holders[i], NULL) == 0);
    for (int i = 0; i < RARE_SPAWNERS; i++) CHECK(pthread_join(spawners[i], NULL) == 0);
    for (int i = 0; i < RARE_TAKERS; i++) CHECK(pthread_join(takers[i], NULL) == 0);
    for (int i = 0; i < RARE_POOL; i++) free(rare_pool[i].p);
    printf("%ld short-lived threads; most mapped: %.0f MiB\n", atomic_load(&rare_threads), most);
    CHECKF(most <= 4096, "%.0f MiB mapped for about 100 MB live", most);
}

/* ---- purger_futex_refused ---- */

/** CPU time of the whole process (every thread), in seconds. */
static double process_cpu_s(void) {
    struct rusage u;
    CHECK(getrusage(RUSAGE_SELF, &u) == 0);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/** A filter answers every futex call with `error` (0: success, without sleeping or
 *  waking); 200 MiB freed start the purger: while the program sleeps 1 s the process must
 *  use under 0.25 s of CPU. */
static void purger_futex_answers(int error) {
    refuse_system_call(SYS_futex, error);
    churn_blocks(20000, 10000);
    double before = process_cpu_s();
    sleep_ms(1000);
    double used = process_cpu_s() - before;
    CHECKF(used < 0.25, "%.2f s of CPU while the program slept 1 s with futex answering %d", used, error);
}

static void purger_futex_refused(void) { purger_futex_answers(EPERM); }
static void purger_futex_eagain(void) { purger_futex_answers(EAGAIN); }
static void purger_futex_eintr(void) { purger_futex_answers(EINTR); }
static void purger_futex_zero(void) { purger_futex_answers(0); }
static void purger_futex_etimedout(void) { purger_futex_answers(ETIMEDOUT); }

static void purger_futex_refused_later(void) {
    double start = rss_mib();
    churn_blocks(64, 1 << 20);
    long waited = 0;
    double back = rss_fall_to(start + 16, 3000, &waited);
    CHECKF(back <= start + 16, "%.1f MiB above the start 3 s after the first frees", back - start);
    sleep_ms(300);   /* the purger goes to sleep without a timeout */
    refuse_system_call(SYS_futex, EPERM);
    churn_blocks(65536, 4096);
    double end = rss_fall_to(start + 32, 3000, &waited);
    printf("rss MiB: start %.1f, after the refused frees %.1f (%ld ms)\n", start, end, waited);
    CHECKF(end - start <= 32, "%.1f MiB still resident 3 s after freeing 256 MiB with futex refused", end - start);
}

/** Refuses futex to this thread only, then allocates and frees 256 MiB of 4 KiB blocks. */
static void *refused_waker(void *arg) {
    refuse_system_call(SYS_futex, EPERM);
    churn_blocks(65536, 4096);
    return arg;
}

static void purger_refused_then_main_exits(void) {
    churn_until_purger();
    sleep_ms(600);   /* the purger goes to sleep without a timeout */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, refused_waker, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    printf("ok %s\n", running_case);
    fflush(stdout);
    pthread_exit(NULL);
}

/** The program runs again under a filter that answers futex with `error`, so that the
 *  stats_signal reporter starts under it: while it sleeps 1 s the process must use under
 *  0.25 s of CPU. */
static void reporter_futex_answers(int error) {
    if (!getenv("RETENTION_UNDER_FILTER")) {
        refuse_system_call(SYS_futex, error);
        CHECK(setenv("RETENTION_UNDER_FILTER", "1", 1) == 0);
        char *const args[] = {"retention", (char *)running_case, NULL};
        execv("/proc/self/exe", args);
        CHECKF(0, "execv: errno %d", errno);
    }
    double before = process_cpu_s();
    sleep_ms(1000);
    double used = process_cpu_s() - before;
    CHECKF(used < 0.25, "%.2f s of CPU while the program slept 1 s with futex answering %d", used, error);
}

static void reporter_futex_refused(void) { reporter_futex_answers(EPERM); }
static void reporter_futex_eagain(void) { reporter_futex_answers(EAGAIN); }
static void reporter_futex_etimedout(void) { reporter_futex_answers(ETIMEDOUT); }

/* ---- main_exit_purger_stays, main_exit_last_without_heap, main_parked_in_destructor ---- */

static double monotonic_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/** Shared with the child of `ends_with_last_thread`: when its last thread ended, and what
 *  the cases that look at the end itself found there. */
struct child_end {
    double last_thread;        /* CLOCK_MONOTONIC seconds */
    int atexit_ran;            /* main_exit_atexit_thread: the handler ran */
    int atexit_blocked;        /* ... SIGTERM or SIGUSR1 were blocked in it */
    char atexit_name[16];      /* ... the name of the thread it ran in */
    char main_name[16];        /* ... the main thread's name */
    uint64_t wakeups;          /* main_exit_thread_chain: purger wake-ups during the chain */
    char last_words[32];       /* main_exit_last_thread_state: the last thread's thread-local
                                  text, as the atexit handler read it */
    int usr1_ran;              /* ... the SIGUSR1 handler ran */
    int handlers;              /* main_exit_atexit_allocates: 1 the second handler began,
                                  2 it ended, 4 the first ran after that */
    uint64_t handler_counted;  /* ... what swm_thread_allocated counted for a 1,000-byte
                                  malloc in the handler */
};
static volatile struct child_end *child_end;

/** Allocates 40 MiB of 16 KiB blocks (the purger starts), frees the last 12 MiB and
 *  sleeps: the purger must give them back (`who` names the case in messages). */
static void free_12_of_40_then_sleep(const char *who) {
    enum { N = 2560, FREED = 768 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        CHECK((blocks[i] = malloc(16384)) != NULL);
        memset(blocks[i], 3, 16384);
    }
    double full = rss_mib();
    for (int i = N - FREED; i < N; i++) free(blocks[i]);
    long waited = 0;
    double end = rss_fall_to(full - 8, 3000, &waited);
    printf("%s: rss MiB with 40 MiB allocated %.1f, 12 MiB freed, after %ld ms %.1f\n", who, full, waited, end);
    fflush(stdout);
    CHECKF(full - end >= 8, "%s: %.1f of the 12 MiB freed still resident 3 s after the frees, the main thread "
           "gone", who, 12 - (full - end));
    for (int i = 0; i < N - FREED; i++) free(blocks[i]);
}

/** Waits for the child `pid`, which must exit 0 within `seconds` (else it is killed and
 *  the case fails); returns when it ended (CLOCK_MONOTONIC seconds). */
static double wait_ended_child(pid_t pid, const char *who, double seconds) {
    int status = 0;
    double deadline = monotonic_s() + seconds;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (monotonic_s() > deadline) {
            kill(pid, SIGKILL);
            CHECK(waitpid(pid, &status, 0) == pid);
            CHECKF(0, "%s: the child did not end %.0f s after it started (killed)", who, seconds);
        }
        sleep_ms(5);
    }
    double ended = monotonic_s();
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the child failed (status %#x)", who, status);
    return ended;
}

/** The child ended (`ended`, from `wait_ended_child`) at most 4 s after its last thread;
 *  returns how long after. */
static double check_child_end(double ended, const char *who) {
    CHECKF(child_end->last_thread > 0, "%s: the child's last thread did not record its end", who);
    double late = ended - child_end->last_thread;
    printf("%s: the child ended %.3f s after its last thread\n", who, late);
    CHECKF(late <= 4, "%s: the child ended %.1f s after its last thread", who, late);
    return late;
}

/** Runs `child_main` in a child process (whose main thread it is: it ends with
 *  pthread_exit, leaving the process to its other threads) and expects the child to exit
 *  0 within 4 s of the time its last thread records in `child_end->last_thread`; returns
 *  how long after that time it ended. */
static double ends_with_last_thread(void (*child_main)(void), const char *who) {
    child_end = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(child_end != MAP_FAILED);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        child_main();
        pthread_exit(NULL);
    }
    return check_child_end(wait_ended_child(pid, who, 30), who);
}

static void *freeing_last_thread(void *arg) {
    free_12_of_40_then_sleep("main_exit_purger_stays");
    child_end->last_thread = monotonic_s();
    return arg;
}

static void purger_stays_child(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, freeing_last_thread, NULL) == 0);
}

static void main_exit_purger_stays(void) { ends_with_last_thread(purger_stays_child, "main_exit_purger_stays"); }

/** Never allocates: it never gets a heap, and its end gives the purger no hint. */
static void *last_thread_without_heap(void *arg) {
    sleep_ms(300);
    child_end->last_thread = monotonic_s();
    return arg;
}

/* ---- dlopen_worker_last_without_heap ---- */

static const char *dlopen_path;

/** Loads swmalloc, allocates and frees `arg` MiB through it (memset, so the purger has
 *  something to give back) and ends. */
static void *dlopen_worker(void *arg) {
    void *library = dlopen(dlopen_path, RTLD_NOW | RTLD_LOCAL);
    CHECKF(library != NULL, "dlopen: %s", dlerror());
    void *(*allocate)(size_t) = (void *(*)(size_t))dlsym(library, "malloc");
    void (*release)(void *) = (void (*)(void *))dlsym(library, "free");
    CHECK(allocate != NULL && release != NULL);
    long mib = (long)arg;
    void *blocks[64];
    for (long i = 0; i < mib; i++) {
        blocks[i] = allocate(1 << 20);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 1, 1 << 20);
    }
    for (long i = 0; i < mib; i++) release(blocks[i]);
    sleep_ms(100);
    return NULL;
}

/** The last thread: never allocates through swmalloc; writes when it ends to `arg`, a
 *  descriptor the parent reads. */
static void *dlopen_last_thread(void *arg) {
    sleep_ms(800);
    double now = monotonic_s();
    CHECK(write((int)(long)arg, &now, sizeof now) == sizeof now);
    return NULL;
}

/** The program run again without swmalloc preloaded, for case `name` (`RETENTION_DLOPEN`:
 *  the library's path; `RETENTION_FD`: where the last thread writes its end): a worker
 *  loads swmalloc and uses 64 MiB (1 MiB for dlopen_reporter_without_purger: no purger
 *  starts) while the main thread ends. For dlopen_fork_child this happens in a child
 *  forked by the main thread once a first worker used swmalloc; the program waits for
 *  that child. */
static void dlopen_child(const char *name) {
    dlopen_path = getenv("RETENTION_DLOPEN");
    int fd = atoi(getenv("RETENTION_FD"));
    pthread_t worker, last;
    if (strcmp(name, "dlopen_fork_child") == 0) {
        CHECK(pthread_create(&worker, NULL, dlopen_worker, (void *)64L) == 0);
        CHECK(pthread_join(worker, NULL) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid > 0) {
            wait_ended_child(pid, name, 20);   /* before the case's own 30 s: no child left behind */
            exit(0);
        }
    }
    long mib = strcmp(name, "dlopen_reporter_without_purger") == 0 ? 1 : 64;
    CHECK(pthread_create(&last, NULL, dlopen_last_thread, (void *)(long)fd) == 0);
    CHECK(pthread_create(&worker, NULL, dlopen_worker, (void *)mib) == 0);
    pthread_exit(NULL);
}

/** Runs this case again in a new program (fork and exec) with `name`=`value` in its
 *  environment (and without LD_PRELOAD when `unpreloaded`), and the write end of a pipe
 *  in RETENTION_FD; returns the child, and the pipe's read end in `read_end`. */
static pid_t run_again(const char *name, const char *value, int unpreloaded, int *read_end) {
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0);
    char fd_text[16];
    snprintf(fd_text, sizeof fd_text, "%d", pipe_fds[1]);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        CHECK(setenv(name, value, 1) == 0);
        CHECK(setenv("RETENTION_FD", fd_text, 1) == 0);
        if (unpreloaded) CHECK(unsetenv("LD_PRELOAD") == 0);
        char *const args[] = {"retention", (char *)running_case, NULL};
        execv("/proc/self/exe", args);
        _exit(99);
    }
    close(pipe_fds[1]);
    *read_end = pipe_fds[0];
    return pid;
}

static void dlopen_worker_last_without_heap(void) {
    const char *library = getenv("LD_PRELOAD");
    CHECKF(library != NULL, "run with LD_PRELOAD naming swmalloc");
    int fd;
    pid_t pid = run_again("RETENTION_DLOPEN", library, 1, &fd);
    double ended = wait_ended_child(pid, running_case, 30), last = 0;
    CHECKF(read(fd, &last, sizeof last) == sizeof last, "the last thread did not record its end");
    printf("the program ended %.3f s after its last thread\n", ended - last);
    CHECKF(ended - last <= 4, "the program ended %.1f s after its last thread", ended - last);
}

/* ---- nested_thread_start ---- */

/** The worker of the program run again: allocates, marks its thread-local data, ends
 *  100 ms later. */
static __thread int nested_mark;
static double nested_worker_end;
static int nested_fd = -1;

static void *nested_worker(void *arg) {
    char *p = malloc(100000);
    CHECK(p != NULL);
    p[0] = 1;
    nested_mark = 42;
    sleep_ms(100);
    free(p);
    nested_worker_end = monotonic_s();
    return arg;
}

/** The process's exit: reports to the parent the thread-local mark of the thread it runs
 *  in (42: the worker's) and how long after the worker's end. */
static void nested_at_exit(void) {
    double report[2] = {nested_mark, monotonic_s() - nested_worker_end};
    CHECK(write(nested_fd, report, sizeof report) == sizeof report);
}

static void nested_child(void) {
    nested_fd = atoi(getenv("RETENTION_FD"));
    CHECK(atexit(nested_at_exit) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, nested_worker, NULL) == 0);
    pthread_exit(NULL);
}

static void nested_thread_start(void) {
    int fd;
    pid_t pid = run_again("RETENTION_NESTED", "1", 0, &fd);
    wait_ended_child(pid, running_case, 30);
    double report[2] = {0, 0};
    CHECKF(read(fd, report, sizeof report) == sizeof report, "the program's atexit handler did not report");
    printf("the exit ran %.3f s after the worker's end, in the thread with mark %.0f\n", report[1], report[0]);
    CHECKF(report[0] == 42, "the process's exit ran in another thread than its last (its mark %.0f, not 42)", report[0]);
}

static void heapless_child(void) {
    churn_until_purger();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, last_thread_without_heap, NULL) == 0);
}

static void main_exit_last_without_heap(void) {
    ends_with_last_thread(heapless_child, "main_exit_last_without_heap");
}

static pthread_key_t parking_key;

/** The program's key destructor for the main thread, as libdispatch's for a program that
 *  called dispatch_main: it does not return for a while (libdispatch's never does), and
 *  the main thread stays a live thread. Meanwhile the purger is alone with it (it must
 *  not end: the main thread has not ended), and then a new thread frees memory. */
static void parked_main(void *value) {
    (void)value;
    sleep_ms(400);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, freeing_last_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
}

static void parked_child(void) {
    churn_until_purger();
    CHECK(pthread_key_create(&parking_key, parked_main) == 0);
    CHECK(pthread_setspecific(parking_key, &parking_key) == 0);
}

static void main_parked_in_destructor(void) {
    ends_with_last_thread(parked_child, "main_parked_in_destructor");
}

/** Never returns: a thread made with a raw clone, which the kernel counts among the
 *  process's threads and the C library does not (as io_uring's SQPOLL thread). */
static int raw_thread_body(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec t = {1, 0};
        syscall(SYS_nanosleep, &t, NULL);
    }
    return 0;
}

static void raw_thread_child(void) {
    static char stack[1 << 16] __attribute__((aligned(16)));
    churn_until_purger();
    CHECK(clone(raw_thread_body, stack + sizeof stack,
                CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, NULL) > 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, last_thread_without_heap, NULL) == 0);
}

static void main_exit_raw_thread(void) { ends_with_last_thread(raw_thread_child, "main_exit_raw_thread"); }

/** The atexit handler of main_exit_atexit_thread: records its signal mask and its
 *  thread's name. */
static void record_exit_thread(void) {
    sigset_t mask;
    CHECK(pthread_sigmask(SIG_BLOCK, NULL, &mask) == 0);
    child_end->atexit_blocked = sigismember(&mask, SIGTERM) || sigismember(&mask, SIGUSR1);
    char name[16] = "";
    prctl(PR_GET_NAME, name, 0, 0, 0);
    memcpy((char *)child_end->atexit_name, name, sizeof name);
    child_end->atexit_ran = 1;
}

static void atexit_child(void) {
    char name[16] = "";
    prctl(PR_GET_NAME, name, 0, 0, 0);
    memcpy((char *)child_end->main_name, name, sizeof name);
    CHECK(atexit(record_exit_thread) == 0);
    churn_until_purger();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, freeing_last_thread, NULL) == 0);
}

static void main_exit_atexit_thread(void) {
    ends_with_last_thread(atexit_child, "main_exit_atexit_thread");
    CHECKF(child_end->atexit_ran, "the child's atexit handler did not run");
    printf("atexit handler: thread '%s' (main '%s'), SIGTERM or SIGUSR1 blocked: %d\n",
           (const char *)child_end->atexit_name, (const char *)child_end->main_name, child_end->atexit_blocked);
    CHECKF(!child_end->atexit_blocked, "the child's atexit handler ran with SIGTERM or SIGUSR1 blocked");
    CHECKF(strcmp((const char *)child_end->atexit_name, (const char *)child_end->main_name) == 0,
           "the child's atexit handler ran in a thread named '%s', not '%s'",
           (const char *)child_end->atexit_name, (const char *)child_end->main_name);
}

/** main_exit_last_thread_state: the last thread's thread-local text. */
static __thread char last_words[32];

static void usr1_handler(int signo) {
    (void)signo;
    child_end->usr1_ran = 1;
}

/** The atexit handler: records the thread-local text of the thread it runs in. */
static void record_last_words(void) {
    memcpy((char *)child_end->last_words, last_words, sizeof last_words);
}

/** Blocks SIGTERM and SIGUSR1, sends both to the process (no thread can take them, so they
 *  stay pending for good, as glibc leaves them), sets its thread-local text and ends. */
static void *ending_with_signals_blocked(void *arg) {
    free_12_of_40_then_sleep("main_exit_last_thread_state");
    sigset_t both;
    sigemptyset(&both);
    sigaddset(&both, SIGTERM);
    sigaddset(&both, SIGUSR1);
    CHECK(pthread_sigmask(SIG_BLOCK, &both, NULL) == 0);
    CHECK(kill(getpid(), SIGUSR1) == 0 && kill(getpid(), SIGTERM) == 0);
    strcpy(last_words, "the last thread's words");
    child_end->last_thread = monotonic_s();
    return arg;
}

static void last_thread_state_child(void) {
    CHECK(signal(SIGUSR1, usr1_handler) != SIG_ERR);
    CHECK(atexit(record_last_words) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, ending_with_signals_blocked, NULL) == 0);
}

static void main_exit_last_thread_state(void) {
    ends_with_last_thread(last_thread_state_child, "main_exit_last_thread_state");
    printf("atexit handler read '%s'; SIGUSR1 handler ran: %d\n", (const char *)child_end->last_words,
           child_end->usr1_ran);
    CHECKF(strcmp((const char *)child_end->last_words, "the last thread's words") == 0,
           "the child's atexit handler did not run in its last thread (it read '%s')",
           (const char *)child_end->last_words);
    CHECKF(!child_end->usr1_ran, "a signal the last thread had blocked was delivered at the child's exit");
}

enum { CHAIN_THREADS = 2000 };
static uint64_t chain_wakeups_before;

/** Allocates (so that it has a heap), starts the next thread of the chain and ends; the
 *  last one records the purger's wake-ups during the chain and its end. */
static void *chain_link(void *arg) {
    long k = (long)arg;
    if (k == 0) chain_wakeups_before = purger_wakeups();
    free(malloc(64));
    if (k + 1 < CHAIN_THREADS) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        CHECK(pthread_create(&t, &attr, chain_link, (void *)(k + 1)) == 0);
        pthread_attr_destroy(&attr);
    } else {
        child_end->wakeups = purger_wakeups() - chain_wakeups_before;
        child_end->last_thread = monotonic_s();
    }
    return NULL;
}

/** Starts the purger (churn_until_purger), then, 50 ms later, a thread running `body`:
 *  the child of a case whose main thread then ends. */
static void purger_then_thread(void *(*body)(void *)) {
    churn_until_purger();
    sleep_ms(50);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, body, NULL) == 0);
}

static void chain_child(void) { purger_then_thread(chain_link); }

static void main_exit_thread_chain(void) {
    ends_with_last_thread(chain_child, "main_exit_thread_chain");
    printf("purger wake-ups during a chain of %d threads: %llu\n", CHAIN_THREADS,
           (unsigned long long)child_end->wakeups);
    CHECKF(child_end->wakeups < CHAIN_THREADS / 10, "the purger woke %llu times during a chain of %d threads",
           (unsigned long long)child_end->wakeups, CHAIN_THREADS);
}

/* ---- main_exit_threads_at_once ---- */

enum { AT_ONCE_THREADS = 12 };
static pthread_barrier_t at_once_barrier;
static pthread_key_t at_once_key;

/** A key destructor of the program's: the threads end together, after swmalloc's first
 *  destructor call (its key is older), each recording its end. */
static void at_once_end(void *value) {
    (void)value;
    pthread_barrier_wait(&at_once_barrier);
    child_end->last_thread = monotonic_s();
}

/** Allocates (so that it has a heap); the first one waits until the purger's look at the
 *  thread count has gone to its longest interval and the purger just woke; then they all
 *  end. */
static void *at_once_worker(void *arg) {
    free(malloc(64));
    CHECK(pthread_setspecific(at_once_key, (void *)1) == 0);
    if (arg == NULL) {
        sleep_ms(1800);
        uint64_t before = purger_wakeups();
        for (int i = 0; i < 3000 && purger_wakeups() == before; i++) sleep_ms(1);
    }
    return arg;
}

static void at_once_child(void) {
    churn_until_purger();
    CHECK(pthread_barrier_init(&at_once_barrier, NULL, AT_ONCE_THREADS) == 0);
    CHECK(pthread_key_create(&at_once_key, at_once_end) == 0);
    for (long i = 0; i < AT_ONCE_THREADS; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, at_once_worker, (void *)i) == 0);
    }
}

/* ---- main_exit_atexit_allocates ---- */

/** Registered first, so it runs last: records whether the other one had ended. */
static void atexit_runs_last(void) {
    if (child_end->handlers & 2) child_end->handlers |= 4;
}

/** Allocates and frees 16 MiB (enough for the purger's start) and a few small blocks. */
static void atexit_allocates(void) {
    child_end->handlers |= 1;
    void *blocks[256];
    for (int i = 0; i < 256; i++) {
        CHECK((blocks[i] = malloc(65536)) != NULL);
        memset(blocks[i], 1, 64);
    }
    for (int i = 0; i < 256; i++) free(blocks[i]);
    for (int i = 0; i < 64; i++) free(malloc(100 + i * 512));
    uint64_t (*thread_allocated)(void) = (uint64_t (*)(void))dlsym(RTLD_DEFAULT, "swm_thread_allocated");
    CHECK(thread_allocated != NULL);
    uint64_t before = thread_allocated();
    void *block = malloc(1000);
    CHECK(block != NULL);
    child_end->handler_counted = thread_allocated() - before;
    free(block);
    sleep_ms(20);
    child_end->handlers |= 2;
}

static void *briefly(void *arg) {
    free(malloc(100));
    sleep_ms(50);
    child_end->last_thread = monotonic_s();
    return arg;
}

static void atexit_allocates_child(void) {
    CHECK(atexit(atexit_runs_last) == 0 && atexit(atexit_allocates) == 0);
    free(malloc(100));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, briefly, NULL) == 0);
    CHECK(pthread_detach(t) == 0);
}

static void main_exit_atexit_allocates(void) {
    ends_with_last_thread(atexit_allocates_child, "main_exit_atexit_allocates");
    printf("atexit handlers: %#x (7: the second began and ended, then the first ran)\n", child_end->handlers);
    CHECKF(child_end->handlers == 7, "the atexit handlers ran cut short or out of order (%#x)", child_end->handlers);
    printf("a 1,000-byte malloc in the handler: %llu bytes counted for the thread\n",
           (unsigned long long)child_end->handler_counted);
    CHECKF(child_end->handler_counted >= 1000, "the last thread's atexit handler allocated 1,000 bytes and its thread "
           "counted %llu: no heap stayed attached to it (each call attached and detached one)",
           (unsigned long long)child_end->handler_counted);
}

/* ---- main_exit_thread_churn ---- */

static void *churn_short(void *arg) {
    free(malloc(64));
    return arg;
}

/** Starts and joins a short thread every 20 ms for 3 s; records the purger's wake-ups
 *  meanwhile and its end. */
static void *churn_starter(void *arg) {
    uint64_t before = purger_wakeups();
    double end = monotonic_s() + 3;
    while (monotonic_s() < end) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, churn_short, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
        sleep_ms(20);
    }
    child_end->wakeups = purger_wakeups() - before;
    child_end->last_thread = monotonic_s();
    return arg;
}

static void churn_child(void) { purger_then_thread(churn_starter); }

static void main_exit_thread_churn(void) {
    ends_with_last_thread(churn_child, "main_exit_thread_churn");
    printf("purger wake-ups during 3 s of short threads: %llu\n", (unsigned long long)child_end->wakeups);
    CHECKF(child_end->wakeups < 42, "the purger woke %llu times in 3 s of short threads, the main thread gone",
           (unsigned long long)child_end->wakeups);
}

static void main_exit_threads_at_once(void) {
    double late = ends_with_last_thread(at_once_child, "main_exit_threads_at_once");
    CHECKF(late <= 0.15, "the child ended %.2f s after its last threads, which ended together", late);
}

/** purger_start_race: while set, the next pthread_create (the purger's) sleeps 50 ms
 *  before it creates its thread, as a slow stack mapping or a preemption would. */
static atomic_int slow_thread_start;
/* Set by fork_in_purger_create / fork_in_purger_setname: the next pthread_create /
 * pthread_setname_np raises SIGUSR1 first, as a signal arriving there would. */
static atomic_int fork_in_thread_create, fork_in_thread_setname;

/** Every pthread_create of the program and of swmalloc goes through here (the program's
 *  definition comes first in symbol lookup); it only passes the call on, but for
 *  purger_start_race and fork_in_purger_create. */
int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*body)(void *), void *arg) {
    static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    if (!real) real = (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))dlsym(RTLD_NEXT, "pthread_create");
    if (atomic_exchange(&slow_thread_start, 0)) sleep_ms(50);
    if (atomic_exchange(&fork_in_thread_create, 0)) raise(SIGUSR1);
    return real(thread, attr, body, arg);
}

/** As pthread_create above, for fork_in_purger_setname; and in nested_thread_start's
 *  program, the reporter's start (at load) starts the purger from here, as an
 *  allocation in a signal handler there would. */
int pthread_setname_np(pthread_t thread, const char *name) {
    static int (*real)(pthread_t, const char *);
    if (!real) real = (int (*)(pthread_t, const char *))dlsym(RTLD_NEXT, "pthread_setname_np");
    if (atomic_exchange(&fork_in_thread_setname, 0)) raise(SIGUSR1);
    int r = real(thread, name);
    static atomic_int nested_once;
    if (getenv("RETENTION_NESTED") && strcmp(name, "swm-reporter") == 0 && !atomic_exchange(&nested_once, 1))
        mallopt(M_TRIM_THRESHOLD, 0);
    return r;
}

/* ---- fork_in_purger_create, fork_in_purger_setname ---- */

static pid_t forked_in_start = -1;

static void fork_in_start_handler(int signo) {
    (void)signo;
    forked_in_start = fork();
}

/** The purger's start (mallopt) with a fork from a signal handler at `where`; the child
 *  goes on from there, starts a thread that frees 12 of 40 MiB and ends its main thread:
 *  it must exit 0 within 4 s of that thread. */
static void fork_during_purger_start(atomic_int *where) {
    child_end = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(child_end != MAP_FAILED);
    CHECK(signal(SIGUSR1, fork_in_start_handler) != SIG_ERR);
    fflush(stdout);
    atomic_store(where, 1);
    mallopt(M_TRIM_THRESHOLD, 0);   /* starts the purger now */
    CHECKF(forked_in_start >= 0, "no fork in the purger's start");
    if (forked_in_start == 0) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, freeing_last_thread, NULL) == 0);
        pthread_exit(NULL);
    }
    check_child_end(wait_ended_child(forked_in_start, running_case, 30), running_case);
}

static void fork_in_purger_create(void) { fork_during_purger_start(&fork_in_thread_create); }
static void fork_in_purger_setname(void) { fork_during_purger_start(&fork_in_thread_setname); }

static atomic_int race_go;
static double race_worker_end;

static void *race_worker(void *arg) {
    free(malloc(100));
    while (!atomic_load(&race_go)) sleep_ms(1);
    sleep_ms(10);
    race_worker_end = monotonic_s();
    return arg;
}

static void purger_start_race(void) {
    pthread_t worker;
    CHECK(pthread_create(&worker, NULL, race_worker, NULL) == 0);
    sleep_ms(20);
    atomic_store(&slow_thread_start, 1);
    atomic_store(&race_go, 1);
    mallopt(M_TRIM_THRESHOLD, 0);   /* starts the purger now, through the slowed pthread_create */
    CHECK(pthread_join(worker, NULL) == 0);
    double exit_took = monotonic_s() - race_worker_end;
    int found = 0;
    thread_count("swm-purger", &found);
    printf("the worker's exit took %.3f s; swm-purger %s\n", exit_took, found ? "runs" : "is gone");
    CHECKF(exit_took < 1, "a thread's exit took %.1f s while the purger was being started", exit_took);
    CHECKF(found, "no purger after a thread ended while it was being started");
}

/* ---- vos_thread_tables ---- */

enum { VOS_THREADS = 16, VOS_MODULE_STRIDE = 32, VOS_MODULES = 65536 };
static void *(*vos_malloc_module)(unsigned long, unsigned long);
static void (*vos_free_debug)(unsigned long, void *, const unsigned char *, unsigned int);
static pthread_barrier_t vos_barrier;

/** Charges and frees one block in every VOS_MODULE_STRIDE-th module, then (`arg` nonzero)
 *  waits until every such thread did. */
static void *vos_worker(void *arg) {
    for (unsigned long m = 0; m < VOS_MODULES; m += VOS_MODULE_STRIDE) {
        void *p = vos_malloc_module(48, m);
        CHECK(p != NULL);
        vos_free_debug(0, p, (const unsigned char *)__FILE__, __LINE__);
    }
    if (arg) pthread_barrier_wait(&vos_barrier);
    return NULL;
}

static void vos_thread_tables(void) {
    vos_malloc_module = (void *(*)(unsigned long, unsigned long))dlsym(RTLD_DEFAULT, "VOS_MallocModule");
    vos_free_debug = (void (*)(unsigned long, void *, const unsigned char *, unsigned int))dlsym(RTLD_DEFAULT, "VOS_Free_Debug");
    CHECK(vos_malloc_module != NULL && vos_free_debug != NULL);
    pthread_t t[VOS_THREADS];
    /* The first thread populates the process-wide statistics of every module it uses. */
    CHECK(pthread_create(&t[0], NULL, vos_worker, NULL) == 0);
    CHECK(pthread_join(t[0], NULL) == 0);
    double start = rss_mib();
    pthread_barrier_init(&vos_barrier, NULL, VOS_THREADS + 1);
    for (int i = 0; i < VOS_THREADS; i++) CHECK(pthread_create(&t[i], NULL, vos_worker, (void *)1) == 0);
    pthread_barrier_wait(&vos_barrier);
    double alive = rss_mib();
    for (int i = 0; i < VOS_THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    double end = rss_mib();
    printf("rss MiB: after one thread %.1f, %d threads alive %.1f, exited %.1f\n", start, VOS_THREADS, alive, end);
    CHECKF(alive - start > 16, "the threads' tables took only %.1f MiB: the test did not test", alive - start);
    CHECKF(end - start <= 8, "%.1f MiB of exited threads' VOS tables still resident", end - start);
}

static const struct test_case cases[] = {
    {"idle_threads", idle_threads},         {"idle_wide_pages", idle_wide_pages},
    {"remote_batch_idle", remote_batch_idle},
    {"fork_child_reuse", fork_child_reuse}, {"purger_absent", purger_absent},
    {"purger_lifecycle", purger_lifecycle}, {"purger_off", purger_off},
    {"huge_cache_reuse", huge_cache_reuse},
    {"big_freed_then_sleep", big_freed_then_sleep}, {"big_freed_then_sleep_sync", big_freed_then_sleep},
    {"realloc_chain_then_sleep", realloc_chain_then_sleep}, {"small_freed_then_sleep", small_freed_then_sleep},
    {"fork_child_sleeps", fork_child_sleeps}, {"remote_owner_sleeps", remote_owner_sleeps},
    {"remote_owner_sleeps_delay0", remote_owner_sleeps}, {"pool_idle", pool_idle},
    {"trickle_to_sleeping_owner", trickle_to_sleeping_owner}, {"trim_sleeping_owner_frees", trim_sleeping_owner_frees}, {"trim_right_after_trim", trim_right_after_trim},
    {"trim_right_after_trim_sync", trim_right_after_trim}, {"trim_after_purger_walk", trim_after_purger_walk},
    {"locked_then_trimmed", locked_then_trimmed}, {"locked_then_trimmed_delay0", locked_then_trimmed},
    {"trim_twice_before_purger", trim_twice_before_purger}, {"owner_last_after_purger_walk", owner_last_after_purger_walk},
    {"huge_shrink", huge_shrink}, {"huge_cache_refill", huge_cache_refill},
    {"huge_cut_cycles", huge_cut_cycles},   {"map_count_frees", map_count_frees},
    {"vfork_child_purger", vfork_child_purger},   {"main_pthread_exit", main_pthread_exit},
    {"main_pthread_exit_reporter", main_pthread_exit}, {"main_exit_fork_child", main_exit_fork_child},
    {"main_exit_after_remote_frees", main_exit_after_remote_frees},
    {"long_lived_among_short", long_lived_among_short}, {"long_lived_among_short_sync", long_lived_among_short},
    {"trim_sparse_survivors", trim_sparse_survivors},
    {"trim_sparse_survivors_exited", trim_sparse_survivors_exited},
    {"sparse_survivors_exited_asleep", sparse_survivors_exited_asleep},
    {"sparse_survivors_exited_freed_later", sparse_survivors_exited_freed_later},
    {"thread_churn_resident", thread_churn_resident}, {"thread_churn_resident_sync", thread_churn_resident},
    {"thread_churn_wide_classes", thread_churn_wide_classes},
    {"rare_allocators_among_short", rare_allocators_among_short},
    {"exit_after_remote_frees", exit_after_remote_frees}, {"exit_after_remote_frees_sync", exit_after_remote_frees},
    {"locked_memory_resident", locked_memory_resident}, {"partly_locked_span", partly_locked_span},
    {"purger_retries_start", purger_retries_start}, {"vos_thread_tables", vos_thread_tables},
    {"purger_futex_refused", purger_futex_refused}, {"purger_futex_eagain", purger_futex_eagain},
    {"purger_futex_eintr", purger_futex_eintr}, {"purger_futex_zero", purger_futex_zero},
    {"purger_futex_etimedout", purger_futex_etimedout}, {"purger_futex_refused_later", purger_futex_refused_later},
    {"reporter_futex_refused", reporter_futex_refused}, {"reporter_futex_eagain", reporter_futex_eagain},
    {"reporter_futex_etimedout", reporter_futex_etimedout},
    {"purger_refused_then_main_exits", purger_refused_then_main_exits},
    {"main_exit_purger_stays", main_exit_purger_stays}, {"main_exit_last_without_heap", main_exit_last_without_heap},
    {"main_parked_in_destructor", main_parked_in_destructor},
    {"dlopen_worker_last_without_heap", dlopen_worker_last_without_heap},
    {"dlopen_worker_reporter", dlopen_worker_last_without_heap},
    {"dlopen_reporter_without_purger", dlopen_worker_last_without_heap},
    {"dlopen_fork_child", dlopen_worker_last_without_heap},
    {"fork_in_purger_create", fork_in_purger_create}, {"fork_in_purger_setname", fork_in_purger_setname},
    {"nested_thread_start", nested_thread_start}, {"main_exit_raw_thread", main_exit_raw_thread},
    {"main_exit_atexit_thread", main_exit_atexit_thread}, {"main_exit_thread_chain", main_exit_thread_chain},
    {"main_exit_threads_at_once", main_exit_threads_at_once}, {"main_exit_thread_churn", main_exit_thread_churn},
    {"main_exit_atexit_allocates", main_exit_atexit_allocates},
    {"main_exit_last_thread_state", main_exit_last_thread_state}, {"purger_start_race", purger_start_race},
};

int main(int argc, char **argv) {
    if (getenv("RETENTION_DLOPEN")) dlopen_child(argc > 1 ? argv[1] : "");
    if (getenv("RETENTION_NESTED")) nested_child();
    const struct test_case *c = select_case(cases, sizeof cases / sizeof cases[0], argc, argv);
    stats_get = (int (*)(swm_stats_t *))dlsym(RTLD_DEFAULT, "swm_stats_get");
    purger_wakeups = (uint64_t (*)(void))dlsym(RTLD_DEFAULT, "swm_purger_wakeups");
    CHECKF(stats_get != NULL, "run with swmalloc preloaded");
    CHECKF(purger_wakeups != NULL || strncmp(c->name, "purger", 6) != 0, "swm_purger_wakeups not found");
    running_case = c->name;
    c->run();
    printf("ok %s\n", c->name);
    return 0;
}
