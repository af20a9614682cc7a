/* cxx_replaced_early.cpp — a shared library whose global constructor runs ordinary C++
 * (a vector and a string made and destroyed: sized delete) and keeps a `new[]` block for
 * the program to `delete[]` in main. Linked into cxx_replaced.cpp (built with
 * -DEARLY_LIBRARY), whose replaced `operator new`/`operator delete` must serve both.
 * Its constructor runs before swmalloc's when swmalloc is preloaded: review R47 found
 * the forms it uses decided only in swmalloc's constructor, so its blocks reached the
 * wrong delete and aborted. */
#include <string>
#include <vector>

/** The block the constructor kept, for the program's delete[]. */
char *early_block;

/** What the constructor computed (the program checks it ran). */
int early_sum;

namespace {
struct Early {
    Early() {
        std::vector<int> numbers(100, 1);
        for (int n : numbers) early_sum += n;
        std::string text(100, 'x');
        early_sum += (int)text.size();
        early_block = new char[40];
    }
} early;
}
