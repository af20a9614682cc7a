/* check.h — assertion helpers shared by the C test programs: a failed CHECK prints the
 * condition and its line on stderr and exits 1. */
#ifndef SWM_TEST_CHECK_H
#define SWM_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

/** Fails the program (exit 1) with a message naming the condition when `cond` is false. */
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

/** CHECK with a printf-style explanation. */
#define CHECKF(cond, ...)                                                                 \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "CHECK failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

#endif
