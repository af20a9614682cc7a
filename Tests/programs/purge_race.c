/* purge_race.c — the purger against the owners: blocks other threads freed into a page
 * give back their OS pages while the page's owner runs (`Heap.releaseOthersFrees`), so
 * a block handed out again must never lose what the program wrote into it.
 *     purge_race [SECONDS]
 * Run with purge_delay_ms=1 (StressTests sets it): every pass of the purger then purges
 * the thread-free lists it saw a millisecond before. 8 threads replace random slots of a
 * shared table of 2,048 blocks (3 in 4 of 4 KiB + 1 … 70 KiB, the sizes whose blocks are
 * purged, the rest 16 … 2,015 bytes), fill each block with a pattern drawn from its
 * address and size, check the pattern of the block they replace before freeing it, and
 * pause now and then (so that lists stay the same long enough to be purged); another
 * thread calls malloc_trim(0) every 7 ms, which purges them all at once. Prints
 * "purge_race ok" and exits 0 when every check held; names the first damaged block and
 * exits 1 otherwise. */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { THREADS = 8, SLOTS = 2048, LOCKS = 64 };

/** A block and its requested size: what a slot holds. */
struct block {
    unsigned char *p;
    size_t n;
};

static struct block table[SLOTS];
static pthread_mutex_t locks[LOCKS];
static atomic_int stop, damaged;

/** The pattern's 8-byte word after `k`. */
static uint64_t next_word(uint64_t k) { return k * 6364136223846793005ull + 1442695040888963407ull; }

/** Fills `p` (n bytes) with the pattern of its address and size. */
static void fill(unsigned char *p, size_t n) {
    uint64_t k = (uintptr_t)p * 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; i += 8, k = next_word(k)) memcpy(p + i, &k, n - i < 8 ? n - i : 8);
}

/** True when `p` still holds its pattern; names the first damaged byte otherwise. */
static int intact(const unsigned char *p, size_t n) {
    uint64_t k = (uintptr_t)p * 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; i += 8, k = next_word(k)) {
        if (memcmp(p + i, &k, n - i < 8 ? n - i : 8) != 0) {
            fprintf(stderr, "purge_race: block %p of %zu bytes damaged at offset %zu\n", (const void *)p, n, i);
            return 0;
        }
    }
    return 1;
}

static void *replacer(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 7;
    long ops = 0;
    while (!atomic_load(&stop) && !atomic_load(&damaged)) {
        unsigned r = (unsigned)rand_r(&seed);
        size_t n = (r & 3) ? 4097 + (size_t)rand_r(&seed) % (70 * 1024) : 16 + (size_t)rand_r(&seed) % 2000;
        unsigned char *p = malloc(n);
        if (p == NULL) {
            fprintf(stderr, "purge_race: malloc(%zu) returned NULL\n", n);
            atomic_store(&damaged, 1);
            break;
        }
        fill(p, n);
        int i = rand_r(&seed) % SLOTS;
        pthread_mutex_lock(&locks[i % LOCKS]);
        struct block old = table[i];
        table[i] = (struct block){p, n};
        pthread_mutex_unlock(&locks[i % LOCKS]);
        if (old.p != NULL) {
            if (!intact(old.p, old.n)) atomic_store(&damaged, 1);
            free(old.p);
        }
        if (++ops % 2000 == 0) usleep((useconds_t)(rand_r(&seed) % 4000));
        if (ops % 50000 == 0 && (r & 1)) usleep(30000);
    }
    return NULL;
}

static void *trimmer(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        usleep(7000);
        malloc_trim(0);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 5;
    for (int i = 0; i < LOCKS; i++) pthread_mutex_init(&locks[i], NULL);
    pthread_t t[THREADS + 1];
    for (int i = 0; i < THREADS; i++) {
        if (pthread_create(&t[i], NULL, replacer, (void *)(uintptr_t)i) != 0) return 1;
    }
    if (pthread_create(&t[THREADS], NULL, trimmer, NULL) != 0) return 1;
    for (int waited = 0; waited < seconds * 10 && !atomic_load(&damaged); waited++) usleep(100000);
    atomic_store(&stop, 1);
    for (int i = 0; i <= THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++) {
        if (table[i].p == NULL) continue;
        if (!intact(table[i].p, table[i].n)) atomic_store(&damaged, 1);
        free(table[i].p);
    }
    if (atomic_load(&damaged)) return 1;
    printf("purge_race ok\n");
    return 0;
}
