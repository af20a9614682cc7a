/* cxx_replaced_aligned.cpp — a program that replaces only the aligned pair, `operator
 * new(size_t, align_val_t)` and `operator delete(void *, align_val_t)` (to count, or to
 * place over-aligned objects in an arena of its own). `new` and `delete` of an
 * over-aligned type use the array, sized and nothrow aligned forms too, which must reach
 * the replaced pair ([new.delete]); swmalloc's went to memalign and free instead (review
 * R46). Run linked with -lswmalloc or preloaded: prints "cxx replaced aligned ok" or
 * fails a CHECK. */
#include "check.h"

#include <new>
#include <stdint.h>

/* The replaced pair's arena: blocks handed out here are never freed. */
alignas(4096) static char arena[1 << 20];
static size_t top;
static long news, deletes;

void *operator new(size_t size, std::align_val_t alignment) {
    size_t a = (size_t)alignment;
    top = (top + a - 1) & ~(a - 1);
    if (top + size > sizeof arena) throw std::bad_alloc();
    void *p = arena + top;
    top += size;
    news++;
    return p;
}

void operator delete(void *p, std::align_val_t) noexcept {
    if (p == NULL) return;
    CHECKF((char *)p >= arena && (char *)p < arena + sizeof arena, "operator delete(%p, align_val_t): not from the arena", p);
    deletes++;
}

/** An over-aligned type: `new` and `delete` of it use the aligned forms. */
struct alignas(64) Vector {
    float x[16];
};

int main(void) {
    Vector *v = new Vector;
    CHECK(((uintptr_t)v & 63) == 0);
    delete v;                                      /* sized aligned delete */
    Vector *w = new Vector[4];                     /* array aligned new */
    delete[] w;                                    /* sized array aligned delete */
    Vector *n = new (std::nothrow) Vector;         /* nothrow aligned new */
    CHECK(n != NULL);
    ::operator delete(n, std::align_val_t(64), std::nothrow);
    void *a = ::operator new[](100, std::align_val_t(128), std::nothrow);
    CHECK(a != NULL && ((uintptr_t)a & 127) == 0);
    ::operator delete[](a, std::align_val_t(128));
    CHECKF(news == 4 && deletes == 4, "the replaced pair saw %ld news and %ld deletes of 4", news, deletes);
    printf("cxx replaced aligned ok\n");
    return 0;
}
