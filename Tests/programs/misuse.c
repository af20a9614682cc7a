/* misuse.c — one kind of misuse per run: `misuse CASE` (or `misuse list`). Prints
 * "pointer 0x..." (the pointer it misuses) on stdout, then misuses it: the allocator must
 * abort with one line on stderr naming that pointer. Reaching the end exits 3. Runs with
 * swmalloc preloaded. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/** Memory swmalloc never handed out. */
static char static_buffer[4096] __attribute__((aligned(64)));

/** Announces the pointer about to be misused (flushed before the abort). */
static void *announce(void *p) {
    printf("pointer %p\n", p);
    fflush(stdout);
    return p;
}

/** Frees a block of n bytes twice. */
static void double_free(size_t n) {
    void *keep = malloc(n);
    char *p = malloc(n);
    memset(p, 1, n);
    free(announce(p));
    free(p);
    free(keep);
}

/** Frees the block its argument points to (run on another thread). */
static void *free_on_thread(void *p) {
    free(p);
    return NULL;
}

/** Frees a block of n bytes on another thread, then again on this one (the owner). */
static void double_free_cross_thread(size_t n) {
    void *keep = malloc(n);
    void *p = announce(malloc(n));
    pthread_t t;
    if (pthread_create(&t, NULL, free_on_thread, p) == 0) pthread_join(t, NULL);
    free(p);
    free(keep);
}

/** Frees a pointer inside a block of n bytes. */
static void interior_free(size_t n, size_t offset) {
    char *p = malloc(n);
    free(announce(p + offset));
}

/** Calls realloc, ignoring the result (the call is expected to abort). */
static void reallocate(void *p, size_t n) {
    void *volatile r = realloc(p, n);
    (void)r;
}

/** A page mapped directly, never seen by swmalloc. */
static void *mapped_page(void) {
    void *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/** Runs the case named `name`; returns 0 when there is no such case. */
static int run(const char *name) {
    volatile char stack_buffer[64];
    stack_buffer[0] = 0;
    if (!strcmp(name, "double_free_small")) double_free(64);
    else if (!strcmp(name, "double_free_large")) double_free(512 * 1024);
    else if (!strcmp(name, "double_free_huge")) double_free(8 * 1024 * 1024);
    else if (!strcmp(name, "double_free_cross_thread_small")) double_free_cross_thread(64);
    else if (!strcmp(name, "double_free_cross_thread_large")) double_free_cross_thread(512 * 1024);
    else if (!strcmp(name, "double_free_cross_thread_huge")) double_free_cross_thread(8 * 1024 * 1024);
    else if (!strcmp(name, "free_stack")) free(announce((void *)stack_buffer));
    else if (!strcmp(name, "free_static")) free(announce(static_buffer + 64));
    else if (!strcmp(name, "free_mmap")) free(announce(mapped_page()));
    else if (!strcmp(name, "interior_free_small")) interior_free(64, 16);
    else if (!strcmp(name, "interior_free_large")) interior_free(512 * 1024, 4096);
    else if (!strcmp(name, "interior_free_huge")) interior_free(8 * 1024 * 1024, 65536);
    else if (!strcmp(name, "realloc_interior")) {
        char *p = malloc(1000);
        reallocate(announce(p + 32), 2000);
    } else if (!strcmp(name, "realloc_foreign")) reallocate(announce(static_buffer), 100);
    else if (!strcmp(name, "realloc_freed")) {
        void *keep = malloc(100);
        void *p = malloc(100);
        free(p);
        reallocate(announce(p), 200);
        free(keep);
    } else if (!strcmp(name, "usable_size_interior")) {
        char *p = malloc(300000);
        malloc_usable_size(announce(p + 8));
    } else if (!strcmp(name, "usable_size_foreign")) malloc_usable_size(announce(mapped_page()));
    else return 0;
    return 1;
}

/** The case names, for `misuse list`. */
static const char *const names[] = {
    "double_free_small", "double_free_large", "double_free_huge", "double_free_cross_thread_small",
    "double_free_cross_thread_large", "double_free_cross_thread_huge", "free_stack", "free_static",
    "free_mmap", "interior_free_small", "interior_free_large", "interior_free_huge",
    "realloc_interior", "realloc_foreign", "realloc_freed", "usable_size_interior",
    "usable_size_foreign",
};

/** Runs the case named on the command line; exits 3 when the misuse went unnoticed. */
int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "list")) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) printf("%s\n", names[i]);
        return 0;
    }
    if (argc != 2 || !run(argv[1])) {
        fprintf(stderr, "usage: misuse CASE | misuse list\n");
        return 2;
    }
    fprintf(stderr, "misuse not detected\n");
    return 3;
}
