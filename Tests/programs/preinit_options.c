/* preinit_options.c — the program's first allocation runs in its `.preinit_array`, before
 * libc has set `environ`: swmalloc must still read SWMALLOC_OPTIONS (from the environment
 * the process started with). Prints "preinit ran" and exits 0; the test checks the line
 * `verbose=1` makes swmalloc print. Before, the options were lost for the whole run
 * (review R94). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int preinit_ran;

/** Allocates, writes and frees a block before libc's own initialisation. */
static void first_allocation(int argc, char **argv, char **envp) {
    (void)argc;
    (void)argv;
    (void)envp;
    char *volatile p = malloc(100);
    if (p) {
        memset(p, 1, 100);
        preinit_ran = 1;
    }
    free(p);
}

__attribute__((section(".preinit_array"), used)) static void (*const preinit_entry)(int, char **, char **) = first_allocation;

int main(void) {
    if (!preinit_ran) {
        fprintf(stderr, "the .preinit_array function did not allocate\n");
        return 1;
    }
    printf("preinit ran\n");
    return 0;
}
