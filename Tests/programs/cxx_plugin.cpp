/* cxx_plugin.cpp — a C++ module that a C program loads with dlopen (as python3 loads a C++
 * extension): the C++ runtime arrives after the allocator. Built as a shared library
 * for cxx_plugin_host.c. */
#include <new>
#include <stddef.h>

static int handler_calls;

/* A new-handler that cannot free anything: it uninstalls itself. */
static void give_up(void) {
    handler_calls++;
    std::set_new_handler(nullptr);
}

/* Asks for `size` bytes with new[] (after installing the handler) and with the nothrow
 * form: returns 1 when new[] threw std::bad_alloc after one call of the handler and the
 * nothrow form returned NULL after another, 0 otherwise. */
extern "C" int plugin_out_of_memory(size_t size) {
    std::set_new_handler(give_up);
    bool caught = false;
    try {
        char *volatile p = new char[size];
        delete[] p;
    } catch (const std::bad_alloc &) {
        caught = true;
    }
    std::set_new_handler(give_up);
    void *q = ::operator new(size, std::nothrow);
    return caught && handler_calls == 2 && q == nullptr;
}
