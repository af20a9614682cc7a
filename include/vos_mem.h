/* vos_mem.h — the VOS memory API on swmalloc: VOS_Malloc(ulSize, ulModuleId) and
 * VOS_Free(ptr) as in the platform's design document, without locks (but once per 64 KiB
 * a thread allocates or frees in a module, when its counts are published).
 *
 * Every block is charged to its module (and, in site mode, to its allocation site:
 * module, __FILE__, __LINE__); the counters are kept per thread without locks and merged
 * when read (swm_vos_* in swmalloc.h, the report of SWMALLOC_OPTIONS=stats_print=1).
 *
 * Build macro: by default VOS_Malloc records module + site (it passes __FILE__ and
 * __LINE__, as the document's macro does). Compile with -DVOS_MEM_MODULE_ONLY for
 * module-only accounting (cheaper: no site lookup). Both kinds of block are freed by
 * VOS_Free, and both may be freed by plain free(). A plain malloc block given to
 * VOS_Free aborts with one "swmalloc:" line naming the pointer, unless the free is
 * VOS_Free_Debug(VOS_FREE_ACCEPT_MALLOC, ...). Plain realloc() and malloc_usable_size()
 * of a VOS block abort: use VOS_Realloc.
 *
 * Link with -lswmalloc (or run with LD_PRELOAD=libswmalloc.so). */
#ifndef VOS_MEM_H
#define VOS_MEM_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the fixed ABI (benchmarks look these up with dlsym) ---- */

/** size bytes (16-byte aligned) charged to moduleId and to the site (moduleId, file, line).
 *  NULL with errno == ENOMEM when out of memory or over the module's quota. */
void *VOS_MallocWithDebug(unsigned long size, unsigned long moduleId, const unsigned char *file, unsigned int line);
/** size bytes charged to moduleId only. */
void *VOS_MallocModule(unsigned long size, unsigned long moduleId);
/** Frees a block from any VOS allocation function; NULL is a no-op. file and line name the
 *  caller in the abort message when ptr is not a live VOS block. */
void VOS_Free_Debug(unsigned long flags, void *ptr, const unsigned char *file, unsigned int line);

/** VOS_Free_Debug flag: a plain malloc block is freed with free() instead of aborting. */
#define VOS_FREE_ACCEPT_MALLOC 1ul

/* ---- companions ---- */

/** count × size zeroed bytes; NULL with ENOMEM when the product overflows. */
void *VOS_CallocWithDebug(unsigned long count, unsigned long size, unsigned long moduleId, const unsigned char *file, unsigned int line);
void *VOS_CallocModule(unsigned long count, unsigned long size, unsigned long moduleId);
/** As realloc: NULL → allocate; size 0 → free and return NULL; otherwise the block with
 *  its contents, charged to moduleId (and the site) for the new size and credited for the
 *  old: the same block when the new size fits it and fills at least half of it (a huge
 *  block, above 2 MiB, also as realloc keeps one), else a new one (the old one freed).
 *  On failure NULL with ENOMEM, the old block untouched. */
void *VOS_ReallocWithDebug(void *ptr, unsigned long size, unsigned long moduleId, const unsigned char *file, unsigned int line);
void *VOS_ReallocModule(void *ptr, unsigned long size, unsigned long moduleId);

/* ---- the document's macros ---- */

#ifdef VOS_MEM_MODULE_ONLY
#define VOS_Malloc(ulSize, ulModuleId) VOS_MallocModule((ulSize), (ulModuleId))
#define VOS_Calloc(ulCount, ulSize, ulModuleId) VOS_CallocModule((ulCount), (ulSize), (ulModuleId))
#define VOS_Realloc(ptr, ulSize, ulModuleId) VOS_ReallocModule((ptr), (ulSize), (ulModuleId))
#else
#define VOS_Malloc(ulSize, ulModuleId) \
    VOS_MallocWithDebug((ulSize), (ulModuleId), (const unsigned char *)__FILE__, __LINE__)
#define VOS_Calloc(ulCount, ulSize, ulModuleId) \
    VOS_CallocWithDebug((ulCount), (ulSize), (ulModuleId), (const unsigned char *)__FILE__, __LINE__)
#define VOS_Realloc(ptr, ulSize, ulModuleId) \
    VOS_ReallocWithDebug((ptr), (ulSize), (ulModuleId), (const unsigned char *)__FILE__, __LINE__)
#endif
#define VOS_Free(ptr) VOS_Free_Debug(0, (ptr), (const unsigned char *)__FILE__, __LINE__)

#ifdef __cplusplus
}
#endif
#endif
