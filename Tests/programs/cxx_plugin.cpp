/* cxx_plugin.cpp — a C++ module that a C program loads with dlopen (as python3 loads a C++
 * extension): the C++ runtime arrives after the allocator. Built as a shared library
 * for cxx_plugin_host.c, linked with the shared libstdc++ or with a static copy of its
 * own (-static-libstdc++ -static-libgcc: the process then has no libstdc++.so at all,
 * and the module's new-handler lives in its own copy). */
#include <new>
#include <stddef.h>

static int handler_calls;

/* A new-handler that cannot free anything: it uninstalls itself. */
static void give_up(void) {
    handler_calls++;
    std::set_new_handler(nullptr);
}

/* Asks for `size` bytes with new[], with the over-aligned new and with the nothrow form,
 * each after installing the handler: returns 1 when both throwing forms threw
 * std::bad_alloc after one call of the handler each and the nothrow form returned NULL
 * (after another call when `nothrow_calls_handler`), 0 otherwise. */
extern "C" int plugin_out_of_memory(size_t size, int nothrow_calls_handler) {
    int caught = 0;
    std::set_new_handler(give_up);
    try {
        char *volatile p = new char[size];
        delete[] p;
    } catch (const std::bad_alloc &) {
        caught++;
    }
    struct alignas(256) wide { char bytes[256]; };
    std::set_new_handler(give_up);
    try {
        wide *volatile w = new wide[size / sizeof(wide)];
        delete[] w;
    } catch (const std::bad_alloc &) {
        caught++;
    }
    std::set_new_handler(give_up);
    void *q = ::operator new(size, std::nothrow);
    return caught == 2 && handler_calls == (nothrow_calls_handler ? 3 : 2) && q == nullptr;
}
