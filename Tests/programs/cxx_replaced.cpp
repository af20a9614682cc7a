/* cxx_replaced.cpp — a program that replaces only the two basic operators, `operator
 * new(size_t)` and `operator delete(void *)`, as tracking allocators and leak counters
 * do (a header before each block). The C++ standard has every other form that the program
 * does not replace call these two ([new.delete]); swmalloc defines all 20 forms, and
 * before, its sized, array and nothrow forms went to malloc and free instead: the
 * program's delete found no header and aborted, or counted leaks that were not (review
 * R46). Run linked with -lswmalloc or preloaded: prints "cxx replaced ok" or fails a
 * CHECK. With -DEARLY_LIBRARY, linked to cxx_replaced_early.cpp's library, whose
 * constructor allocated before main. */
#include "check.h"

#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

/* The header the replaced operators put before each block. */
struct alignas(16) Header {
    size_t size;
    size_t magic;
};

static const size_t live_magic = 0x5eedfeed, dead_magic = 0xdeadbeef;
static long news, deletes;

void *operator new(size_t size) {
    Header *h = (Header *)malloc(sizeof(Header) + size);
    if (h == NULL) throw std::bad_alloc();
    h->size = size;
    h->magic = live_magic;
    news++;
    return h + 1;
}

void operator delete(void *p) noexcept {
    if (p == NULL) return;
    Header *h = (Header *)p - 1;
    CHECKF(h->magic == live_magic, "operator delete(%p): no header of the replaced operator new", p);
    h->magic = dead_magic;
    deletes++;
    free(h);
}

/* One allocation through `allocate` and its release through `release`, both of which
 * must reach the replaced pair exactly once. */
#define PAIR(allocate, release)                                                           \
    do {                                                                                  \
        long n = news, d = deletes;                                                       \
        void *p = allocate;                                                               \
        CHECKF(p != NULL && news == n + 1, "%s did not call the replaced new", #allocate); \
        release;                                                                          \
        CHECKF(deletes == d + 1, "%s did not call the replaced delete", #release);        \
    } while (0)

#ifdef EARLY_LIBRARY
extern char *early_block;
extern int early_sum;
#endif

int main(void) {
#ifdef EARLY_LIBRARY
    /* cxx_replaced_early.cpp's constructor ran before main (and, preloaded, before
     * swmalloc's): its temporaries went back through the replaced pair, and its block
     * comes from the replaced new. */
    CHECKF(early_sum == 200 && news == deletes + 1, "early constructor: sum %d, %ld news, %ld deletes", early_sum,
           news, deletes);
    long before_delete = deletes;
    ::operator delete[](early_block);
    CHECKF(deletes == before_delete + 1, "delete[] of the early constructor's block did not call the replaced delete");
#endif
    PAIR(::operator new(40), ::operator delete(p));
    PAIR(::operator new(40), ::operator delete(p, (size_t)40));
    PAIR(::operator new(40), ::operator delete(p, std::nothrow));
    PAIR(::operator new[](40), ::operator delete[](p));
    PAIR(::operator new[](40), ::operator delete[](p, (size_t)40));
    PAIR(::operator new[](40), ::operator delete[](p, std::nothrow));
    PAIR(::operator new(40, std::nothrow), ::operator delete(p));
    PAIR(::operator new[](40, std::nothrow), ::operator delete[](p));

    /* The containers and smart pointers a program uses leak nothing by the count. */
    long before = news - deletes;
    {
        std::vector<std::string> strings(100, std::string(50, 'x'));
        std::unique_ptr<int[]> ints = std::make_unique<int[]>(10);
        std::shared_ptr<long> shared = std::make_shared<long>(1);
        std::map<int, std::string> map;
        for (int i = 0; i < 100; i++) map[i] = std::string(40, 'y');
        long *one = new long(7);
        delete one;
        char *chars = new char[300];
        delete[] chars;
    }
    CHECKF(news - deletes == before, "%ld blocks counted live", news - deletes - before);
    printf("cxx replaced ok\n");
    return 0;
}
