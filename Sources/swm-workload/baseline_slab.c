/* The memcached-style slab allocator (memcached 1.6 slabs.c, reduced to its allocation
 * path): slab classes from 96 bytes growing by a factor (1.25), 1 MiB pages taken with
 * malloc until a total limit (64 MiB), per-class free lists, one global mutex
 * (slabs_lock), and the class of a size found by a linear scan as slabs_clsid does. */
#include "workload.h"

#include <pthread.h>
#include <stdlib.h>

enum {
    MC_PAGE = 1 << 20,
    MC_MAX_CLASSES = 64,
    MC_MIN_CHUNK = 96,
};

/* One slab class: its chunk size, free chunks, and the unused rest of its newest page. */
typedef struct {
    size_t size;
    void *free_list;
    char *carve;
    size_t carve_left;
} mc_class;

static pthread_mutex_t mc_lock = PTHREAD_MUTEX_INITIALIZER;
static mc_class mc_classes[MC_MAX_CLASSES];
static int mc_nclasses;
static size_t mc_limit, mc_taken;

int mc_slab_init(size_t limit, double factor) {
    size_t size = MC_MIN_CHUNK;
    mc_nclasses = 0;
    while (mc_nclasses < MC_MAX_CLASSES - 1 && size <= MC_PAGE / 2) {
        mc_classes[mc_nclasses++].size = size;
        size = ((size_t)((double)size * factor) + 7) & ~(size_t)7;
    }
    mc_classes[mc_nclasses++].size = MC_PAGE / 2;
    mc_limit = limit;
    mc_taken = 0;
    return 0;
}

size_t mc_slab_max_size(void) { return MC_PAGE / 2; }

/* The class serving `size` (slabs_clsid), or -1. */
static int mc_class_of(size_t size) {
    for (int i = 0; i < mc_nclasses; i++)
        if (size <= mc_classes[i].size) return i;
    return -1;
}

void *mc_slab_alloc(size_t size) {
    int id = mc_class_of(size);
    if (id < 0) return NULL;
    mc_class *c = &mc_classes[id];
    pthread_mutex_lock(&mc_lock);
    void *p = c->free_list;
    if (p != NULL) {
        c->free_list = *(void **)p;
    } else {
        if (c->carve_left < c->size) {
            if (mc_taken + MC_PAGE > mc_limit || (c->carve = malloc(MC_PAGE)) == NULL) {
                pthread_mutex_unlock(&mc_lock);
                return NULL;
            }
            mc_taken += MC_PAGE;
            c->carve_left = MC_PAGE;
        }
        p = c->carve;
        c->carve += c->size;
        c->carve_left -= c->size;
    }
    pthread_mutex_unlock(&mc_lock);
    return p;
}

void mc_slab_free(void *p, size_t size) {
    mc_class *c = &mc_classes[mc_class_of(size)];
    pthread_mutex_lock(&mc_lock);
    *(void **)p = c->free_list;
    c->free_list = p;
    pthread_mutex_unlock(&mc_lock);
}
