/* cxx_nothrow_loader.cpp — the nothrow operator new forms need neither memory nor the
 * loader on their slow paths (review R109). Modes:
 *   constructor LIB  dlopen LIB (cxx_nothrow_loader_lib.cpp), whose constructor joins a
 *                    thread that calls nothrow new: it must return (an alarm kills the
 *                    program after 20 s), the huge request NULL after one handler call,
 *                    the int allocated. Built with -DREPLACES_NEW the program replaces
 *                    operator new and delete (a counting pair, with the new-handler loop
 *                    of the standard), so that the nothrow forms defer to the C++
 *                    runtime's: its first call looked the runtime up under that lock (a
 *                    hang), as did the out-of-memory path of the plain build.
 *   exhausted        for each of the four nothrow forms, in a child whose address space
 *                    is limited to 448 MiB above what it maps at the start: a handler
 *                    frees a 64 MiB reserve; 64-byte objects are allocated until NULL;
 *                    the handler must have been called and the reserve released (the
 *                    lookup of the runtime's nothrow form needed memory and failed, and
 *                    NULL came back without the handler).
 * Prints "cxx nothrow loader ok" or fails a CHECK. */
#include "check.h"

#include <dlfcn.h>
#include <new>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#ifdef REPLACES_NEW
static long replaced_news;

void *operator new(std::size_t size) {
    replaced_news++;
    for (;;) {
        void *p = malloc(size != 0 ? size : 1);
        if (p != nullptr) return p;
        std::new_handler handler = std::get_new_handler();
        if (handler == nullptr) throw std::bad_alloc();
        handler();
    }
}

void operator delete(void *p) noexcept { free(p); }
#endif

static void constructor_joins_thread(const char *library) {
    alarm(20);
    void *handle = dlopen(library, RTLD_NOW);
    CHECKF(handle != nullptr, "dlopen: %s", dlerror());
    alarm(0);
    int *huge_null = (int *)dlsym(handle, "loader_huge_null");
    int *handler_calls = (int *)dlsym(handle, "loader_handler_calls");
    int *int_ok = (int *)dlsym(handle, "loader_int_ok");
    CHECK(huge_null != nullptr && handler_calls != nullptr && int_ok != nullptr);
    CHECKF(*huge_null && *handler_calls == 1 && *int_ok, "huge request NULL %d, handler calls %d, int %d", *huge_null,
           *handler_calls, *int_ok);
}

static char *reserve;
static int reserve_calls;

static void release_reserve() {
    reserve_calls++;
    if (reserve != nullptr) {
        delete[] reserve;
        reserve = nullptr;
    } else {
        std::set_new_handler(nullptr);
    }
}

/* One nothrow form (0 new, 1 new[], 2 aligned new, 3 aligned new[]) of 64 bytes. */
static void *nothrow_new(int form) {
    switch (form) {
    case 0: return ::operator new(64, std::nothrow);
    case 1: return ::operator new[](64, std::nothrow);
    case 2: return ::operator new(64, std::align_val_t(64), std::nothrow);
    default: return ::operator new[](64, std::align_val_t(64), std::nothrow);
    }
}

static void exhausted(int form) {
    struct rlimit limit;
    limit.rlim_cur = limit.rlim_max = statm_bytes(0) + ((size_t)448 << 20);
    CHECK(setrlimit(RLIMIT_AS, &limit) == 0);
    reserve = new char[64 << 20];
    memset(reserve, 1, 64 << 20);
    std::set_new_handler(release_reserve);
    void **chain = nullptr;
    long count = 0;
    for (void *p; (p = nothrow_new(form)) != nullptr; count++) {
        *(void ***)p = chain;
        chain = (void **)p;
    }
    CHECKF(reserve_calls >= 1 && reserve == nullptr, "form %d: NULL after %ld objects, the handler called %d times, "
           "the reserve %s", form, count, reserve_calls, reserve != nullptr ? "still held" : "released");
}

int main(int argc, char **argv) {
    CHECK(argc >= 2);
    if (strcmp(argv[1], "constructor") == 0) {
        CHECK(argc == 3);
        constructor_joins_thread(argv[2]);
    } else {
        CHECK(strcmp(argv[1], "exhausted") == 0);
        for (int form = 0; form < 4; form++) {
            fflush(stdout);
            pid_t child = fork();
            CHECK(child >= 0);
            if (child == 0) {
                exhausted(form);
                _exit(0);
            }
            int status;
            CHECK(waitpid(child, &status, 0) == child);
            CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "form %d: the child failed (status %#x)", form, status);
        }
    }
    printf("cxx nothrow loader ok\n");
    return 0;
}
