/* cxx_nothrow_loader_lib.cpp — a library whose constructor starts a thread and joins it,
 * as some plugins do: the constructor runs inside dlopen, under the loader's lock, so the
 * thread must not need the loader. The thread installs a new-handler (it uninstalls
 * itself), asks the nothrow operator new for 2^62 bytes (NULL, after one handler call),
 * then for an int (a block). Built -shared -fPIC; cxx_nothrow_loader.cpp loads it. */
#include <new>
#include <pthread.h>

/* What the thread found: the huge request's result was NULL, the handler's calls, the
 * int's request gave a block. */
extern "C" int loader_huge_null, loader_handler_calls, loader_int_ok;
int loader_huge_null, loader_handler_calls, loader_int_ok;

static void give_up() {
    loader_handler_calls++;
    std::set_new_handler(nullptr);
}

static void *worker(void *) {
    std::set_new_handler(give_up);
    void *huge = ::operator new((size_t)1 << 62, std::nothrow);
    loader_huge_null = huge == nullptr;
    int *small = new (std::nothrow) int(5);
    loader_int_ok = small != nullptr && *small == 5;
    delete small;
    return nullptr;
}

__attribute__((constructor)) static void start() {
    pthread_t thread;
    if (pthread_create(&thread, nullptr, worker, nullptr) == 0) pthread_join(thread, nullptr);
}
