/* cxx_plugin_host.c — a C program (no C++ runtime of its own) that loads the C++ module
 * cxx_plugin.cpp with dlopen and runs out of memory in it:
 *     cxx_plugin_host PATH-TO-cxx_plugin.so [no-nothrow-handler]
 * With `no-nothrow-handler` the nothrow form is expected to return NULL without calling
 * the handler: a module with a static runtime in a process without a shared one (the
 * README's documented limit). Otherwise it calls the handler first.
 * The module's operator new is the allocator's; out of memory it must call the module's
 * new-handler and throw std::bad_alloc, which the module catches, so the program goes on.
 * Before, swmalloc found no C++ runtime (its references to it were bound when it was
 * loaded, before the module) and aborted. Then the module must unload with dlclose (a
 * lookup that kept its handle open pinned it: review R36). Prints "plugin caught
 * bad_alloc" and exits 0. Built as C++ too (g++ -x c++): the program then has the shared
 * libstdc++, to which a module's references bind even where it carries a static copy, so
 * the new-handler its code installs is the shared runtime's (R36: swmalloc asked the
 * module's own copy, and the handler was never called). */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2 && !(argc == 3 && strcmp(argv[2], "no-nothrow-handler") == 0)) {
        fprintf(stderr, "usage: cxx_plugin_host PATH-TO-cxx_plugin.so [no-nothrow-handler]\n");
        return 2;
    }
    void *module = dlopen(argv[1], RTLD_NOW);
    if (module == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    int (*out_of_memory)(size_t, int) = (int (*)(size_t, int))dlsym(module, "plugin_out_of_memory");
    if (out_of_memory == NULL) {
        fprintf(stderr, "plugin_out_of_memory not found\n");
        return 2;
    }
    if (!out_of_memory((size_t)1 << 62, argc == 2)) {
        fprintf(stderr, "the module did not get the new-handler, std::bad_alloc and NULL\n");
        return 1;
    }
    if (dlclose(module) != 0 || dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD) != NULL) {
        fprintf(stderr, "the module stayed loaded after dlclose\n");
        return 1;
    }
    printf("plugin caught bad_alloc\n");
    return 0;
}
