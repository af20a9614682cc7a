/* move_target.c — the shim's swmshim_move_target_kept, linked in from shim.c: after an
 * mremap to a reserved target failed, the target is given back only when it is still the
 * reservation. A kernel before 6.16 may have unmapped it before failing, and another
 * thread may have mapped something there since (review R75), which a kernel of today
 * cannot make happen; here the test unmaps the target itself. Three cases: the
 * reservation intact (kept: 1), the target unmapped and free (mapped again, kept: 1),
 * the target unmapped with another mapping inside it (not kept: 0, and that mapping
 * still holds its byte). Prints "move target ok" when every case held. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>

int swmshim_move_target_kept(void *target, size_t len);

int main(void) {
    const size_t mib = (size_t)1 << 20;
    char *reservation = mmap(NULL, 64 * mib, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (reservation == MAP_FAILED) return perror("mmap"), 1;
    char *target = reservation + mib;
    int intact = swmshim_move_target_kept(target, 48 * mib);
    munmap(target, 48 * mib);
    int freed = swmshim_move_target_kept(target, 48 * mib);
    munmap(target, 48 * mib);
    char *other = mmap(target + 4 * mib, 4 * mib, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (other != target + 4 * mib) return fprintf(stderr, "could not map inside the target\n"), 1;
    other[0] = 42;
    int taken = swmshim_move_target_kept(target, 48 * mib);
    if (intact != 1 || freed != 1 || taken != 0 || other[0] != 42) {
        fprintf(stderr, "intact %d (1), unmapped and free %d (1), another mapping inside %d (0), its byte %d (42)\n",
                intact, freed, taken, other[0]);
        return 1;
    }
    printf("move target ok\n");
    return 0;
}
