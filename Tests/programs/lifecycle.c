/* lifecycle.c — concurrency tests of the heap and segment lifecycle: `lifecycle CASE`
 * (or `lifecycle list`). Each case prints "ok CASE" and exits 0, or names what failed and
 * exits 1. Runs linked to (or preloaded with) swmalloc; swm_validate is found with dlsym.
 *
 *   remote_free_vs_exit   producers allocate blocks, hand them over and exit at once, so
 *                         their heaps detach and abandon segments while consumers free the
 *                         blocks remotely; other threads adopt the abandoned segments.
 *                         Every block's content is checked before it is freed.
 *   fork_under_lock_churn threads keep taking every allocator lock (thread start/exit: the
 *                         heap registry; emptied segments: the segment cache and the
 *                         abandoned list; aligned blocks above 2 MiB: their list) while the
 *                         main thread forks; each child allocates, frees, starts a thread,
 *                         validates and exits 0 within its time limit (a lock inherited
 *                         held would hang it).
 *   producer_consumer_large  one thread allocates 256 KiB blocks that another frees, at
 *                         most 18 live (4.5 MiB): swmalloc's mapped memory must stay a
 *                         small multiple of that (the owner collects the remote frees of
 *                         its large pages before it maps more; before the fix: 5 GiB).
 *   collect_only_pages    a thread allocates and frees one block of every size class, so
 *                         each class keeps its emptied only page; swm_collect must retire
 *                         them (before the fix: 16 MiB stayed in pages holding no block).
 *   parked_heaps          with the background purger running, 200 threads one after the
 *                         other each free the previous one's 2,000 blocks (checked) and
 *                         allocate 2,000: each takes over the exited thread's parked heap,
 *                         so mapped memory must stay flat (a parked heap left unused beside
 *                         a new one mapped 690 MB in a test run); then the last one's
 *                         blocks are freed and the parked heap must give its pages back:
 *                         at once on swm_collect, or within the purge delay with every
 *                         thread asleep.
 *   fork_child_thread_first  a fork child's first allocation slow path is a new thread's:
 *                         the forking thread must keep its heap (validated), and three
 *                         threads then churn checked blocks without one overwritten.
 *   parked_heaps_bounded  short-lived producers and consumers for 3 s (about 1,000
 *                         threads a second): the pages in use (swm_stats active) must
 *                         stay under 96 MiB, the heaps parked at once being bounded.
 *   fork_during_purge     (purge_delay_ms=0) another thread frees every block of some of
 *                         the main thread's large pages, so the purger retires them (the
 *                         heap's span lock held, the registry lock not), while the main
 *                         thread forks: each child's heap must validate (before the fix a
 *                         child inherited a heap half-changed by the purger).
 *   fork_parked_release   (purge_delay_ms=1) threads exit, their heaps park and the purger
 *                         releases them, while the main thread forks: each child, after
 *                         swm_collect, must count exactly one heap (before the fix, a heap
 *                         the purger was releasing was subtracted twice: 0 or 2^64 − 1).
 *   fork_grandchildren    fork_under_lock_churn in a fork child (its forks took no lock
 *                         before the fix: its count of held locks kept the parent's fork's).
 *   last_round_threads    threads whose first allocator call comes in the last round of
 *                         pthread's key destructors (swmalloc's key is set too late to
 *                         run): live heaps must stay bounded, and swm_collect must give
 *                         them all up (before the fix each such thread kept a heap and a
 *                         4 MiB segment for good).
 *   last_round_two_starters  (run with background=0) last_round_threads with two threads
 *                         starting them, eight at a time, and 300 blocks allocated and
 *                         freed in each last-round destructor: live heaps must stay under
 *                         200 (before the fix the reaper's mark counted heaps that
 *                         attached while it gave heaps up, and grew with each look:
 *                         300 … 1,700 heaps for 4,000 threads; review R39).
 *   fork_during_reap      (run with background=0,purge_delay_ms=0) 63 threads end in the
 *                         last destructor round, leaving their heaps; a thread's
 *                         swm_collect gives them up while the main thread forks, from
 *                         the moment the heap count starts to fall, until the reap ends
 *                         (at most 64 children): each child, after swm_collect, counts one
 *                         heap (before the fix, the heaps the reaper had taken and not yet
 *                         given up stayed in the child for good: up to 62; review R42).
 *   abandoned_count_exact (run with background=0) threads start and end, trading blocks
 *                         through a shared table, while another calls swm_collect: every
 *                         swm_stats read (8 million, or 8 s) counts the abandoned
 *                         segments below 2^62 (before
 *                         the fix a segment was counted after it was on the list, and a
 *                         collect that took it first made the count 2^64 − 1; review R39).
 *   cancel_in_report      a thread cancelled while it prints malloc_stats: later reports
 *                         must not wait for the lock it held (before the fix: a hang).
 *   vfork_first_malloc    a thread without a heap vforks and the child mallocs: the heap
 *                         is the thread's, recorded as the child's. After the child is
 *                         gone, swm_collect must not give it up while the thread uses it
 *                         (it did, found by a review of the reaping: heaps 2 -> 1 -> 0,
 *                         then SIGSEGV, or the debug library's validator).
 *   late_destructor_blocks  (run with background=0) a thread's key destructor, of a key
 *                         created after swmalloc's, allocates 60,000 blocks of 16 … 515
 *                         bytes and keeps them (about 16 MB): each call is served by a heap
 *                         attached for that call, and mapped memory must stay within 64 MiB
 *                         (each call adopted the 16 full segments atop the abandoned list
 *                         and mapped a new one: 6.4 GB for 60,000 calls).
 *   vos_fork_under_limit  a thread forks in a loop while the main thread, under an address-
 *                         space limit 4 MiB above its size, calls VOS_MallocModule 200,000
 *                         times (each fails: the VOS region does not fit): it must finish (the
 *                         region was mapped under the VOS lock, and a refused mapping takes
 *                         the cache locks, which fork takes before the VOS lock: both waited
 *                         for ever, 3 runs of 3).
 *   release_window_lists  (debug library: its hook) a thread whose heap is released
 *                         (background=0) leaves a full page of 1,024 blocks abandoned;
 *                         in the release's window the hook has another thread free those
 *                         blocks and run swm_collect, whose pass retired that page through the released
 *                         heap's stale full list and filed its segment into that heap,
 *                         rewriting the abandoned list's links: another thread's abandoned
 *                         segment dropped off the list, its memory never collected
 *                         (abandoned_segments stayed 1 after its blocks were freed).
 *                         The other thread's segment is abandoned after the page filled
 *                         (its owner would adopt it for the page's class otherwise).
 *   fork_during_release   (debug library: its hook) a fork while a heap attached for one
 *                         call of a key destructor (owner task 0) is being released, its
 *                         span lock held: the child must let that heap go (its heaps count
 *                         back to 1). It kept it in the registry, busy for good, and its
 *                         purger, finding it busy, woke once per purge delay for ever.
 *   release_window_churn  the outside review's pattern as a stress: for 3 s, 32 threads at
 *                         a time whose first call frees a block an exited thread allocated,
 *                         and whose key destructor frees and allocates blocks over three
 *                         rounds, every block checked, the purger passing every millisecond
 *                         (purge_delay_ms=1), the debug library's hook holding each release
 *                         open 0.2 ms. Live blocks were handed out again in 2–3 % of the
 *                         review's 5 s runs (release_window_lists is the deterministic case).
 *   join_after_big_frees  a thread created with its own stack (so the main thread allocated
 *                         its TLS vector), 6 MiB of 512 KiB blocks written and freed, then
 *                         pthread_join: glibc frees the thread's TLS vector while it holds
 *                         its stack-cache lock, and a free must never start the purger
 *                         (pthread_create takes that lock: a version that started it from
 *                         free hung here, 3 runs of 3).
 *   abandoned_walks_bounded  (background=0, purge_delay_ms=1000; debug library: its hook)
 *                         four threads exit leaving blocks, so their segments are
 *                         abandoned, then 300 threads one after the other each allocate
 *                         one block of 40 classes: the walks of the abandoned list (which
 *                         a heap makes in the purger's place) must stay within one per
 *                         half purge delay (every new heap's first periodic slow path
 *                         walked it, under the list's lock: an outside review's threads
 *                         allocating in key destructors queued on it), and go on at that
 *                         pace: later threads must still make one.
 *   fork_from_exit_destructor  a thread's key destructor (its key created after
 *                         swmalloc's, so swmalloc's destructor already ran for it) forks; in
 *                         the child that thread is the main thread: it starts two detached
 *                         threads that allocate and free 64 MiB ten times (the purger
 *                         starts), then ends. The child must end with its last thread. It
 *                         never did: swmalloc's destructor does not run again for that
 *                         thread, so nothing stopped the child's purger (review R14).
 *   fork_after_signal     (stats_signal=10) a second SIGUSR1 arrives while the reporter
 *                         waits for a report another thread writes into a full pipe, so
 *                         the request stays raised; then the process forks. The child got
 *                         no signal: its first slow path must not start a reporter (it
 *                         did, and wrote a second report of its own, interleaved with the
 *                         parent's in a shared file: review R45). */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <semaphore.h>
#include "swmalloc.h"

/** swm_validate of the library in the process, or NULL. */
static int (*validate)(void);

/** Fails the case with a message. */
static void fail(const char *what) {
    fprintf(stderr, "lifecycle FAIL: %s\n", what);
    exit(1);
}

/** swm_stats_get and swm_collect of the library in the process (the cases that need
 *  them fail without). */
static int (*stats_get)(swm_stats_t *);
static size_t (*collect_all)(void);

/** Finds swm_stats_get and swm_collect, or fails. */
static void need_stats(void) {
    stats_get = (int (*)(swm_stats_t *))dlsym(RTLD_DEFAULT, "swm_stats_get");
    collect_all = (size_t (*)(void))dlsym(RTLD_DEFAULT, "swm_collect");
    if (!stats_get || !collect_all) fail("swm_stats_get or swm_collect not found: run with swmalloc");
}


/* ---- remote_free_vs_exit ---- */

#define SLOTS 4096
static void *_Atomic slots[SLOTS];
static atomic_int producing;

/** Fills a block with a pattern derived from its address. */
static void fill(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i += 64) p[i] = (unsigned char)(((uintptr_t)p >> 4) + i);
}

/** Checks the pattern of `fill`. */
static int intact(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i += 64)
        if (p[i] != (unsigned char)(((uintptr_t)p >> 4) + i)) return 0;
    return 1;
}

/** Size of the block in slot i: small, medium and large blocks. */
static size_t slot_size(unsigned i) { return i % 7 == 0 ? 200000 : i % 3 == 0 ? 3000 : 48; }

/** A producer: allocates into empty slots, then exits (its heap detaches). */
static void *producer(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int k = 0; k < 256; k++) {
        seed = seed * 1103515245u + 12345u;
        unsigned i = (seed >> 8) % SLOTS;
        size_t n = slot_size(i);
        unsigned char *p = malloc(n);
        if (!p) fail("malloc returned NULL");
        fill(p, n);
        void *expected = NULL;
        if (!atomic_compare_exchange_strong(&slots[i], &expected, p)) free(p);
    }
    return NULL;
}

/** A consumer: takes blocks out of the slots, checks and frees them (remote frees). */
static void *consumer(void *arg) {
    (void)arg;
    for (;;) {
        int found = 0;
        for (unsigned i = 0; i < SLOTS; i++) {
            void *p = atomic_exchange(&slots[i], NULL);
            if (!p) continue;
            found = 1;
            if (!intact(p, slot_size(i))) fail("a block's content changed while it was live");
            free(p);
        }
        if (!found && !atomic_load(&producing)) break;
    }
    if (validate && validate() != 0) fail("consumer heap invalid");
    return NULL;
}

static void remote_free_vs_exit(void) {
    atomic_store(&producing, 1);
    pthread_t consumers[2];
    for (int c = 0; c < 2; c++) pthread_create(&consumers[c], NULL, consumer, NULL);
    for (int round = 0; round < 100; round++) {
        pthread_t p[3];
        for (int k = 0; k < 3; k++) pthread_create(&p[k], NULL, producer, (void *)(uintptr_t)(round * 3 + k + 1));
        for (int k = 0; k < 3; k++) pthread_join(p[k], NULL);
    }
    atomic_store(&producing, 0);
    for (int c = 0; c < 2; c++) pthread_join(consumers[c], NULL);
    if (validate && validate() != 0) fail("main heap invalid");
}

/* ---- fork_under_lock_churn ---- */

static atomic_int churning;

/** Starts and joins short threads that allocate: the heap registry's lock. */
static void *thread_churn(void *arg) {
    (void)arg;
    while (atomic_load(&churning)) {
        pthread_t t;
        if (pthread_create(&t, NULL, producer, (void *)(uintptr_t)7) == 0) pthread_join(t, NULL);
    }
    return NULL;
}

/** Empties segments and aligns above 2 MiB: the segment cache's and the over-aligned
 *  list's locks. */
static void *segment_churn(void *arg) {
    (void)arg;
    while (atomic_load(&churning)) {
        void *big[12];
        for (int i = 0; i < 12; i++) big[i] = malloc(2u << 20);
        for (int i = 0; i < 12; i++) free(big[i]);
        void *aligned = aligned_alloc(4u << 20, 4096);
        free(aligned);
    }
    return NULL;
}

/** The child's work after fork: allocate, free, start a thread, validate. */
static void *child_thread(void *arg) {
    (void)arg;
    void *p = malloc(1000);
    free(p);
    return NULL;
}

static void fork_under_lock_churn(void) {
    atomic_store(&churning, 1);
    pthread_t t[3];
    pthread_create(&t[0], NULL, thread_churn, NULL);
    pthread_create(&t[1], NULL, segment_churn, NULL);
    pthread_create(&t[2], NULL, consumer, NULL);
    for (int i = 0; i < 150; i++) {
        pid_t pid = fork();
        if (pid < 0) fail("fork failed");
        if (pid == 0) {
            alarm(10);  /* a lock inherited held would hang the child: die instead */
            void *blocks[64];
            for (int k = 0; k < 64; k++) blocks[k] = malloc((size_t)k * 100 + 1);
            for (int k = 0; k < 64; k++) free(blocks[k]);
            void *big = malloc(3u << 20);
            free(big);
            void *aligned = aligned_alloc(4u << 20, 100);
            free(aligned);
            pthread_t c;
            if (pthread_create(&c, NULL, child_thread, NULL) != 0) _exit(3);
            pthread_join(c, NULL);
            _exit(validate && validate() != 0 ? 2 : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("a child forked under lock churn failed or hung");
    }
    atomic_store(&churning, 0);
    for (int k = 0; k < 3; k++) pthread_join(t[k], NULL);
}

/* ---- producer_consumer_large ---- */

#define QUEUE 16
#define HANDOFFS 20000
static void *queue[QUEUE];
static sem_t queue_full, queue_free;

/** The consumer: frees every block the producer hands over (remote frees). */
static void *large_consumer(void *arg) {
    (void)arg;
    for (int i = 0, tail = 0; i < HANDOFFS; i++, tail = (tail + 1) % QUEUE) {
        sem_wait(&queue_full);
        void *p = queue[tail];
        sem_post(&queue_free);
        free(p);
    }
    return NULL;
}

static void producer_consumer_large(void) {
    int (*stats)(swm_stats_t *) = (int (*)(swm_stats_t *))dlsym(RTLD_DEFAULT, "swm_stats_get");
    if (!stats) fail("swm_stats_get not found: run with swmalloc");
    sem_init(&queue_full, 0, 0);
    sem_init(&queue_free, 0, QUEUE);
    pthread_t consumer_thread;
    pthread_create(&consumer_thread, NULL, large_consumer, NULL);
    for (int i = 0, head = 0; i < HANDOFFS; i++, head = (head + 1) % QUEUE) {
        void *p = malloc(256 * 1024);
        if (!p) fail("malloc returned NULL");
        memset(p, 1, 4096);
        sem_wait(&queue_free);
        queue[head] = p;
        sem_post(&queue_full);
    }
    pthread_join(consumer_thread, NULL);
    swm_stats_t st;
    stats(&st);
    if (st.mapped > (64u << 20)) {
        fprintf(stderr, "mapped %zu MiB for at most 18 live 256 KiB blocks\n", st.mapped >> 20);
        fail("large blocks freed by another thread are not reused");
    }
}

/* ---- collect_only_pages ---- */

static void collect_only_pages(void) {
    int (*stats)(swm_stats_t *) = (int (*)(swm_stats_t *))dlsym(RTLD_DEFAULT, "swm_stats_get");
    void (*collect)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "swm_collect");
    unsigned (*count)(void) = (unsigned (*)(void))dlsym(RTLD_DEFAULT, "swm_class_count");
    size_t (*size)(unsigned) = (size_t (*)(unsigned))dlsym(RTLD_DEFAULT, "swm_class_size");
    if (!stats || !collect || !count || !size) fail("swmalloc's API not found: run with swmalloc");
    void *blocks[256];
    unsigned n = count();
    if (n > 256) fail("more classes than expected");
    for (unsigned c = 0; c < n; c++) blocks[c] = malloc(size(c));
    for (unsigned c = 0; c < n; c++) free(blocks[c]);
    collect();
    swm_stats_t st;
    stats(&st);
    if (st.active > (1u << 20)) {
        fprintf(stderr, "%zu KiB still in pages after swm_collect with nothing allocated\n", st.active >> 10);
        fail("swm_collect keeps emptied only pages");
    }
}

/* ---- parked_heaps ---- */

#define PARKED_BLOCKS 2000
static unsigned char *parked_blocks[PARKED_BLOCKS];

/** Size of parked block i: 16 ... 4,000 bytes. */
static size_t parked_size(unsigned i) { return 16 + (i * 2654435761u >> 7) % 3985; }

/** One thread of the chain: frees the previous thread's blocks (checked), allocates its own. */
static void *parked_step(void *arg) {
    (void)arg;
    for (unsigned i = 0; i < PARKED_BLOCKS; i++) {
        if (parked_blocks[i] && !intact(parked_blocks[i], parked_size(i))) fail("a block's content changed while it was live");
        free(parked_blocks[i]);
        parked_blocks[i] = malloc(parked_size(i));
        if (!parked_blocks[i]) fail("malloc returned NULL");
        fill(parked_blocks[i], parked_size(i));
    }
    if (validate && validate() != 0) fail("a chain thread's heap is invalid");
    return NULL;
}

/** True when a thread of this process is named `name` (/proc/self/task/N/comm). */
static int thread_named(const char *name) {
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks) fail("opendir /proc/self/task");
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(tasks)) != NULL) {
        char path[300], comm[32];
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, comm, sizeof comm - 1);
        close(fd);
        found = n > 0 && !strncmp(comm, name, strlen(name));
    }
    closedir(tasks);
    return found;
}

/** Runs the chain of `threads` threads, one after the other. */
static void parked_chain(int threads) {
    for (int t = 0; t < threads; t++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, parked_step, NULL) != 0) fail("pthread_create failed");
        pthread_join(thread, NULL);
    }
}

/** Frees the chain's live blocks from the main thread (remote frees into the parked heap). */
static void parked_free_all(void) {
    for (unsigned i = 0; i < PARKED_BLOCKS; i++) {
        free(parked_blocks[i]);
        parked_blocks[i] = NULL;
    }
}

static void parked_heaps(void) {
    int (*stats)(swm_stats_t *) = (int (*)(swm_stats_t *))dlsym(RTLD_DEFAULT, "swm_stats_get");
    size_t (*collect)(void) = (size_t (*)(void))dlsym(RTLD_DEFAULT, "swm_collect");
    if (!stats || !collect) fail("swmalloc's API not found: run with swmalloc");
    /* Map 40 MiB, then take slow paths: the purger starts once 32 MiB are mapped. */
    void *big[40];
    for (int i = 0; i < 40; i++) big[i] = malloc(1u << 20);
    for (int i = 0; i < 40; i++) free(big[i]);
    for (int i = 0; i < 64; i++) free(malloc((size_t)(200 + i) << 10));
    if (!thread_named("swm-purger")) fail("the purger did not start after 40 MiB were mapped");

    parked_chain(20);
    swm_stats_t before, after;
    stats(&before);
    parked_chain(200);
    stats(&after);
    if (after.mapped > before.mapped + (16u << 20)) {
        fprintf(stderr, "mapped %zu MiB before 200 threads, %zu MiB after\n", before.mapped >> 20, after.mapped >> 20);
        fail("a new thread does not reuse the exited thread's memory");
    }
    if (after.heaps != 1) fail("an exited thread's heap is still counted");

    parked_free_all();
    collect();
    stats(&after);
    if (after.active > (2u << 20)) {
        fprintf(stderr, "%zu KiB in pages after swm_collect, nothing allocated by the exited threads\n", after.active >> 10);
        fail("swm_collect does not release parked heaps");
    }

    parked_chain(3);
    parked_free_all();
    usleep(250000 + 500000);   /* the default purge delay, and a margin */
    stats(&after);
    if (after.active > (2u << 20)) {
        fprintf(stderr, "%zu KiB in pages 750 ms after the last free, every thread asleep\n", after.active >> 10);
        fail("a parked heap keeps its pages after the purge delay");
    }
    if (validate && validate() != 0) fail("main heap invalid");
}

/* ---- parked_heaps_bounded ---- */

#define HANDOFF 4096
static void *_Atomic handoff[HANDOFF];
static atomic_int handoff_stop;

/** A short-lived producer: 2,000 blocks of 16 … 2,015 bytes into random free slots. */
static void *short_producer(void *arg) {
    uint64_t r = (uintptr_t)arg * 77 + 1;
    for (int i = 0; i < 2000 && !handoff_stop; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        size_t n = 16 + r % 2000;
        unsigned char *p = malloc(n);
        if (!p) fail("malloc");
        memset(p, (int)(n & 0xff), n);
        unsigned k = (unsigned)(r >> 20) % HANDOFF;
        void *expected = NULL;
        while (!atomic_compare_exchange_weak(&handoff[k], &expected, p)) {
            expected = NULL;
            k = (k + 1) % HANDOFF;
            if (handoff_stop) { free(p); return NULL; }
        }
    }
    return NULL;
}

/** A short-lived consumer: frees up to 2,000 blocks it finds in the slots. */
static void *short_consumer(void *arg) {
    uint64_t r = (uintptr_t)arg * 91 + 3;
    int got = 0;
    for (int tries = 0; got < 2000 && tries < 200000 && !handoff_stop; tries++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        void *p = atomic_exchange(&handoff[(unsigned)(r % HANDOFF)], NULL);
        if (p) { free(p); got++; }
    }
    return NULL;
}

/** Short-lived producers and consumers, two of each alive at a time, for 3 s: the pages
 *  that exited threads' heaps hold must stay bounded (parked heaps are). Before the bound
 *  on parked heaps, 200-280 MB of pages held a few KB of blocks (8 MB with background=0). */
static void parked_heaps_bounded(void) {
    int (*stats)(swm_stats_t *) = (int (*)(swm_stats_t *))dlsym(RTLD_DEFAULT, "swm_stats_get");
    if (!stats) fail("swm_stats_get not found: run with swmalloc");
    pthread_t producers[2], consumers[2];
    uintptr_t serial = 1;
    for (int i = 0; i < 2; i++) {
        if (pthread_create(&producers[i], NULL, short_producer, (void *)serial++) != 0) fail("pthread_create");
        if (pthread_create(&consumers[i], NULL, short_consumer, (void *)serial++) != 0) fail("pthread_create");
    }
    size_t most = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        for (int i = 0; i < 2; i++) {
            if (pthread_tryjoin_np(producers[i], NULL) == 0
                && pthread_create(&producers[i], NULL, short_producer, (void *)serial++) != 0) fail("pthread_create");
            if (pthread_tryjoin_np(consumers[i], NULL) == 0
                && pthread_create(&consumers[i], NULL, short_consumer, (void *)serial++) != 0) fail("pthread_create");
        }
        swm_stats_t st;
        stats(&st);
        if (st.active > most) most = st.active;
        usleep(1000);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 3) break;
    }
    handoff_stop = 1;
    for (int i = 0; i < 2; i++) {
        pthread_join(producers[i], NULL);
        pthread_join(consumers[i], NULL);
    }
    for (int k = 0; k < HANDOFF; k++) free(handoff[k]);
    fprintf(stderr, "parked_heaps_bounded: %lu threads, pages in use peaked at %zu MiB\n",
            (unsigned long)serial - 1, most >> 20);
    if (most > (size_t)96 << 20) fail("pages held by exited threads' heaps grew with the thread rate");
}

/* ---- fork_child_thread_first ---- */

enum { FORK_KEEP = 2000, FORK_LIVE = 256 };
static void *fork_keep[FORK_KEEP];

static void *no_op(void *arg) { return arg; }

static void *first_malloc(void *arg) {
    void *volatile p = malloc(64);
    free(p);
    return arg;
}

/** Replaces random blocks of its own `ops` times, checking each one's bytes before it
 *  frees it; returns non-NULL when one was overwritten. */
static void *own_blocks(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    uint64_t r = id * 0x9E3779B97F4A7C15ULL + 1;
    unsigned char *mine[FORK_LIVE] = {0};
    size_t len[FORK_LIVE] = {0};
    void *bad = NULL;
    for (int i = 0; i < 100000 && !bad; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        unsigned j = (unsigned)(r % FORK_LIVE);
        unsigned char mark = (unsigned char)(id * 16 + j);
        if (mine[j]) {
            for (size_t k = 0; k < len[j]; k++)
                if (mine[j][k] != mark) { bad = mine[j]; break; }
            free(mine[j]);
        }
        len[j] = 16 + (r >> 20) % 1000;
        mine[j] = malloc(len[j]);
        if (!mine[j]) return (void *)1;
        memset(mine[j], mark, len[j]);
    }
    for (unsigned j = 0; j < FORK_LIVE; j++) free(mine[j]);
    return bad;
}

/** A fork child whose first allocation slow path is a new thread's: only the heaps of the
 *  threads the child does not have may be let go, not the forking thread's, which keeps
 *  allocating from its pages. Before the fix that first slow path gave up every heap but
 *  its own: the forking thread's pages were abandoned and adopted by other threads while
 *  it still allocated from them (blocks overwritten, SIGSEGV, the validator's complaints). */
static void fork_child_thread_first(void) {
    pthread_t t;
    /* A thread started and joined leaves its stack cached: the child's pthread_create
     * then needs no malloc on the forking thread. */
    if (pthread_create(&t, NULL, no_op, NULL) != 0) fail("pthread_create");
    pthread_join(t, NULL);
    for (int i = 0; i < FORK_KEEP; i++) {
        fork_keep[i] = malloc(16 + (size_t)(i * 37) % 1000);
        if (!fork_keep[i]) fail("malloc");
    }
    for (int i = 0; i < FORK_KEEP; i += 2) free(fork_keep[i]);
    pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        alarm(60);
        pthread_t w[2];
        if (pthread_create(&t, NULL, first_malloc, NULL) != 0) _exit(2);
        pthread_join(t, NULL);
        if (validate && validate() != 0) _exit(3);
        for (uintptr_t i = 0; i < 2; i++)
            if (pthread_create(&w[i], NULL, own_blocks, (void *)(i + 1)) != 0) _exit(2);
        void *bad = own_blocks((void *)3);
        for (int i = 0; i < 2; i++) {
            void *r;
            pthread_join(w[i], &r);
            if (r) bad = r;
        }
        if (bad) _exit(4);
        if (validate && validate() != 0) _exit(3);
        for (int i = 1; i < FORK_KEEP; i += 2) free(fork_keep[i]);
        _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) fail("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child status %#x (3: heap invalid, 4: a block overwritten)\n", status);
        fail("the fork child's forking thread lost its heap to another thread");
    }
    for (int i = 1; i < FORK_KEEP; i += 2) free(fork_keep[i]);
}

/* ---- fork_during_purge ---- */

enum { FDP_SEGMENTS = 24, FDP_PER = 21, FDP_SIZE = 150000, FDP_BLOCKS = FDP_SEGMENTS * FDP_PER };
static void *fdp_blocks[FDP_BLOCKS], *fdp_handed[FDP_BLOCKS];
static atomic_int fdp_count;
static sem_t fdp_go, fdp_done;

/** Frees the blocks handed to it each round, until the count is negative. */
static void *fdp_consumer(void *arg) {
    (void)arg;
    for (;;) {
        sem_wait(&fdp_go);
        int n = atomic_load(&fdp_count);
        if (n < 0) return NULL;
        for (int i = 0; i < n; i++) free(fdp_handed[i]);
        sem_post(&fdp_done);
    }
}

/** Forks and expects the child's heap to validate, and the child to allocate, free and
 *  trim (a lock the fork left held would hang it: the alarm ends it; an outside review,
 *  R51, found a child that only validated passing with the child's fork handler
 *  removed); returns the child's status. */
static int fork_and_validate(void) {
    pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        alarm(20);
        if (validate && validate() != 0) _exit(3);
        static const size_t sizes[] = {64, 5000, FDP_SIZE, (size_t)8 << 20};
        for (int i = 0; i < 4; i++) {
            char *p = malloc(sizes[i]);
            if (p == NULL) _exit(5);
            memset(p, 2, sizes[i]);
            free(p);
        }
        malloc_trim(0);
        _exit(validate && validate() != 0 ? 3 : 0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) fail("waitpid");
    return status;
}

/** 150,000-byte blocks take 3 slices each, 21 fill a segment's 63: every round frees a
 *  whole large page in each segment from another thread while this one forks 4 times. */
static void fork_during_purge(void) {
    sem_init(&fdp_go, 0, 0);
    sem_init(&fdp_done, 0, 0);
    pthread_t consumer;
    pthread_create(&consumer, NULL, fdp_consumer, NULL);
    for (int i = 0; i < FDP_BLOCKS; i++) {
        fdp_blocks[i] = malloc(FDP_SIZE);
        if (!fdp_blocks[i]) fail("malloc returned NULL");
        memset(fdp_blocks[i], 1, FDP_SIZE);
    }
    for (int round = 0; round < 60; round++) {
        int n = 0;
        for (int i = round % FDP_PER; i < FDP_BLOCKS; i += FDP_PER) fdp_handed[n++] = fdp_blocks[i];
        atomic_store(&fdp_count, n);
        sem_post(&fdp_go);
        for (int f = 0; f < 4; f++) {
            int status = fork_and_validate();
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "round %d: child status %#x\n", round, status);
                fail("a fork child inherited a heap the purger had half changed");
            }
        }
        sem_wait(&fdp_done);
        usleep(2000);
        for (int i = round % FDP_PER; i < FDP_BLOCKS; i += FDP_PER) {
            fdp_blocks[i] = malloc(FDP_SIZE);
            if (!fdp_blocks[i]) fail("malloc returned NULL");
            memset(fdp_blocks[i], 1, FDP_SIZE);
        }
    }
    atomic_store(&fdp_count, -1);
    sem_post(&fdp_go);
    pthread_join(consumer, NULL);
    for (int i = 0; i < FDP_BLOCKS; i++) free(fdp_blocks[i]);
}

/* ---- fork_parked_release ---- */

/** Leaves 1,000 live blocks of mixed sizes behind and exits (its heap parks). */
static void *fpr_worker(void *arg) {
    (void)arg;
    static __thread void *keep[2000];
    for (int i = 0; i < 2000; i++) {
        keep[i] = malloc(16 + (i * 37) % 2000);
        if (!keep[i]) fail("malloc returned NULL");
        memset(keep[i], 1, 16);
    }
    for (int i = 0; i < 2000; i += 2) free(keep[i]);
    return NULL;
}

static void fork_parked_release(void) {
    need_stats();
    for (int i = 0; i < 10; i++) {   /* 40 MiB mapped and freed: the purger starts */
        void *p = malloc(4 << 20);
        if (!p) fail("malloc returned NULL");
        memset(p, 1, 4 << 20);
        free(p);
    }
    for (int round = 0; round < 80; round++) {
        pthread_t t[8];
        for (int j = 0; j < 8; j++) pthread_create(&t[j], NULL, fpr_worker, NULL);
        for (int j = 0; j < 8; j++) pthread_join(t[j], NULL);
        for (int f = 0; f < 6; f++) {
            usleep(300);
            pid_t pid = fork();
            if (pid < 0) fail("fork");
            if (pid == 0) {
                alarm(20);
                collect_all();
                swm_stats_t s;
                stats_get(&s);
                if (s.heaps != 1) {
                    fprintf(stderr, "child: heaps = %zu\n", (size_t)s.heaps);
                    _exit(3);
                }
                _exit(0);
            }
            int status = 0;
            if (waitpid(pid, &status, 0) != pid) fail("waitpid");
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "round %d: child status %#x\n", round, status);
                fail("a fork child miscounted its heaps");
            }
        }
    }
}

/* ---- fork_grandchildren ---- */

/** fork_under_lock_churn, run by a fork child: its forks must take the locks too. */
static void fork_grandchildren(void) {
    free(malloc(100));
    pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        alarm(100);
        fork_under_lock_churn();
        _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) fail("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child status %#x\n", status);
        fail("a fork child's fork left a lock held in the grandchild");
    }
}

/* ---- last_round_threads ---- */

static pthread_key_t lrt_key;
/** Blocks each last-round destructor allocates and frees (last_round_two_starters: 300). */
static int lrt_blocks = 1;

/** Re-arms the key for pthread's first three destructor rounds; in the last, allocates,
 *  writes and frees `lrt_blocks` blocks of 200 … 3,149 bytes. */
static void lrt_destructor(void *value) {
    uintptr_t round = (uintptr_t)value;
    if (round < 4) {
        pthread_setspecific(lrt_key, (void *)(round + 1));
        return;
    }
    for (int i = 0; i < lrt_blocks; i++) {
        size_t size = 200 + (size_t)i * 37 % 2950;
        char *p = malloc(size);
        if (!p) abort();
        memset(p, 1, size);
        free(p);
    }
}

static void *lrt_thread(void *arg) {
    pthread_setspecific(lrt_key, (void *)1);
    return arg;
}

/** Starts one thread whose first allocation comes in the last destructor round, and
 *  joins it. */
static void lrt_run_one(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, lrt_thread, NULL) != 0) fail("pthread_create");
    pthread_join(t, NULL);
}

/** Finds the statistics and creates the key, whose last-round destructor allocates and
 *  frees `blocks` blocks. */
static void lrt_setup(int blocks) {
    need_stats();
    lrt_blocks = blocks;
    pthread_key_create(&lrt_key, lrt_destructor);
}

static void last_round_threads(void) {
    lrt_setup(1);
    size_t most = 0;
    for (int i = 0; i < 1000; i++) {
        lrt_run_one();
        swm_stats_t s;
        stats_get(&s);
        if (s.heaps > most) most = s.heaps;
    }
    if (most > 200) {
        fprintf(stderr, "live heaps reached %zu for 1 live thread\n", most);
        fail("heaps of threads that ended in the last destructor round were kept");
    }
    collect_all();
    swm_stats_t s;
    stats_get(&s);
    if (s.heaps != 1) {
        fprintf(stderr, "heaps after swm_collect: %zu\n", (size_t)s.heaps);
        fail("swm_collect kept the heaps of threads that are gone");
    }
}

/* ---- last_round_two_starters ---- */

static atomic_int lrs_running;

/** Starts and joins 125 rounds of eight such threads. */
static void *lrs_starter(void *arg) {
    for (int r = 0; r < 125; r++) {
        pthread_t t[8];
        for (int j = 0; j < 8; j++)
            if (pthread_create(&t[j], NULL, lrt_thread, NULL) != 0) fail("pthread_create");
        for (int j = 0; j < 8; j++) pthread_join(t[j], NULL);
    }
    atomic_fetch_sub(&lrs_running, 1);
    return arg;
}

static void last_round_two_starters(void) {
    lrt_setup(300);
    pthread_t starters[2];
    atomic_store(&lrs_running, 2);
    for (int i = 0; i < 2; i++)
        if (pthread_create(&starters[i], NULL, lrs_starter, NULL) != 0) fail("pthread_create");
    size_t most = 0;
    while (atomic_load(&lrs_running) > 0) {
        swm_stats_t s;
        stats_get(&s);
        if (s.heaps > most) most = s.heaps;
        usleep(500);
    }
    for (int i = 0; i < 2; i++) pthread_join(starters[i], NULL);
    if (most > 200) {
        fprintf(stderr, "live heaps reached %zu for 3 live threads and 16 ending\n", most);
        fail("the heaps of threads that ended in the last destructor round piled up");
    }
}

/* ---- fork_during_reap ---- */

static atomic_int fdr_go, fdr_done;

static void *fdr_collector(void *arg) {
    while (!atomic_load(&fdr_go)) {}
    collect_all();
    atomic_store(&fdr_done, 1);
    return arg;
}

static void fork_during_reap(void) {
    lrt_setup(400);
    for (int i = 0; i < 63; i++) lrt_run_one();
    swm_stats_t s;
    stats_get(&s);
    size_t before = s.heaps;
    pthread_t collector;
    if (pthread_create(&collector, NULL, fdr_collector, NULL) != 0) fail("pthread_create");
    atomic_store(&fdr_go, 1);
    do stats_get(&s); while (s.heaps >= before && !atomic_load(&fdr_done));
    pid_t children[64];
    int forked = 0;
    while (!atomic_load(&fdr_done) && forked < 64) {
        pid_t pid = fork();
        if (pid < 0) fail("fork");
        if (pid == 0) {
            collect_all();
            stats_get(&s);
            if (s.heaps != 1) {
                fprintf(stderr, "a child forked during the reap: %zu heaps after swm_collect\n", (size_t)s.heaps);
                _exit(1);
            }
            if (validate && validate() != 0) _exit(2);
            _exit(0);
        }
        children[forked++] = pid;
    }
    int failed = 0;
    for (int i = 0; i < forked; i++) {
        int status = 0;
        if (waitpid(children[i], &status, 0) != children[i]) fail("waitpid");
        failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    pthread_join(collector, NULL);
    if (failed) {
        fprintf(stderr, "%d of %d children\n", failed, forked);
        fail("heaps a reaper was giving up at the fork stayed in the child");
    }
}

/* ---- abandoned_count_exact ---- */

#define ACE_SLOTS 4096
static void *_Atomic ace_slots[ACE_SLOTS];
static atomic_int ace_stop;

/** Puts up to 2,000 blocks of 16 … 3,015 bytes into random slots, freeing what was there. */
static void *ace_trader(void *arg) {
    uint64_t x = (uintptr_t)arg | 1;
    int n = (int)(x % 2000);
    for (int k = 0; k < n; k++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        void *fresh = malloc(16 + x % 3000);
        if (!fresh) abort();
        free(atomic_exchange(&ace_slots[(x >> 20) % ACE_SLOTS], fresh));
    }
    return NULL;
}

/** Starts and joins traders, three at a time, until told to stop. */
static void *ace_starter(void *arg) {
    uint64_t seed = 12345;
    while (!atomic_load(&ace_stop)) {
        pthread_t t[3];
        for (int j = 0; j < 3; j++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            if (pthread_create(&t[j], NULL, ace_trader, (void *)(uintptr_t)(seed >> 16)) != 0) fail("pthread_create");
        }
        for (int j = 0; j < 3; j++) pthread_join(t[j], NULL);
    }
    return arg;
}

static void *ace_collector(void *arg) {
    while (!atomic_load(&ace_stop)) {
        collect_all();
        usleep(3000);
    }
    return arg;
}

static void abandoned_count_exact(void) {
    need_stats();
    pthread_t starter, collector;
    if (pthread_create(&starter, NULL, ace_starter, NULL) != 0 || pthread_create(&collector, NULL, ace_collector, NULL) != 0)
        fail("pthread_create");
    size_t wrong = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int r = 0; r < 8000000 && !wrong; r++) {
        swm_stats_t s;
        stats_get(&s);
        if (s.abandoned_segments > (size_t)1 << 62) wrong = s.abandoned_segments;
        if (r % 4096 == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec >= 8) break;
        }
    }
    atomic_store(&ace_stop, 1);
    pthread_join(starter, NULL);
    pthread_join(collector, NULL);
    for (int i = 0; i < ACE_SLOTS; i++) free(atomic_exchange(&ace_slots[i], NULL));
    if (wrong) {
        fprintf(stderr, "abandoned_segments read %zu\n", wrong);
        fail("the count of abandoned segments went below zero");
    }
}

/* ---- cancel_in_report ---- */

/** Prints malloc_stats (into /dev/null) until cancelled. */
static void *cir_printer(void *arg) {
    (void)arg;
    for (;;) {
        malloc_stats();
        pthread_testcancel();
    }
    return NULL;
}

static void cancel_in_report(void) {
    alarm(30);   /* a report lock left held would hang the next report: die instead */
    int saved = dup(2);
    int devnull = open("/dev/null", O_WRONLY);
    if (saved < 0 || devnull < 0) fail("open /dev/null");
    dup2(devnull, 2);
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        pthread_create(&t, NULL, cir_printer, NULL);
        usleep(2000);
        pthread_cancel(t);
        void *result;
        pthread_join(t, &result);
        if (result != PTHREAD_CANCELED) fail("the printer was not cancelled");
        malloc_stats();
    }
    dup2(saved, 2);
    close(devnull);
    close(saved);
}

/* ---- vfork_first_malloc ---- */

static sem_t vfm_vforked, vfm_collected;

/** Vforks before its first allocation (the child's malloc attaches the thread's heap),
 *  then allocates and frees through slow paths after swm_collect ran. */
static void *vfm_thread(void *arg) {
    (void)arg;
    pid_t pid = vfork();
    if (pid == 0) {
        void *p = malloc(32);
        (void)p;
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    sem_post(&vfm_vforked);
    sem_wait(&vfm_collected);
    static __thread void *keep[4000];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 4000; i++) {
            keep[i] = malloc(16 + (size_t)(i % 50) * 64);
            if (!keep[i]) fail("malloc returned NULL");
            memset(keep[i], 1, 16);
        }
        for (int i = 0; i < 4000; i++) free(keep[i]);
    }
    if (validate && validate() != 0) fail("the vforking thread's heap is invalid");
    return NULL;
}

static void vfork_first_malloc(void) {
    need_stats();
    sem_init(&vfm_vforked, 0, 0);
    sem_init(&vfm_collected, 0, 0);
    free(malloc(8));
    pthread_t t;
    pthread_create(&t, NULL, vfm_thread, NULL);
    sem_wait(&vfm_vforked);
    swm_stats_t s;
    stats_get(&s);
    size_t before = s.heaps;
    collect_all();
    stats_get(&s);
    if (s.heaps != before) {
        fprintf(stderr, "heaps %zu before swm_collect, %zu after\n", before, (size_t)s.heaps);
        fail("swm_collect gave up the heap of a live thread");
    }
    sem_post(&vfm_collected);
    pthread_join(t, NULL);
    if (validate && validate() != 0) fail("the main thread's heap is invalid");
}

static pthread_key_t late_key;
enum { LATE_BLOCKS = 60000 };
static void *late_blocks[LATE_BLOCKS];

/** The late destructor: its allocations come after swmalloc's exit handler. */
static void late_destructor(void *value) {
    (void)value;
    for (int i = 0; i < LATE_BLOCKS; i++) {
        late_blocks[i] = malloc(16 + (size_t)(i % 500));
        if (!late_blocks[i]) fail("malloc in a late destructor returned NULL");
        memset(late_blocks[i], 1, 16);
    }
}

/** A thread that allocates once (it gets a heap), then sets the key `arg` points at, so
 *  that the key's destructor runs at its exit. */
static void *keyed_thread(void *arg) {
    free(malloc(10));
    pthread_setspecific(*(pthread_key_t *)arg, (void *)1);
    return NULL;
}

static void late_destructor_blocks(void) {
    need_stats();
    if (pthread_key_create(&late_key, late_destructor) != 0) fail("pthread_key_create");
    pthread_t t;
    if (pthread_create(&t, NULL, keyed_thread, &late_key) != 0) fail("pthread_create");
    pthread_join(t, NULL);
    swm_stats_t st;
    if (stats_get(&st) != 0) fail("swm_stats_get");
    if (st.mapped > ((size_t)64 << 20)) {
        fprintf(stderr, "lifecycle FAIL: %d blocks allocated in a late destructor: %zu MiB mapped, %zu segments\n",
                LATE_BLOCKS, st.mapped >> 20, st.segments);
        exit(1);
    }
    for (int i = 0; i < LATE_BLOCKS; i++) free(late_blocks[i]);
    if (validate && validate() != 0) fail("the heaps are invalid");
}

static volatile int vos_fork_stop;

static void *vos_forker(void *arg) {
    while (!vos_fork_stop) {
        pid_t child = fork();
        if (child == 0) _exit(0);
        if (child > 0) waitpid(child, NULL, 0);
    }
    return arg;
}

static long address_space_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0;
    if (!f || fscanf(f, "%ld", &pages) != 1) fail("/proc/self/statm");
    fclose(f);
    return pages * 4096;
}

static void vos_fork_under_limit(void) {
    void *(*vos_malloc)(unsigned long, unsigned long) =
        (void *(*)(unsigned long, unsigned long))dlsym(RTLD_DEFAULT, "VOS_MallocModule");
    void (*vos_free)(unsigned long, void *, const unsigned char *, unsigned) =
        (void (*)(unsigned long, void *, const unsigned char *, unsigned))dlsym(RTLD_DEFAULT, "VOS_Free_Debug");
    if (!vos_malloc || !vos_free) fail("VOS functions not found: run with swmalloc");
    for (int i = 0; i < 64; i++) free(malloc(100));
    pthread_t t;
    if (pthread_create(&t, NULL, vos_forker, NULL) != 0) fail("pthread_create");
    usleep(1000);
    struct rlimit limit = {(rlim_t)address_space_bytes() + (4 << 20), (rlim_t)address_space_bytes() + (4 << 20)};
    if (setrlimit(RLIMIT_AS, &limit) != 0) fail("setrlimit");
    for (int i = 0; i < 200000; i++) {
        void *p = vos_malloc(16, 7);
        if (p) vos_free(0, p, NULL, 0);
    }
    vos_fork_stop = 1;
    pthread_join(t, NULL);
}

static void *join_target(void *arg) { return arg; }

static void join_after_big_frees(void) {
    static char stack[1 << 20] __attribute__((aligned(4096)));
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0 || pthread_attr_setstack(&attr, stack, sizeof stack) != 0) fail("thread attributes");
    pthread_t t;
    if (pthread_create(&t, &attr, join_target, NULL) != 0) fail("pthread_create");
    void *blocks[12];
    for (int i = 0; i < 12; i++) {
        blocks[i] = malloc(512 * 1024);
        if (!blocks[i]) fail("malloc");
        memset(blocks[i], 1, 512 * 1024);
    }
    for (int i = 0; i < 12; i++) free(blocks[i]);
    /* A hang here blocks every signal (inside pthread_create): the runner's time limit
     * ends it. */
    if (pthread_join(t, NULL) != 0) fail("pthread_join");
}

/* ---- release_window_lists ---- */

enum { RWL_PAGE = 1024, RWL_OTHER = 100 };
static void *rwl_full[RWL_PAGE + 1], *rwl_other[RWL_OTHER];
static __thread int rwl_is_target;
static int rwl_done;
static sem_t rwl_ready, rwl_go, rwl_window, rwl_collected;

/** In the target thread's release window: has the collector free its full page's
 *  blocks and run swm_collect (which an exiting thread may not), and waits for it. */
static void rwl_hook(void *heap) {
    (void)heap;
    if (!rwl_is_target || rwl_done) return;
    rwl_done = 1;
    sem_post(&rwl_window);
    sem_wait(&rwl_collected);
}

/** Waits for the window, then frees the full page's blocks and collects. */
static void *rwl_collector(void *arg) {
    sem_wait(&rwl_window);
    for (int i = 0; i < RWL_PAGE; i++) free(rwl_full[i]);
    collect_all();
    sem_post(&rwl_collected);
    return arg;
}

/** Leaves RWL_OTHER blocks in an abandoned segment. */
static void *rwl_other_thread(void *arg) {
    for (int i = 0; i < RWL_OTHER; i++)
        if (!(rwl_other[i] = malloc(64))) fail("malloc");
    return arg;
}

/** Fills a page of 64-byte blocks (on the full list once the next one is taken), frees
 *  the next one, and exits with the page full. */
static void *rwl_target_thread(void *arg) {
    rwl_is_target = 1;
    for (int i = 0; i <= RWL_PAGE; i++)
        if (!(rwl_full[i] = malloc(64))) fail("malloc");
    free(rwl_full[RWL_PAGE]);
    /* Large blocks until one lands in a second segment; freed, that segment becomes the
     * heap's spare (empty), which the release gives up while the field still names it. */
    void *large[8];
    int n = 0;
    uintptr_t first = (uintptr_t)rwl_full[0] >> 22;
    do {
        if (n == 8 || !(large[n] = malloc(1 << 20))) fail("malloc of a large block");
    } while ((uintptr_t)large[n++] >> 22 == first);
    for (int i = n - 1; i >= 0; i--) free(large[i]);
    sem_post(&rwl_ready);
    sem_wait(&rwl_go);   /* the other thread's segment is abandoned before this one */
    return arg;
}

static void release_window_lists(void) {
    need_stats();
    void (*set_hook)(void (*)(void *)) = (void (*)(void (*)(void *)))dlsym(RTLD_DEFAULT, "swm_debug_set_release_hook");
    if (!set_hook) fail("needs the debug library (its release hook): LifecycleTests runs this case on it only");
    set_hook(rwl_hook);
    sem_init(&rwl_ready, 0, 0);
    sem_init(&rwl_go, 0, 0);
    sem_init(&rwl_window, 0, 0);
    sem_init(&rwl_collected, 0, 0);
    pthread_t target, other, collector;
    if (pthread_create(&target, NULL, rwl_target_thread, NULL) != 0) fail("pthread_create");
    sem_wait(&rwl_ready);
    if (pthread_create(&other, NULL, rwl_other_thread, NULL) != 0) fail("pthread_create");
    pthread_join(other, NULL);
    if (pthread_create(&collector, NULL, rwl_collector, NULL) != 0) fail("pthread_create");
    sem_post(&rwl_go);
    pthread_join(target, NULL);
    pthread_join(collector, NULL);
    set_hook(NULL);
    if (!rwl_done) fail("the release hook did not run");
    for (int i = 0; i < RWL_OTHER; i++) free(rwl_other[i]);
    collect_all();
    swm_stats_t st;
    if (stats_get(&st) != 0) fail("swm_stats_get");
    if (st.abandoned_segments != 0) {
        fprintf(stderr, "lifecycle FAIL: %zu abandoned segments left after every block was freed and collected\n",
                st.abandoned_segments);
        exit(1);
    }
    if (validate && validate() != 0) fail("the main thread's heap is invalid");
}

/* ---- fork_during_release ---- */

static sem_t fdr_in_window;
static __thread volatile int fdr_in_destructor;
static pthread_key_t fdr_key;

/** Holds the release of the destructor's one-call heap open while main forks. */
static void fdr_hook(void *heap) {
    (void)heap;
    if (!fdr_in_destructor) return;
    sem_post(&fdr_in_window);
    struct timespec t = {0, 300000000};
    nanosleep(&t, NULL);
}

/** Allocates after swmalloc's exit handler ran: served by a heap attached for the call. */
static void fdr_destructor(void *value) {
    (void)value;
    fdr_in_destructor = 1;
    free(malloc(64));
    fdr_in_destructor = 0;
}

static void fork_during_release(void) {
    need_stats();
    void (*set_hook)(void (*)(void *)) = (void (*)(void (*)(void *)))dlsym(RTLD_DEFAULT, "swm_debug_set_release_hook");
    if (!set_hook) fail("needs the debug library (its release hook): LifecycleTests runs this case on it only");
    sem_init(&fdr_in_window, 0, 0);
    if (pthread_key_create(&fdr_key, fdr_destructor) != 0) fail("pthread_key_create");
    set_hook(fdr_hook);
    pthread_t t;
    if (pthread_create(&t, NULL, keyed_thread, &fdr_key) != 0) fail("pthread_create");
    sem_wait(&fdr_in_window);
    pid_t child = fork();
    if (child == 0) {
        free(malloc(200000));   /* the first slow path lets go of the parent's other heaps */
        swm_stats_t st;
        if (stats_get(&st) != 0) _exit(2);
        if (st.heaps != 1) {
            fprintf(stderr, "lifecycle FAIL: the fork child has %zu heaps, 1 expected\n", st.heaps);
            _exit(1);
        }
        _exit(0);
    }
    if (child < 0) fail("fork");
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("the fork child kept the heap being released");
    pthread_join(t, NULL);
    set_hook(NULL);
}

/* ---- release_window_churn ---- */

enum { RW_CAP = 2048, RW_THREADS = 32 };
static struct { unsigned char *p; size_t n; } rw_stack[RW_CAP];
static int rw_count;
static pthread_mutex_t rw_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t rw_key;

/** Holds a heap's release open (the debug library's hook). */
static void rw_hold(void *heap) {
    (void)heap;
    struct timespec t = {0, 200000};
    nanosleep(&t, NULL);
}

/** A new block of a random size (mostly small, some large, a few huge), filled. */
static void rw_put(unsigned *seed) {
    unsigned r = (unsigned)rand_r(seed);
    size_t n = r % 64 == 0 ? 2200000 + r % 500000 : r % 8 == 0 ? 16 + r % 200000 : 16 + r % 1500;
    unsigned char *p = malloc(n);
    if (!p) fail("malloc returned NULL");
    fill(p, n);
    pthread_mutex_lock(&rw_lock);
    if (rw_count < RW_CAP) { rw_stack[rw_count].p = p; rw_stack[rw_count].n = n; rw_count++; p = NULL; }
    pthread_mutex_unlock(&rw_lock);
    if (p) free(p);
}

/** Takes a block off the shared stack, checks it and frees it. */
static void rw_take(void) {
    unsigned char *p = NULL;
    size_t n = 0;
    pthread_mutex_lock(&rw_lock);
    if (rw_count > 0) { rw_count--; p = rw_stack[rw_count].p; n = rw_stack[rw_count].n; }
    pthread_mutex_unlock(&rw_lock);
    if (!p) return;
    if (!intact(p, n)) fail("a live block was overwritten");
    free(p);
}

/** Frees and allocates in three rounds of key destructors (after swmalloc's own). */
static void rw_destructor(void *value) {
    unsigned seed = (unsigned)(uintptr_t)value;
    for (int i = 0; i < 8; i++) rw_take();
    for (int i = 0; i < 8; i++) rw_put(&seed);
    if (((uintptr_t)value & 3) < 2) pthread_setspecific(rw_key, (void *)((uintptr_t)value + 1));
}

static void *rw_thread(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    rw_take();   /* the first call frees an exited thread's block */
    int n = 1 + rand_r(&seed) % 200;
    for (int i = 0; i < n; i++) {
        if (rand_r(&seed) % 3 == 0) rw_take();
        else rw_put(&seed);
    }
    pthread_setspecific(rw_key, (void *)(((uintptr_t)seed << 2) | 1));
    return NULL;
}

static void release_window_churn(void) {
    void (*set_hook)(void (*)(void *)) = (void (*)(void (*)(void *)))dlsym(RTLD_DEFAULT, "swm_debug_set_release_hook");
    if (set_hook) set_hook(rw_hold);
    if (pthread_key_create(&rw_key, rw_destructor) != 0) fail("pthread_key_create");
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    uintptr_t id = 0;
    do {
        pthread_t t[RW_THREADS];
        for (int i = 0; i < RW_THREADS; i++)
            if (pthread_create(&t[i], NULL, rw_thread, (void *)++id) != 0) fail("pthread_create");
        for (int i = 0; i < RW_THREADS; i++) pthread_join(t[i], NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec < 3);
    if (set_hook) set_hook(NULL);
    while (rw_count > 0) rw_take();
    if (validate && validate() != 0) fail("the main thread's heap is invalid");
}

/* ---- abandoned_walks_bounded ---- */

#define AWB_HOLDERS 4
#define AWB_BLOCKS 512
#define AWB_THREADS 300
#define AWB_CLASSES 40

static void *awb_blocks[AWB_HOLDERS][AWB_BLOCKS];
static atomic_long awb_walks;

/** The collect hook: counts the walks of the abandoned segments. */
static void awb_hook(void) { atomic_fetch_add(&awb_walks, 1); }

/** Allocates blocks that outlive the thread: its segment is abandoned at its exit. */
static void *awb_holder(void *arg) {
    long h = (long)arg;
    for (int i = 0; i < AWB_BLOCKS; i++) {
        size_t size = 16 + (size_t)(i % 64) * 16;
        awb_blocks[h][i] = malloc(size);
        if (!awb_blocks[h][i]) fail("malloc");
        memset(awb_blocks[h][i], (int)h + 1, size);
    }
    return NULL;
}

/** One block of each of AWB_CLASSES classes: more slow paths than one periodic round. */
static void *awb_thread(void *arg) {
    (void)arg;
    void *b[AWB_CLASSES];
    for (int i = 0; i < AWB_CLASSES; i++) {
        b[i] = malloc((size_t)(i + 1) * 16);
        if (!b[i]) fail("malloc");
        memset(b[i], 7, (size_t)(i + 1) * 16);
    }
    for (int i = 0; i < AWB_CLASSES; i++) free(b[i]);
    return NULL;
}

/** Runs one awb_thread to its end. */
static void awb_run_one(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, awb_thread, NULL) != 0) fail("pthread_create");
    pthread_join(t, NULL);
}

static double awb_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void abandoned_walks_bounded(void) {
    need_stats();
    void (*set_hook)(void (*)(void)) = (void (*)(void (*)(void)))dlsym(RTLD_DEFAULT, "swm_debug_set_collect_hook");
    if (!set_hook) fail("needs the debug library (its collect hook): LifecycleTests runs this case on it only");
    for (long h = 0; h < AWB_HOLDERS; h++) {
        pthread_t t;
        if (pthread_create(&t, NULL, awb_holder, (void *)h) != 0) fail("pthread_create");
        pthread_join(t, NULL);
    }
    swm_stats_t st;
    if (stats_get(&st) != 0) fail("swm_stats_get");
    if (st.abandoned_segments == 0) fail("no segment was abandoned: the case tests nothing");
    set_hook(awb_hook);
    double start = awb_now_ms();
    for (int i = 0; i < AWB_THREADS; i++) awb_run_one();
    double elapsed = awb_now_ms() - start;
    long walks = atomic_load(&awb_walks);
    long bound = (long)(elapsed / 500) + 2;
    if (walks > bound) {
        fprintf(stderr, "lifecycle FAIL: %ld walks of the abandoned segments by %d threads in %.0f ms "
                "(at most %ld: one per half purge delay)\n", walks, AWB_THREADS, elapsed, bound);
        exit(1);
    }
    for (int h = 0; h < AWB_HOLDERS; h++)
        for (int i = 0; i < AWB_BLOCKS; i++) {
            unsigned char *p = awb_blocks[h][i];
            if (p[0] != h + 1) fail("a held block was overwritten");
            free(p);
        }
    /* The walks go on at their pace: later threads' slow paths make the next one. */
    long before = atomic_load(&awb_walks);
    double deadline = awb_now_ms() + 10000;
    while (atomic_load(&awb_walks) == before && awb_now_ms() < deadline) awb_run_one();
    set_hook(NULL);
    if (atomic_load(&awb_walks) == before) fail("no walk of the abandoned segments in 10 s of thread starts");
    if (validate && validate() != 0) fail("the main thread's heap is invalid");
}

/** The case names, for `lifecycle list`. */
/* ---- fork_from_exit_destructor ---- */

static pthread_key_t fed_key;

/** Allocates and frees 64 MiB of 1 MiB blocks ten times: the purger is wanted. */
static void *fed_worker(void *arg) {
    for (int r = 0; r < 10; r++) {
        void *v[64];
        for (int i = 0; i < 64; i++) {
            v[i] = malloc(1 << 20);
            if (!v[i]) abort();
            memset(v[i], 1, 1 << 20);
        }
        for (int i = 0; i < 64; i++) free(v[i]);
        usleep(20000);
    }
    return arg;
}

/** The parent's child, forked by the destructor below. */
static volatile pid_t fed_child;

/** Runs after swmalloc's destructor for this thread: forks; the child's main thread
 *  starts the workers and goes on ending. */
static void fed_destructor(void *value) {
    free(value);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < 2; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, fed_worker, NULL) != 0) _exit(5);
            pthread_detach(t);
        }
        return;
    }
    fed_child = child;
}

static void *fed_thread(void *arg) {
    pthread_setspecific(fed_key, malloc(10));
    return arg;
}

static void fork_from_exit_destructor(void) {
    pthread_key_create(&fed_key, fed_destructor);   /* after swmalloc's key */
    pthread_t t;
    if (pthread_create(&t, NULL, fed_thread, NULL) != 0) fail("pthread_create");
    pthread_join(t, NULL);
    if (fed_child <= 0) fail("fork");
    for (int i = 0; i < 200; i++) {   /* 20 s: the workers take about 0.3 s */
        int status;
        if (waitpid(fed_child, &status, WNOHANG) == fed_child) {
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("the child failed");
            return;
        }
        usleep(100000);
    }
    kill(fed_child, SIGKILL);
    waitpid(fed_child, NULL, 0);
    fail("the child did not end with its last thread (20 s)");
}

/* ---- fork_after_signal ---- */

/** Writes a report into the full pipe `arg`: holds the report lock until the pipe's
 *  reader is closed. */
static void *fas_writer(void *arg) {
    void (*print)(int, int) = (void (*)(int, int))dlsym(RTLD_DEFAULT, "swm_stats_print");
    if (!print) fail("swm_stats_print not found");
    print(*(int *)arg, 0);
    return NULL;
}

static void fork_after_signal(void) {
    int p[2];
    if (pipe(p) != 0) fail("pipe");
    fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK);
    char fill[4096] = {0};
    while (write(p[1], fill, sizeof fill) > 0) {}
    fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) & ~O_NONBLOCK);
    pthread_t writer;
    pthread_create(&writer, NULL, fas_writer, &p[1]);
    usleep(100000);
    kill(getpid(), SIGUSR1);   /* the reporter takes the request and waits for the lock */
    usleep(100000);
    kill(getpid(), SIGUSR1);   /* raised again while it waits */
    usleep(20000);
    pid_t child = fork();
    if (child == 0) {
        free(malloc(5 << 20));   /* an allocation slow path */
        usleep(200000);
        _exit(thread_named("swm-reporter") ? 1 : 0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    close(p[0]);   /* the writer's report ends (EPIPE) */
    pthread_join(writer, NULL);
    close(p[1]);
    usleep(300000);   /* the parent's own two reports, to stderr */
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("a fork child that got no signal started a reporter for its parent's request");
}

static const char *const names[] = {
    "remote_free_vs_exit", "fork_under_lock_churn", "producer_consumer_large", "collect_only_pages",
    "parked_heaps", "fork_child_thread_first", "parked_heaps_bounded", "fork_during_purge",
    "fork_parked_release", "fork_grandchildren", "last_round_threads", "last_round_two_starters",
    "fork_during_reap", "abandoned_count_exact", "cancel_in_report", "vfork_first_malloc",
    "late_destructor_blocks", "vos_fork_under_limit", "join_after_big_frees",
    "release_window_lists", "fork_during_release", "release_window_churn", "abandoned_walks_bounded",
    "fork_from_exit_destructor", "fork_after_signal",
};

int main(int argc, char **argv) {
    validate = (int (*)(void))dlsym(RTLD_DEFAULT, "swm_validate");
    if (argc == 2 && !strcmp(argv[1], "list")) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) printf("%s\n", names[i]);
        return 0;
    }
    if (argc != 2) { fprintf(stderr, "usage: lifecycle CASE | lifecycle list\n"); return 2; }
    if (!strcmp(argv[1], "remote_free_vs_exit")) remote_free_vs_exit();
    else if (!strcmp(argv[1], "fork_under_lock_churn")) fork_under_lock_churn();
    else if (!strcmp(argv[1], "producer_consumer_large")) producer_consumer_large();
    else if (!strcmp(argv[1], "collect_only_pages")) collect_only_pages();
    else if (!strcmp(argv[1], "parked_heaps")) parked_heaps();
    else if (!strcmp(argv[1], "fork_child_thread_first")) fork_child_thread_first();
    else if (!strcmp(argv[1], "parked_heaps_bounded")) parked_heaps_bounded();
    else if (!strcmp(argv[1], "fork_during_purge")) fork_during_purge();
    else if (!strcmp(argv[1], "fork_parked_release")) fork_parked_release();
    else if (!strcmp(argv[1], "fork_grandchildren")) fork_grandchildren();
    else if (!strcmp(argv[1], "last_round_threads")) last_round_threads();
    else if (!strcmp(argv[1], "last_round_two_starters")) last_round_two_starters();
    else if (!strcmp(argv[1], "fork_during_reap")) fork_during_reap();
    else if (!strcmp(argv[1], "abandoned_count_exact")) abandoned_count_exact();
    else if (!strcmp(argv[1], "cancel_in_report")) cancel_in_report();
    else if (!strcmp(argv[1], "vfork_first_malloc")) vfork_first_malloc();
    else if (!strcmp(argv[1], "late_destructor_blocks")) late_destructor_blocks();
    else if (!strcmp(argv[1], "vos_fork_under_limit")) vos_fork_under_limit();
    else if (!strcmp(argv[1], "join_after_big_frees")) join_after_big_frees();
    else if (!strcmp(argv[1], "release_window_lists")) release_window_lists();
    else if (!strcmp(argv[1], "fork_during_release")) fork_during_release();
    else if (!strcmp(argv[1], "release_window_churn")) release_window_churn();
    else if (!strcmp(argv[1], "abandoned_walks_bounded")) abandoned_walks_bounded();
    else if (!strcmp(argv[1], "fork_from_exit_destructor")) fork_from_exit_destructor();
    else if (!strcmp(argv[1], "fork_after_signal")) fork_after_signal();
    else { fprintf(stderr, "unknown case %s\n", argv[1]); return 2; }
    printf("ok %s\n", argv[1]);
    return 0;
}
