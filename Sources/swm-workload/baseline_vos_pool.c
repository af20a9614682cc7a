/* The VOS-style pool allocator the design document measured (4.79 s against glibc's
 * 0.65 s): a 128 MiB region taken with malloc at start-up, carved into power-of-two slab
 * classes; one global pthread mutex around everything; a header on every block recording
 * module, file and line; per-module and per-site counters; memory never returned. */
#include "workload.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

enum {
    VOS_MIN_SHIFT = 5,      /* smallest class: 32 bytes including the header */
    VOS_CLASSES = 18,       /* 32 B … 4 MiB */
    VOS_MODULES = 1024,
    VOS_SITES = 4096,       /* open-addressing table of (file, line) */
    VOS_MAGIC_USED = 0x5653,
    VOS_MAGIC_FREE = 0x4652,
};

/* The header in front of every block. */
typedef struct vos_block {
    struct vos_block *next_free;
    const char *file;
    unsigned long module_id;
    unsigned line;
    unsigned short size_class;
    unsigned short magic;
    unsigned long size;
    unsigned long pad;
} vos_block;

/* Allocation counters of one module or site. */
typedef struct {
    const char *file;
    unsigned line;
    unsigned long blocks;
    unsigned long bytes;
} vos_counter;

static pthread_mutex_t vos_lock = PTHREAD_MUTEX_INITIALIZER;
static char *vos_region, *vos_bump, *vos_end;
static vos_block *vos_free_lists[VOS_CLASSES];
static vos_counter vos_modules[VOS_MODULES];
static vos_counter vos_sites[VOS_SITES];

int vos_pool_init(size_t region_bytes) {
    vos_region = malloc(region_bytes);
    if (vos_region == NULL) {
        fprintf(stderr, "vos pool: cannot take the %zu-byte region\n", region_bytes);
        return 1;
    }
    vos_bump = vos_region;
    vos_end = vos_region + region_bytes;
    return 0;
}

/* The counter of a site, found by linear probing on (file, line). */
static vos_counter *vos_site(const char *file, unsigned line) {
    size_t h = (((size_t)file >> 4) * 31 + line) % VOS_SITES;
    for (size_t i = 0; i < VOS_SITES; i++) {
        vos_counter *c = &vos_sites[(h + i) % VOS_SITES];
        if (c->file == file && c->line == line) return c;
        if (c->file == NULL) {
            c->file = file;
            c->line = line;
            return c;
        }
    }
    return &vos_sites[h];
}

void *vos_pool_malloc(unsigned long size, unsigned long module_id, const char *file, unsigned line) {
    size_t need = size + sizeof(vos_block);
    unsigned cls = 0;
    while (cls < VOS_CLASSES && ((size_t)1 << (cls + VOS_MIN_SHIFT)) < need) cls++;
    if (cls == VOS_CLASSES) return NULL;
    pthread_mutex_lock(&vos_lock);
    vos_block *b = vos_free_lists[cls];
    if (b != NULL) {
        vos_free_lists[cls] = b->next_free;
    } else {
        size_t bytes = (size_t)1 << (cls + VOS_MIN_SHIFT);
        if ((size_t)(vos_end - vos_bump) < bytes) {
            pthread_mutex_unlock(&vos_lock);
            return NULL;
        }
        b = (vos_block *)vos_bump;
        vos_bump += bytes;
        b->size_class = (unsigned short)cls;
    }
    b->magic = VOS_MAGIC_USED;
    b->module_id = module_id;
    b->file = file;
    b->line = line;
    b->size = size;
    vos_counter *m = &vos_modules[module_id % VOS_MODULES];
    m->blocks++;
    m->bytes += size;
    vos_counter *s = vos_site(file, line);
    s->blocks++;
    s->bytes += size;
    pthread_mutex_unlock(&vos_lock);
    return b + 1;
}

void vos_pool_free(void *p, const char *file, unsigned line) {
    if (p == NULL) return;
    vos_block *b = (vos_block *)p - 1;
    pthread_mutex_lock(&vos_lock);
    if (b->magic != VOS_MAGIC_USED) {
        pthread_mutex_unlock(&vos_lock);
        fprintf(stderr, "vos pool: bad free of %p at %s:%u\n", p, file, line);
        abort();
    }
    vos_counter *m = &vos_modules[b->module_id % VOS_MODULES];
    m->blocks--;
    m->bytes -= b->size;
    vos_counter *s = vos_site(b->file, b->line);
    s->blocks--;
    s->bytes -= b->size;
    b->magic = VOS_MAGIC_FREE;
    b->file = file;
    b->line = line;
    b->next_free = vos_free_lists[b->size_class];
    vos_free_lists[b->size_class] = b;
    pthread_mutex_unlock(&vos_lock);
}
