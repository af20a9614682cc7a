/* cxx_operators.cpp — C++'s operator new and delete come from swmalloc, keep the C++
 * rules, and give blocks malloc's functions accept. Run linked with -lswmalloc (or with
 * swmalloc preloaded): prints "cxx operators ok" or fails a CHECK. */
#include "check.h"

#include <dlfcn.h>
#include <malloc.h>
#include <new>
#include <stdint.h>

/* The object that defines the operator new this program calls. */
static const char *definer(void *function) {
    Dl_info info;
    CHECK(dladdr(function, &info) != 0 && info.dli_fname != NULL);
    return info.dli_fname;
}

static int handler_calls;

/* A new-handler that cannot free anything: it uninstalls itself, so the retry fails
 * and operator new throws. */
static void give_up(void) {
    handler_calls++;
    std::set_new_handler(nullptr);
}

struct alignas(256) Wide {
    char bytes[300];
};

int main(void) {
    /* The operators are swmalloc's, not the C++ runtime's. */
    void *(*plain_new)(size_t) = &::operator new;
    void *(*array_new)(size_t) = &::operator new[];
    void (*plain_delete)(void *) noexcept = &::operator delete;
    CHECKF(strstr(definer((void *)plain_new), "libswmalloc") != NULL, "operator new from %s", definer((void *)plain_new));
    CHECKF(strstr(definer((void *)array_new), "libswmalloc") != NULL, "operator new[] from %s", definer((void *)array_new));
    CHECKF(strstr(definer((void *)plain_delete), "libswmalloc") != NULL, "operator delete from %s",
           definer((void *)plain_delete));

    /* Blocks of new are malloc blocks: usable size, free of a new block, delete of a
     * malloc block (both the same allocator, as glibc's runtime allows too). */
    char *p = new char[100];
    CHECK(malloc_usable_size(p) >= 100);
    memset(p, 7, 100);
    delete[] p;
    int *q = new int(42);
    CHECK(*q == 42);
    delete q;
    void *m = malloc(64);
    ::operator delete(m, (size_t)64);                          /* sized delete */

    /* operator new(0) gives a unique pointer. */
    void *z1 = ::operator new(0), *z2 = ::operator new(0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    ::operator delete(z1);
    ::operator delete(z2);

    /* Over-aligned types use the aligned forms. */
    Wide *w = new Wide;
    CHECK(((uintptr_t)w & 255) == 0);
    delete w;
    Wide *ws = new Wide[5];
    CHECK(((uintptr_t)ws & 255) == 0);
    delete[] ws;
    void *a = ::operator new(100, std::align_val_t(4096));
    CHECK(((uintptr_t)a & 4095) == 0);
    ::operator delete(a, std::align_val_t(4096));
    void *an = ::operator new(100, std::align_val_t(64), std::nothrow);
    CHECK(an != NULL && ((uintptr_t)an & 63) == 0);
    ::operator delete(an, std::align_val_t(64), std::nothrow);

    /* Out of memory: std::bad_alloc, for each throwing form. */
    size_t huge = (size_t)1 << 62;
    int thrown = 0;
    try { (void)::operator new(huge); } catch (const std::bad_alloc &) { thrown++; }
    try { (void)::operator new[](huge); } catch (const std::bad_alloc &) { thrown++; }
    try { (void)::operator new(huge, std::align_val_t(64)); } catch (const std::bad_alloc &) { thrown++; }
    try { (void)::operator new[](huge, std::align_val_t(64)); } catch (const std::bad_alloc &) { thrown++; }
    CHECK(thrown == 4);

    /* The nothrow forms return NULL. */
    CHECK(::operator new(huge, std::nothrow) == NULL);
    CHECK(::operator new[](huge, std::nothrow) == NULL);
    CHECK(::operator new(huge, std::align_val_t(64), std::nothrow) == NULL);

    /* The new-handler runs before the throw. */
    std::set_new_handler(give_up);
    try { (void)::operator new(huge); } catch (const std::bad_alloc &) { thrown++; }
    CHECK(handler_calls == 1 && thrown == 5);

    /* The nothrow forms call it too (the standard: as if the throwing form were called and
     * what it throws caught), then return NULL. Before, they returned NULL at once. */
    std::set_new_handler(give_up);
    CHECK(::operator new(huge, std::nothrow) == NULL && handler_calls == 2);
    std::set_new_handler(give_up);
    CHECK(::operator new[](huge, std::nothrow) == NULL && handler_calls == 3);
    std::set_new_handler(give_up);
    CHECK(::operator new(huge, std::align_val_t(64), std::nothrow) == NULL && handler_calls == 4);
    std::set_new_handler(give_up);
    CHECK(::operator new[](huge, std::align_val_t(64), std::nothrow) == NULL && handler_calls == 5);

    /* And memory still works after all that. */
    for (int i = 0; i < 1000; i++) delete new char[(size_t)(16 + i * 7)];
    printf("cxx operators ok\n");
    return 0;
}
