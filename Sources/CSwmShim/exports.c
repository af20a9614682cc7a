// exports.c — the exported symbols of libswmalloc.so: one-instruction forwarders (a
// tail jump) to the Swift entry points `swmimpl_NAME` (hidden, in Sources/swmalloc/API/
// and Sources/swmalloc/Extensions/VOSAPI.swift, which give the C signatures).
//
// Why C: Swift gives every `public` symbol PROTECTED visibility on ELF, and no flag
// changes it. A protected `free` makes ld.so warn ("direct reference to protected
// function") in every non-PIE program that takes free's address (gcc's cc1plus, Debian's
// /usr/bin/python3), and breaks pointer equality there. These definitions have default
// visibility; the Swift entry points are internal (hidden), so nothing else is exported.
// The version script (swmalloc.map) lists what is global.
//
// The forwarders are naked functions whose whole body is the jump, so they cost one
// instruction whatever the build's frame-pointer flags, and the arguments pass through
// untouched in their registers. In the shared library, malloc, free, calloc and realloc
// cost not even that: the link binds those names to the entry points themselves
// (Sources/swmalloc/swmalloc-aliases.ld), and their forwarders here are left unused.

// The naked forwarders are declared `void f(void)`: the C type of an exported symbol does
// not reach the linker, and the real signatures are the Swift entry points'.
#pragma clang diagnostic ignored "-Wincompatible-library-redeclaration"

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <sys/mman.h>
#include <unistd.h>

#include "swm_shim.h"

#if defined(__x86_64__)
#define SWM_JUMP_INSN "jmp "
#elif defined(__aarch64__)
#define SWM_JUMP_INSN "b "
#else
#error "exports.c: add the tail-jump instruction of this architecture"
#endif

/// Exports `name` as a tail jump to the hidden Swift entry point `impl`.
#define SWM_FORWARD(name, impl)                                                       \
    __attribute__((naked, visibility("default"))) void name(void) {                  \
        __asm__(SWM_JUMP_INSN #impl);                                                 \
    }

/// An allocation function under its libc name and its `swm_` name.
#define SWM_ALLOC(name) SWM_FORWARD(name, swmimpl_##name) SWM_FORWARD(swm_##name, swmimpl_##name)

// ---- the C allocation API (libc names and swm_ names) ----
SWM_ALLOC(malloc)
SWM_ALLOC(free)
SWM_ALLOC(calloc)
SWM_ALLOC(realloc)
SWM_ALLOC(reallocarray)
SWM_ALLOC(posix_memalign)
SWM_ALLOC(aligned_alloc)
SWM_ALLOC(memalign)
SWM_ALLOC(valloc)
SWM_ALLOC(pvalloc)
SWM_ALLOC(malloc_usable_size)
SWM_ALLOC(free_sized)
SWM_ALLOC(free_aligned_sized)

// ---- glibc's internal names: code that calls them must get swmalloc's blocks ----
SWM_FORWARD(__libc_malloc, swmimpl_malloc)
SWM_FORWARD(__libc_calloc, swmimpl_calloc)
SWM_FORWARD(__libc_realloc, swmimpl_realloc)
SWM_FORWARD(__libc_free, swmimpl_free)
SWM_FORWARD(__libc_memalign, swmimpl_memalign)
SWM_FORWARD(__libc_valloc, swmimpl_valloc)
SWM_FORWARD(__libc_pvalloc, swmimpl_pvalloc)
// glibc still exports cfree (an old alias of free) for programs linked before 2.26: theirs
// would hand swmalloc's blocks to glibc's free.
SWM_FORWARD(cfree, swmimpl_free)

// ---- glibc's malloc extensions (Sources/swmalloc/API/GlibcAPI.swift) ----
SWM_FORWARD(malloc_trim, swmimpl_malloc_trim)
SWM_FORWARD(mallopt, swmimpl_mallopt)
SWM_FORWARD(__libc_mallopt, swmimpl_mallopt)   // glibc's public internal names of the two

// mallinfo2/mallinfo return structures and malloc_info takes a FILE *: small C wrappers.
// The structures have glibc's layouts (ten size_t, ten int) under tags of our own.
struct swm_mallinfo2 { size_t f[10]; };
struct swm_mallinfo { int f[10]; };
void swmimpl_mallinfo2(size_t *out);
int swmimpl_malloc_info_fd(int fd);
int swmimpl_malloc_stats_fd(int fd);

__attribute__((visibility("default"))) struct swm_mallinfo2 mallinfo2(void) {
    struct swm_mallinfo2 m;
    swmimpl_mallinfo2(m.f);
    return m;
}

/// glibc's older `mallinfo`: the same fields as `int`, saturated at INT_MAX (glibc lets
/// them wrap).
__attribute__((visibility("default"))) struct swm_mallinfo mallinfo(void) {
    struct swm_mallinfo2 wide = mallinfo2();
    struct swm_mallinfo m;
    for (int i = 0; i < 10; i++) m.f[i] = wide.f[i] > (size_t)INT_MAX ? INT_MAX : (int)wide.f[i];
    return m;
}

/// A report writer of the Swift core: writes to `fd` without allocating; 0, or -1 when a
/// write failed.
typedef int (*swm_report_writer)(int fd);

/// The report `writer` writes, to `fd`: 0, or -1 with errno set (the write's error).
static int swm_report_to(int fd, swm_report_writer writer) {
    swmshim_clear_write_error();
    if (writer(fd) == 0) return 0;
    int error = swmshim_last_write_error();
    errno = error != 0 ? error : EIO;
    return -1;
}

/// The report for a stream without a file descriptor (`open_memstream`, `fmemopen`,
/// `fopencookie`): written to an anonymous memory file (the report itself allocates
/// nothing), then copied to the stream with `fwrite`, which may allocate (a memory
/// stream grows with realloc): no allocator lock is held by then. 0, or -1 with errno.
static int swm_report_copied(FILE *stream, swm_report_writer writer) {
    int fd = memfd_create("swmalloc-report", MFD_CLOEXEC);
    if (fd < 0) return -1;
    int result = swm_report_to(fd, writer);
    if (result == 0 && lseek(fd, 0, SEEK_SET) != 0) result = -1;
    char chunk[4096];
    ssize_t n;
    while (result == 0 && (n = read(fd, chunk, sizeof chunk)) != 0) {
        if (n < 0 || fwrite(chunk, 1, (size_t)n, stream) != (size_t)n) result = -1;
    }
    int error = errno;
    close(fd);
    errno = error;
    return result;
}

/// glibc's `__libc_mallinfo` (a public name of `mallinfo`): swmalloc's figures, not those of
/// glibc's unused arena.
__attribute__((visibility("default"))) struct swm_mallinfo __libc_mallinfo(void) { return mallinfo(); }

/// `malloc_info(0, stream)`: flushes the stream and writes the XML report to its file
/// descriptor (so nothing is allocated on the way), or, for a stream without one (a
/// memory stream: an outside review found -1 and EINVAL there, where glibc writes the
/// report), through a memory file and `fwrite`. Options other than 0 return EINVAL with
/// errno untouched, as glibc does; a write that fails, -1 with its errno (ENOSPC on
/// /dev/full: errno was 0, an outside review; glibc returns 0 and drops the report). A
/// stream not open for writing gets nothing, -1 with EBADF, even when its descriptor could
/// be written (a socket opened "r": the report went out on it, review R79; glibc's
/// `fprintf` fails there and it returns 0).
__attribute__((visibility("default"))) int malloc_info(int options, FILE *stream) {
    if (options != 0) return EINVAL;
    if (stream == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (!__fwritable(stream)) {
        errno = EBADF;
        return -1;
    }
    if (fflush(stream) != 0) return -1;
    int saved = errno;
    int fd = fileno(stream);
    if (fd >= 0) return swm_report_to(fd, swmimpl_malloc_info_fd);
    int result = swm_report_copied(stream, swmimpl_malloc_info_fd);
    if (result == 0) errno = saved;   /* fileno's EBADF: a success leaves errno as it was */
    return result;
}

/// `malloc_stats()`: the text report on the `stderr` stream, as glibc prints its own with
/// `fprintf(stderr, …)`: the stream is flushed first and the report written to its file
/// descriptor, or copied into it when it has none. Before, it went to descriptor 2
/// whatever `stderr` was: a program that pointed `stderr` at its log (`stderr =
/// fopen(…)`, which glibc's manual allows) lost the report from it, and with a buffered
/// `stderr` the report came before what the program had printed earlier (review R58).
/// errno is left as it was.
__attribute__((visibility("default"))) void malloc_stats(void) {
    int saved = errno;
    FILE *stream = stderr;
    if (stream != NULL) {
        fflush(stream);
        int fd = fileno(stream);
        if (fd >= 0) swm_report_to(fd, swmimpl_malloc_stats_fd);
        else swm_report_copied(stream, swmimpl_malloc_stats_fd);
    }
    errno = saved;
}

// ---- C++: the replaceable operator new and delete (all 20 forms of libstdc++/libc++) ----
// A C++ program's `new` and `delete` come here directly instead of through the C++
// runtime's operators and a call to malloc/free: `operator new` is malloc's fast path
// (`swmimpl_cxx_new`), every `operator delete` is a one-jump forwarder to free (sizes and
// alignments are hints that free does not need; the forwarders have addresses of their
// own, so that profilers and debuggers name free `free`, not `operator delete[]`).
// When memory is out, `operator new` keeps the C++ rules: it calls the new-handler while
// one is installed and retries, then throws std::bad_alloc — both through the C++
// runtime's own functions, so a C program needs no C++ runtime; without one it aborts with
// a message. The nothrow forms return NULL, after the new-handler as the C++ standard has
// it (they run the runtime's own nothrow operator, which calls the throwing one and
// catches what the handler throws); without a handler at once.
//
// The C++ runtime may come after swmalloc: a C program (python3) that loads a C++ module
// with dlopen. Weak references are bound when swmalloc is loaded, so they stay NULL then,
// and the module's `new` still binds to swmalloc's: on the out-of-memory path the runtime
// is looked up among the loaded libraries by name (`swm_cxx_symbol`). Found that way it is
// kept loaded (its handle is not closed), so the functions found stay valid. Where the
// process has no shared runtime at all, a module that carries a static copy of its own
// (`-static-libstdc++`) is the only runtime its code can be using: the copy in the object
// that called `operator new` serves then (review R34). Only then, and only a copy defined
// in that very object: a wider search (the global scope at the time, every loaded object,
// or the caller's scope before the shared runtime) picked other plugins' runtimes and
// `operator new`s, threw through an unwinder that was not the catcher's, deadlocked in the
// loader and pinned modules (reviews R36 and R37).
//
// Forms over the basic ones. A program may replace only some forms, typically `operator
// new(size_t)` and `operator delete(void *)` (a tracking allocator with a header, a leak
// counter), and the standard has every form it does not replace call those
// ([new.delete]), as the runtime's `new[]`, nothrow and sized forms do. So do swmalloc's:
// each of the sixteen forms the runtime defines over the four basic ones jumps through
// the global offset table to the form it is defined over (`SWM_OVER`), which the dynamic
// linker resolves in the process's global scope — to swmalloc's own form, or to the
// program's replacement. One indirect jump, no decision at load: the same from the first
// call, in any thread (review R46: a header-tracking delete got swmalloc's blocks; R47:
// a decision made in swmalloc's constructor came after other libraries' constructors,
// raced with their threads, and found no runtime to defer to in a program with a static
// libstdc++). The nothrow `new`s cannot catch what a replacement throws: they take
// swmalloc's path while the form they are defined over is swmalloc's, and otherwise
// defer to the C++ runtime's own nothrow form (`swm_nothrow_replaced`).
void *swmimpl_malloc(intptr_t size);
void *swmimpl_memalign(intptr_t alignment, intptr_t size);

typedef void (*swm_new_handler)(void);
/// std::get_new_handler() and std::__throw_bad_alloc() of libstdc++ (libc++ has both too).
extern swm_new_handler _ZSt15get_new_handlerv(void) __attribute__((weak));
extern _Noreturn void _ZSt17__throw_bad_allocv(void) __attribute__((weak));

/// The load address of the object holding `address` (NULL when none).
static void *swm_object_of(const void *address) {
    Dl_info info;
    return dladdr(address, &info) != 0 ? info.dli_fbase : NULL;
}

/// Where the `operator new` that failed was called from: `at` is the return address its
/// slow path saw; unoptimised, where the fast path calls the slow path instead of jumping
/// there, `at` lies in swmalloc and `above` (one frame further) is the caller's. Resolved
/// only in `swm_cxx_symbol`'s last step: `dladdr` takes the loader's lock, which a C++
/// program's out-of-memory path must not (a thread that throws inside a `dl_iterate_phdr`
/// callback, or that a library constructor joins, deadlocked: review R38).
struct swm_caller { const void *at, *above; };

int swmimpl_holds(const void *p);

/// `name` in the C++ runtime loaded in this process (libstdc++, or libc++ and its ABI
/// library), whether it came with the program or later with dlopen; else, with
/// `own_copy` and when there is no such runtime at all, as the object that called
/// `operator new` defines it itself in a static copy of the runtime (one that defines
/// `std::get_new_handler` too); NULL when neither has it. Never swmalloc's own operators.
/// errno is left as it was, and `dlerror` holds nothing of these lookups (the program's
/// own pending error aside): glibc's `dlerror` sets errno (R38: ENOENT after a nothrow
/// `new` returned NULL).
static void *swm_cxx_symbol(const char *name, struct swm_caller caller, int own_copy) {
    static const char *const runtimes[] = {"libstdc++.so.6", "libc++.so.1", "libc++abi.so.1"};
    int saved = errno, shared = 0;
    void *symbol = NULL;
    for (size_t i = 0; i < sizeof runtimes / sizeof runtimes[0] && symbol == NULL; i++) {
        void *handle = dlopen(runtimes[i], RTLD_LAZY | RTLD_NOLOAD);
        if (handle == NULL) {
            (void)dlerror();
            continue;
        }
        shared = 1;
        symbol = dlsym(handle, name);
        if (symbol == NULL) {
            (void)dlerror();
            dlclose(handle);
        }
    }
    if (symbol == NULL && !shared && own_copy) {
        Dl_info info;
        void *mine = swm_object_of((const void *)swm_cxx_symbol);
        const void *at = swm_object_of(caller.at) == mine ? caller.above : caller.at;
        if (at != NULL && dladdr(at, &info) != 0 && info.dli_fname != NULL && info.dli_fbase != mine) {
            void *handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
            if (handle != NULL) {
                symbol = dlsym(handle, name);
                void *runtime = dlsym(handle, "_ZSt15get_new_handlerv");
                (void)dlerror();
                dlclose(handle);   // the caller's code is running: its object stays loaded
                if (symbol == NULL || runtime == NULL || swm_object_of(symbol) != info.dli_fbase
                    || swm_object_of(runtime) != info.dli_fbase) symbol = NULL;
            } else {
                (void)dlerror();
            }
        }
    }
    errno = saved;
    return symbol;
}

/// The installed new-handler, or NULL (none, or no C++ runtime), for the `operator new`
/// called from `caller` (see `swm_cxx_symbol`; `own_copy` as there).
static swm_new_handler swm_get_new_handler(struct swm_caller caller, int own_copy) {
    swm_new_handler (*get)(void) = _ZSt15get_new_handlerv;
    if (get == NULL) get = (swm_new_handler (*)(void))swm_cxx_symbol("_ZSt15get_new_handlerv", caller, own_copy);
    return get != NULL ? get() : NULL;
}

/// The C++ rules once an allocation of `size` bytes (aligned to `alignment`, 0 for the
/// default) failed: the new-handler and a retry while there is one, then std::bad_alloc.
/// Only C frames are on the stack here, all with unwind tables, so the exception reaches
/// the caller of `operator new`.
///
/// The exception comes from the runtime's `std::__throw_bad_alloc`. A module's static copy
/// keeps only what the module uses and may lack it: then from that copy's `operator new`
/// of the same form, which calls malloc again, finds no new-handler (this loop ran until
/// there was none) and throws. If memory came back meanwhile it returns swmalloc's block,
/// which is as good; anything else from it (a module's own pool, whose block would reach
/// swmalloc's `delete`: R38) is not taken.
__attribute__((noinline)) static void *swm_new_out_of_memory(intptr_t size, intptr_t alignment, struct swm_caller caller) {
    for (;;) {
        swm_new_handler handler = swm_get_new_handler(caller, 1);
        if (handler == NULL) break;
        handler();
        void *p = alignment ? swmimpl_memalign(alignment, size) : swmimpl_malloc(size);
        if (p != NULL) return p;
    }
    void (*throw_bad_alloc)(void) = _ZSt17__throw_bad_allocv;
    if (throw_bad_alloc == NULL) throw_bad_alloc = (void (*)(void))swm_cxx_symbol("_ZSt17__throw_bad_allocv", caller, 1);
    if (throw_bad_alloc != NULL) throw_bad_alloc();
    void *p = NULL;
    if (alignment) {
        void *(*own_new)(intptr_t, intptr_t) = (void *(*)(intptr_t, intptr_t))swm_cxx_symbol("_ZnwmSt11align_val_t", caller, 1);
        if (own_new != NULL) p = own_new(size, alignment);
    } else {
        void *(*own_new)(intptr_t) = (void *(*)(intptr_t))swm_cxx_symbol("_Znwm", caller, 1);
        if (own_new != NULL) p = own_new(size);
    }
    if (p != NULL && swmimpl_holds(p)) return p;
    static const char message[] = "swmalloc: operator new: out of memory, and no C++ runtime to throw std::bad_alloc\n";
    swmshim_write(2, message, sizeof message - 1);
    swmshim_abort();
}

/// The four nothrow `operator new` forms, by index: `new`, `new[]`, and their aligned forms.
enum { SWM_NOTHROW_FORMS = 4 };
static const char *const swm_nothrow_names[SWM_NOTHROW_FORMS] = {
    "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
    "_ZnamSt11align_val_tRKSt9nothrow_t"};

/// Each nothrow form as the shared C++ runtime defines it (`swm_cxx_symbol`), for
/// `swm_nothrow_out_of_memory`; and as the next object after swmalloc defines it
/// (`dlsym(RTLD_NEXT)`, or the program's replacement where none does), for
/// `swm_nothrow_replaced`. Looked up at load where the process has a C++ runtime then
/// (`swm_cxx_at_load`), else on first need and kept.
static void *volatile swm_nothrow_runtime[SWM_NOTHROW_FORMS];
static void *volatile swm_nothrow_next[SWM_NOTHROW_FORMS];

/// A nothrow `operator new` (`form`, see `swm_nothrow_names`) whose allocation failed: NULL
/// at once without a new-handler; with one, the runtime's own nothrow operator, which
/// calls the throwing one (the handler, a retry, std::bad_alloc) and returns NULL for
/// what it throws — C frames cannot catch. Only a shared runtime's: a module's static copy
/// may define that operator over an `operator new` of its own (a pool), whose block would
/// reach swmalloc's `delete` (R38), so in a module with a static runtime and no shared
/// one in the process the nothrow forms return NULL without the handler.
///
/// The runtime's operator is the one found at load when the process had its runtime
/// then: looked up here, the lookup's `dlopen` allocates, which fails when memory is out
/// (review R109: the handler that would have freed a reserve was never called), and
/// waits for the loader's lock, which a library constructor that joins this thread holds
/// (a hang).
__attribute__((noinline)) static void *swm_nothrow_out_of_memory(intptr_t size, intptr_t alignment, const void *tag,
                                                                  int form) {
    struct swm_caller unknown = {NULL, NULL};
    if (swm_get_new_handler(unknown, 0) == NULL) return NULL;
    void *runtime = __atomic_load_n(&swm_nothrow_runtime[form], __ATOMIC_ACQUIRE);
    if (runtime == NULL) {
        runtime = swm_cxx_symbol(swm_nothrow_names[form], unknown, 0);
        if (runtime == NULL) return NULL;
        __atomic_store_n(&swm_nothrow_runtime[form], runtime, __ATOMIC_RELEASE);   // its runtime stays loaded
    }
    if (alignment) return ((void *(*)(intptr_t, intptr_t, const void *))runtime)(size, alignment, tag);
    return ((void *(*)(intptr_t, const void *))runtime)(size, tag);
}

/// `operator new`'s slow path. The fast path (`swmimpl_cxx_new`) reaches it by a tail
/// jump, so its return address is in the code that called `operator new`. In the debug
/// configuration (`DEBUG`, SwiftPM's: the Swift core unoptimised, whatever this file's
/// own optimisation) the fast path calls it instead, and every frame keeps its frame
/// pointer: that code is then one frame further.
void *swmshim_cxx_new_slow(intptr_t size) {
    void *p = swmimpl_malloc(size);
    if (p != NULL) return p;
#ifdef DEBUG
    struct swm_caller caller = {__builtin_return_address(0), __builtin_return_address(1)};
#else
    struct swm_caller caller = {__builtin_return_address(0), NULL};
#endif
    return swm_new_out_of_memory(size, 0, caller);
}

/// `operator new(size_t, align_val_t)`: memalign's rules, then the C++ rules.
static void *swm_new_aligned(intptr_t size, intptr_t alignment, struct swm_caller caller) {
    void *p = swmimpl_memalign(alignment, size);
    return p != NULL ? p : swm_new_out_of_memory(size, alignment, caller);
}

/// Exports `name` as a jump to whatever the process's global scope binds `over` to: its
/// global offset table entry (swmalloc's own `over`, or the program's replacement).
#if defined(__x86_64__)
#define SWM_OVER(name, over)                                                                  \
    __attribute__((naked, visibility("default"))) void name(void) {                          \
        __asm__("jmp *" #over "@GOTPCREL(%rip)");                                             \
    }
#elif defined(__aarch64__)
#define SWM_OVER(name, over)                                                                  \
    __attribute__((naked, visibility("default"))) void name(void) {                          \
        __asm__("adrp x16, :got:" #over "\n ldr x16, [x16, :got_lo12:" #over "]\n br x16");   \
    }
#else
#error "exports.c: add the jump through the global offset table of this architecture"
#endif

void *swmimpl_cxx_new(intptr_t size);

/// The aligned `operator new`: memalign, then the C++ rules with the caller.
__attribute__((visibility("default"))) void *_ZnwmSt11align_val_t(intptr_t size, intptr_t alignment) {
    return swm_new_aligned(size, alignment, (struct swm_caller){__builtin_return_address(0), NULL}); // new(size_t, align_val_t)
}
SWM_FORWARD(_Znwm, swmimpl_cxx_new)                                      // new(size_t)
SWM_FORWARD(_ZdlPv, swmimpl_free)                                        // delete(void *)
SWM_FORWARD(_ZdlPvSt11align_val_t, swmimpl_free)                         // delete(void *, align_val_t)

// The forms over the basic ones, each over the one the C++ runtime's calls.
SWM_OVER(_Znam, _Znwm)                                                   // new[](size_t)
SWM_OVER(_ZnamSt11align_val_t, _ZnwmSt11align_val_t)                     // new[](size_t, align_val_t)
SWM_OVER(_ZdaPv, _ZdlPv)                                                 // delete[](void *)
SWM_OVER(_ZdlPvm, _ZdlPv)                                                // delete(void *, size_t)
SWM_OVER(_ZdaPvm, _ZdaPv)                                                // delete[](void *, size_t)
SWM_OVER(_ZdlPvRKSt9nothrow_t, _ZdlPv)                                   // delete(void *, nothrow_t)
SWM_OVER(_ZdaPvRKSt9nothrow_t, _ZdaPv)                                   // delete[](void *, nothrow_t)
SWM_OVER(_ZdaPvSt11align_val_t, _ZdlPvSt11align_val_t)                   // delete[](void *, align_val_t)
SWM_OVER(_ZdlPvmSt11align_val_t, _ZdlPvSt11align_val_t)                  // delete(void *, size_t, align_val_t)
SWM_OVER(_ZdaPvmSt11align_val_t, _ZdaPvSt11align_val_t)                  // delete[](void *, size_t, align_val_t)
SWM_OVER(_ZdlPvSt11align_val_tRKSt9nothrow_t, _ZdlPvSt11align_val_t)     // delete(void *, align_val_t, nothrow_t)
SWM_OVER(_ZdaPvSt11align_val_tRKSt9nothrow_t, _ZdaPvSt11align_val_t)     // delete[](void *, align_val_t, nothrow_t)

/// swmalloc's own definitions of the throwing `new`s, under names the global scope cannot
/// replace (so `&swm_own__Znam` is this library's `_Znam`, where `&_Znam` is the global
/// scope's).
extern void swm_own__Znwm(void) __attribute__((alias("_Znwm"), visibility("hidden")));
extern void swm_own__Znam(void) __attribute__((alias("_Znam"), visibility("hidden")));
extern void swm_own__ZnwmSt11align_val_t(void) __attribute__((alias("_ZnwmSt11align_val_t"), visibility("hidden")));
extern void swm_own__ZnamSt11align_val_t(void) __attribute__((alias("_ZnamSt11align_val_t"), visibility("hidden")));

/// The global scope's definition of `sym`: its global offset table entry.
#if defined(__x86_64__)
#define SWM_GLOBAL(sym)                                                          \
    ({                                                                           \
        void *global_;                                                           \
        __asm__("movq " #sym "@GOTPCREL(%%rip), %0" : "=r"(global_));            \
        global_;                                                                 \
    })
#elif defined(__aarch64__)
#define SWM_GLOBAL(sym)                                                          \
    ({                                                                           \
        void *global_;                                                           \
        __asm__("adrp %0, :got:" #sym "\n ldr %0, [%0, :got_lo12:" #sym "]" : "=r"(global_)); \
        global_;                                                                 \
    })
#endif

/// Whether the global scope's `operator new` `global` is swmalloc's `own` (in the shared
/// library, `_Znwm` is the entry point `swmimpl_cxx_new` itself: swmalloc-aliases.ld).
static inline int swm_is_own(void *global, void *own) {
    return global == own || (own == (void *)swm_own__Znwm && global == (void *)swmimpl_cxx_new);
}

/// A nothrow `new` (`form`) whose throwing form the program replaced: the C++ runtime's
/// own nothrow form, which calls the replacement and catches what it throws (found at
/// load, `swm_cxx_at_load`, or looked up once: a program whose runtime came later pays
/// the loader's lock on its first nothrow `new` only); without a shared runtime (a
/// program with a static libstdc++ that does not keep that form), the replacement itself
/// (`replaced`), whose exception, if it throws, reaches the caller.
static void *swm_nothrow_replaced(int form, void *replaced, intptr_t size, intptr_t alignment, const void *tag) {
    void *volatile *cache = &swm_nothrow_next[form];
    void *runtime = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (runtime == NULL) {
        int saved = errno;
        runtime = dlsym(RTLD_NEXT, swm_nothrow_names[form]);
        if (runtime == NULL) {
            (void)dlerror();
            runtime = replaced;
        }
        errno = saved;
        __atomic_store_n(cache, runtime, __ATOMIC_RELEASE);
    }
    if (runtime == replaced) {
        if (alignment) return ((void *(*)(intptr_t, intptr_t))runtime)(size, alignment);
        return ((void *(*)(intptr_t))runtime)(size);
    }
    if (alignment) return ((void *(*)(intptr_t, intptr_t, const void *))runtime)(size, alignment, tag);
    return ((void *(*)(intptr_t, const void *))runtime)(size, tag);
}

/// A nothrow `operator new` (`form`, see `swm_nothrow_names`) defined over `over` (and
/// `basic`, what `over` is defined over: the array form's plain one), given as their
/// global and own definitions: malloc, or memalign when `aligned`, while both are
/// swmalloc's, then `swm_nothrow_out_of_memory` when that fails; else
/// `swm_nothrow_replaced`.
static inline void *swm_nothrow_new(int form, void *over, void *own_over, void *basic, void *own_basic, intptr_t size,
                                    int aligned, intptr_t alignment, const void *tag) {
    if (__builtin_expect(!swm_is_own(over, own_over) || !swm_is_own(basic, own_basic), 0))
        return swm_nothrow_replaced(form, over, size, alignment, tag);
    void *p = aligned ? swmimpl_memalign(alignment, size) : swmimpl_malloc(size);
    return p != NULL ? p : swm_nothrow_out_of_memory(size, alignment, tag, form);
}

/// Define the nothrow `operator new` `name` (form `form`) over `over` and `basic`
/// (`swm_nothrow_new`): `SWM_NOTHROW_NEW` takes a size, `SWM_NOTHROW_NEW_ALIGNED` a size
/// and an alignment.
#define SWM_NOTHROW_ARGUMENTS(form, over, basic)                                                           \
    form, SWM_GLOBAL(over), (void *)swm_own_##over, SWM_GLOBAL(basic), (void *)swm_own_##basic
#define SWM_NOTHROW_NEW(name, form, over, basic)                                                           \
    __attribute__((visibility("default"))) void *name(intptr_t size, const void *tag) {                   \
        return swm_nothrow_new(SWM_NOTHROW_ARGUMENTS(form, over, basic), size, 0, 0, tag);                 \
    }
#define SWM_NOTHROW_NEW_ALIGNED(name, form, over, basic)                                                   \
    __attribute__((visibility("default"))) void *name(intptr_t size, intptr_t alignment, const void *tag) { \
        return swm_nothrow_new(SWM_NOTHROW_ARGUMENTS(form, over, basic), size, 1, alignment, tag);         \
    }

SWM_NOTHROW_NEW(_ZnwmRKSt9nothrow_t, 0, _Znwm, _Znwm)                                       // new(size_t, nothrow_t)
SWM_NOTHROW_NEW(_ZnamRKSt9nothrow_t, 1, _Znam, _Znwm)                                       // new[](size_t, nothrow_t)
SWM_NOTHROW_NEW_ALIGNED(_ZnwmSt11align_val_tRKSt9nothrow_t, 2, _ZnwmSt11align_val_t, _ZnwmSt11align_val_t) // new(size_t, align_val_t, nothrow_t)
SWM_NOTHROW_NEW_ALIGNED(_ZnamSt11align_val_tRKSt9nothrow_t, 3, _ZnamSt11align_val_t, _ZnwmSt11align_val_t) // new[](size_t, align_val_t, nothrow_t)

/// At load, where the process has a C++ runtime already (the weak reference to its
/// `std::get_new_handler` is bound: a C++ program, or a C program linked against one):
/// the nothrow forms' lookups, made now so that neither an out-of-memory path nor a
/// first call needs the loader (review R109: a nothrow `new` at real exhaustion did not
/// call the new-handler, as the lookup's `dlopen` could not allocate; one in a thread
/// that a library's constructor joined, inside `dlopen`, waited for the loader's lock
/// for good, and so did a first nothrow `new` there in a program that replaces `operator
/// new`). Only what is found is kept: a runtime loaded later with `dlopen` is looked up
/// when needed, as before.
static void swm_cxx_at_load(void) {
    if (_ZSt15get_new_handlerv == NULL) return;
    struct swm_caller unknown = {NULL, NULL};
    int saved = errno;
    for (int form = 0; form < SWM_NOTHROW_FORMS; form++) {
        void *runtime = swm_cxx_symbol(swm_nothrow_names[form], unknown, 0);
        if (runtime != NULL) __atomic_store_n(&swm_nothrow_runtime[form], runtime, __ATOMIC_RELEASE);
        void *next = dlsym(RTLD_NEXT, swm_nothrow_names[form]);
        if (next != NULL) __atomic_store_n(&swm_nothrow_next[form], next, __ATOMIC_RELEASE);
        else (void)dlerror();
    }
    errno = saved;
}

// ---- statistics and maintenance (include/swmalloc.h) ----
SWM_FORWARD(swm_version, swmimpl_version)
SWM_FORWARD(swm_stats_get, swmimpl_stats_get)
SWM_FORWARD(swm_class_count, swmimpl_class_count)
SWM_FORWARD(swm_class_size, swmimpl_class_size)
SWM_FORWARD(swm_class_of, swmimpl_class_of)
SWM_FORWARD(swm_class_stats_get, swmimpl_class_stats_get)
SWM_FORWARD(swm_thread_allocated, swmimpl_thread_allocated)
SWM_FORWARD(swm_thread_freed, swmimpl_thread_freed)
SWM_FORWARD(swm_stats_print, swmimpl_stats_print)
SWM_FORWARD(swm_collect, swmimpl_collect)
SWM_FORWARD(swm_purger_wakeups, swmimpl_purger_wakeups)
SWM_FORWARD(swm_pages_formatted, swmimpl_pages_formatted)
SWM_FORWARD(swm_validate, swmimpl_validate)
#ifdef DEBUG
SWM_FORWARD(swm_debug_set_remote_hook, swmimpl_debug_set_remote_hook)   // debug builds: tests only
SWM_FORWARD(swm_debug_set_release_hook, swmimpl_debug_set_release_hook)   // debug builds: tests only
SWM_FORWARD(swm_debug_set_collect_hook, swmimpl_debug_set_collect_hook)   // debug builds: tests only
SWM_FORWARD(swm_debug_segment_visits, swmimpl_debug_segment_visits)   // debug builds: tests only
#endif

// ---- VOS (include/vos_mem.h, include/swmalloc.h) ----
SWM_FORWARD(VOS_MallocWithDebug, swmimpl_VOS_MallocWithDebug)
SWM_FORWARD(VOS_MallocModule, swmimpl_VOS_MallocModule)
SWM_FORWARD(VOS_Free_Debug, swmimpl_VOS_Free_Debug)
SWM_FORWARD(VOS_CallocWithDebug, swmimpl_VOS_CallocWithDebug)
SWM_FORWARD(VOS_CallocModule, swmimpl_VOS_CallocModule)
SWM_FORWARD(VOS_ReallocWithDebug, swmimpl_VOS_ReallocWithDebug)
SWM_FORWARD(VOS_ReallocModule, swmimpl_VOS_ReallocModule)
SWM_FORWARD(swm_vos_set_quota, swmimpl_vos_set_quota)
SWM_FORWARD(swm_vos_module_stats, swmimpl_vos_module_stats)
SWM_FORWARD(swm_vos_modules, swmimpl_vos_modules)
SWM_FORWARD(swm_vos_sites, swmimpl_vos_sites)
SWM_FORWARD(swm_vos_report, swmimpl_vos_report)

// ---- at load ----
void swmimpl_process_start(void);

/// The library's constructor: glibc's thread count found (for the purger, see
/// swmshim_main_thread_ending), options, the loading thread's heap, and the exit, fork and
/// signal handlers (Process.start), so that a program that never calls malloc still gets
/// what its options ask for. errno is kept: a C program starts with errno 0.
__attribute__((constructor)) static void swm_load(void) {
    int saved = errno;
    swmshim_find_glibc_threads();
    swmimpl_process_start();
    swm_cxx_at_load();
    errno = saved;
}

void swmimpl_process_end(void);

/// The library's destructor, at the process's exit: waits for the abort of a fatal error
/// another thread is reporting (OS.awaitFatalAtExit).
__attribute__((destructor)) static void swm_unload(void) {
    int saved = errno;
    swmimpl_process_end();
    errno = saved;
}
