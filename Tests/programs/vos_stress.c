/* vos_stress.c — exact VOS accounting under a multithreaded stress with cross-thread
 * frees. Eight workers allocate VOS blocks (module-only and with sites, malloc/calloc/
 * realloc, small to huge sizes, module IDs above 65535 included) and hand half of them
 * to other workers through a shared exchange, which free them with VOS_Free or plain
 * free(). The test keeps its own per-module tally of what is live; while the workers
 * are alive but idle, and again after they exited (tables folded), the sum over modules
 * and every module's counters must equal the tally exactly. Prints "vos stress ok: …". */
#include "check.h"
#include "swmalloc.h"
#include "vos_mem.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define WORKERS 8
#define ROUNDS 40000
#define MODULES 12
#define SLOTS 4096

/* Module IDs used; 70000 and 1 << 40 both land in the shared bucket 65536. */
static const unsigned long module_ids[MODULES] = {0, 1, 2, 7, 100, 4095, 4096, 30000, 65535, 65536, 70000, 1ul << 40};

static _Atomic long tally_bytes[MODULES], tally_blocks[MODULES], tally_allocs[MODULES], tally_frees[MODULES];
static _Atomic(void *) exchange[SLOTS];
static _Atomic int phase;        /* 0 run, 1 workers idle (checked), 2 exit */
static _Atomic int idle_workers;

/* A block's bookkeeping, stored in its first 16 bytes: module slot and requested size. */
typedef struct { uint32_t slot; uint32_t magic; uint64_t size; } tag_t;

static uint64_t next_random(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}

static void charge(int slot, long size) {
    tally_bytes[slot] += size; tally_blocks[slot] += 1; tally_allocs[slot] += 1;
}

static void *allocate(uint64_t *rng) {
    uint64_t r = next_random(rng);
    int slot = (int)(r % MODULES);
    unsigned long id = module_ids[slot];
    uint64_t pick = (r >> 8) % 1000;
    size_t size = pick < 900 ? 16 + (r >> 20) % 300 : pick < 995 ? 4096 + (r >> 20) % 200000 : (2u << 20) + (r >> 20) % 100000;
    void *p;
    switch ((r >> 40) % 5) {
    case 0: p = VOS_MallocModule(size, id); break;
    case 1: p = VOS_CallocWithDebug(1, size, id, (const unsigned char *)__FILE__, __LINE__); break;
    case 2: {
        p = VOS_Malloc(size / 2 + 16, id);
        CHECK(p != NULL);
        charge(slot, (long)(size / 2 + 16));
        p = VOS_Realloc(p, size, id);
        tally_bytes[slot] -= (long)(size / 2 + 16); tally_blocks[slot] -= 1; tally_frees[slot] += 1;
        break;
    }
    default: p = VOS_Malloc(size, id); break;
    }
    CHECK(p != NULL);
    CHECK(((uintptr_t)p & 15) == 0);
    charge(slot, (long)size);
    tag_t tag = {(uint32_t)slot, 0x5653u, size};
    memcpy(p, &tag, sizeof tag);
    return p;
}

static void release(void *p, uint64_t *rng) {
    tag_t tag;
    memcpy(&tag, p, sizeof tag);
    CHECK(tag.magic == 0x5653u && tag.slot < MODULES);
    tally_bytes[tag.slot] -= (long)tag.size; tally_blocks[tag.slot] -= 1; tally_frees[tag.slot] += 1;
    if (next_random(rng) % 4 == 0) free(p); else VOS_Free(p);
}

static void *worker(void *arg) {
    uint64_t rng = 0x9E3779B97F4A7C15ull * ((uintptr_t)arg + 1);
    void *mine[64] = {0};
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t r = next_random(&rng);
        int k = (int)(r % 64);
        if (mine[k]) { release(mine[k], &rng); mine[k] = NULL; }
        void *p = allocate(&rng);
        if ((r >> 32) & 1) {
            /* Hand it to whoever takes this slot next; free what was there. */
            void *old = atomic_exchange(&exchange[(r >> 12) % SLOTS], p);
            if (old) release(old, &rng);
        } else {
            mine[k] = p;
        }
    }
    /* Keep some blocks live across the checks; free the rest. */
    for (int k = 0; k < 64; k += 2) if (mine[k]) { release(mine[k], &rng); mine[k] = NULL; }
    idle_workers += 1;
    while (phase == 0) sched_yield();
    for (int k = 0; k < 64; k++) if (mine[k]) release(mine[k], &rng);
    return NULL;
}

/* Compares the merged VOS counters with the tally; returns the total live bytes. */
static long check_against_tally(const char *when) {
    long total = 0, seen = 0;
    for (int s = 0; s < MODULES; s++) {
        unsigned long id = module_ids[s];
        if (id >= 65536 && id != 65536) continue; /* counted with 65536 */
        long bytes = tally_bytes[s], blocks = tally_blocks[s], allocs = tally_allocs[s], frees = tally_frees[s];
        if (id == 65536)
            for (int t = 0; t < MODULES; t++)
                if (module_ids[t] > 65536) {
                    bytes += tally_bytes[t]; blocks += tally_blocks[t];
                    allocs += tally_allocs[t]; frees += tally_frees[t];
                }
        swm_vos_module_stats_t st;
        CHECK(swm_vos_module_stats(id, &st) == 0);
        CHECKF(st.module == (id < 65536 ? id : 65536), "%s: module %lu reported as %lu", when, id, st.module);
        CHECKF(st.live_bytes == bytes && (long)st.live_blocks == blocks && (long)st.allocs == allocs
               && (long)st.frees == frees,
               "%s: module %lu: live %ld/%zu allocs %zu frees %zu, expected %ld/%ld %ld %ld", when, id,
               st.live_bytes, st.live_blocks, st.allocs, st.frees, bytes, blocks, allocs, frees);
        CHECKF(st.peak_bytes >= (size_t)st.live_bytes, "%s: module %lu peak %zu below live %ld", when, id,
               st.peak_bytes, st.live_bytes);
        total += bytes;
    }
    swm_vos_module_stats_t all[64];
    size_t n = swm_vos_modules(all, 64);
    CHECKF(n == 10, "%s: %zu modules listed, expected 10", when, n);
    for (size_t i = 0; i < n; i++) {
        seen += all[i].live_bytes;
        if (i > 0) CHECK(all[i].module > all[i - 1].module);
    }
    CHECKF(seen == total, "%s: sum over modules %ld, test holds %ld", when, seen, total);
    return total;
}

int main(void) {
    pthread_t threads[WORKERS];
    for (long i = 0; i < WORKERS; i++) CHECK(pthread_create(&threads[i], NULL, worker, (void *)i) == 0);
    while (idle_workers < WORKERS) sched_yield();
    long live_idle = check_against_tally("workers idle");
    phase = 1;
    for (int i = 0; i < WORKERS; i++) pthread_join(threads[i], NULL);
    uint64_t rng = 42;
    long live_exchange = check_against_tally("workers exited, exchange full");
    for (int s = 0; s < SLOTS; s++) {
        void *p = atomic_exchange(&exchange[s], NULL);
        if (p) release(p, &rng);
    }
    long live_end = check_against_tally("everything freed");
    CHECK(live_end == 0);
    CHECK(live_exchange > 0 && live_idle > live_exchange);
    printf("vos stress ok: %d workers, live bytes %ld while idle, %ld after exit, 0 at the end\n", WORKERS,
           live_idle, live_exchange);
    return 0;
}
