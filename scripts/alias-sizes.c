/* alias-sizes.c — gives the installed library's alias symbols the sizes of the functions
 * they name (scripts/install.sh runs it on the library it links).
 *
 *     cc -O1 scripts/alias-sizes.c -o alias-sizes && ./alias-sizes libswmalloc.so.1.1
 *
 * Sources/swmalloc/swmalloc-aliases.ld binds `malloc`, `free`, `calloc`, `realloc`,
 * `operator new` and the VOS entry points straight to their implementations; lld makes
 * such a symbol with size 0. valgrind skips functions of size 0 when it replaces an
 * allocator's, so `valgrind --soname-synonyms=somalloc=libswmalloc.so*` replaced
 * `posix_memalign` but not `malloc` or `free`, and memcheck saw no heap at all. Every
 * function symbol of size 0 in .symtab and .dynsym that lies at the address of a sized
 * function symbol gets that size. Prints how many it changed; exits 1 on a file that is
 * not a 64-bit little-endian ELF shared object or cannot be written. */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *image;
static long imageSize;

/** The section header of the first section of `type` whose contents lie inside the
 * file, or NULL. */
static Elf64_Shdr *section(Elf64_Word type) {
    Elf64_Ehdr *e = (Elf64_Ehdr *)image;
    if (e->e_shentsize < sizeof(Elf64_Shdr)) return NULL;
    for (int i = 0; i < e->e_shnum; i++) {
        Elf64_Shdr *s = (Elf64_Shdr *)(image + e->e_shoff + (size_t)i * e->e_shentsize);
        if (s->sh_type == type && s->sh_offset <= (Elf64_Off)imageSize && s->sh_size <= (Elf64_Off)imageSize - s->sh_offset) {
            return s;
        }
    }
    return NULL;
}

/** The size of a sized function symbol at `address` in `table`, or 0. */
static Elf64_Xword sizeAt(Elf64_Shdr *table, Elf64_Addr address) {
    if (table == NULL) return 0;
    Elf64_Sym *syms = (Elf64_Sym *)(image + table->sh_offset);
    for (size_t i = 0; i < table->sh_size / sizeof(Elf64_Sym); i++) {
        if (ELF64_ST_TYPE(syms[i].st_info) == STT_FUNC && syms[i].st_value == address && syms[i].st_size != 0) {
            return syms[i].st_size;
        }
    }
    return 0;
}

/** Sizes the unsized function symbols of `table` from `symtab` and `table`; how many. */
static int fix(Elf64_Shdr *table, Elf64_Shdr *symtab) {
    if (table == NULL) return 0;
    int changed = 0;
    Elf64_Sym *syms = (Elf64_Sym *)(image + table->sh_offset);
    for (size_t i = 0; i < table->sh_size / sizeof(Elf64_Sym); i++) {
        if (ELF64_ST_TYPE(syms[i].st_info) != STT_FUNC || syms[i].st_size != 0 || syms[i].st_value == 0) continue;
        Elf64_Xword size = sizeAt(symtab, syms[i].st_value);
        if (size == 0) size = sizeAt(table, syms[i].st_value);
        if (size != 0) {
            syms[i].st_size = size;
            changed++;
        }
    }
    return changed;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIBRARY\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "r+b");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (imageSize = ftell(f)) < (long)sizeof(Elf64_Ehdr)
        || fseek(f, 0, SEEK_SET) != 0 || (image = malloc((size_t)imageSize)) == NULL
        || fread(image, 1, (size_t)imageSize, f) != (size_t)imageSize) {
        fprintf(stderr, "alias-sizes: cannot read %s\n", argv[1]);
        return 1;
    }
    Elf64_Ehdr *e = (Elf64_Ehdr *)image;
    if (memcmp(e->e_ident, ELFMAG, SELFMAG) != 0 || e->e_ident[EI_CLASS] != ELFCLASS64
        || e->e_ident[EI_DATA] != ELFDATA2LSB || e->e_type != ET_DYN
        || e->e_shoff + (Elf64_Off)e->e_shnum * e->e_shentsize > (Elf64_Off)imageSize) {
        fprintf(stderr, "alias-sizes: %s is not a 64-bit little-endian ELF shared object\n", argv[1]);
        return 1;
    }
    Elf64_Shdr *symtab = section(SHT_SYMTAB);
    int changed = fix(section(SHT_DYNSYM), symtab) + fix(symtab, symtab);
    if (fseek(f, 0, SEEK_SET) != 0 || fwrite(image, 1, (size_t)imageSize, f) != (size_t)imageSize || fclose(f) != 0) {
        fprintf(stderr, "alias-sizes: cannot write %s\n", argv[1]);
        return 1;
    }
    printf("%d\n", changed);
    return 0;
}
