#!/usr/bin/env bash
# Checks the install the way a new user meets it (run by .ci/run after the tests; needs
# pkg-config and dpkg-deb, and root for the Debian package part):
#  1. scripts/install.sh --prefix TMP: the files, the soname, the entry points exported
#     as functions (FUNC), pkg-config, a C program built with
#     `pkg-config --cflags --libs swmalloc` that runs on swmalloc, a static C
#     program linked with libswmalloc.a, a static C++ one that gets std::bad_alloc (with
#     the README's -u flags), the installed tool (`swmalloc info`, `run`) and
#     workload program (no Swift runtime needed); installing again, then --uninstall,
#     leaves nothing behind but a directory that was there before; a relative --destdir
#     is taken from the current directory; memcheck (valgrind, where installed) with
#     --soname-synonyms=somalloc=libswmalloc.so* checks a program linked with it.
#     install.sh --libdir lib64: the library there, pkg-config's libdir, the tool finds
#     it, --uninstall leaves nothing.
#  2. scripts/build-deb.sh under umask 077 (the packages' modes are Debian's), `apt-get
#     install` of its three packages, a program preloaded with
#     /usr/lib/MULTIARCH/libswmalloc.so.1, with version 1.0.0's /usr/lib/libswmalloc.so.1
#     and with the soname alone, `swmalloc info`, the package's shlibs, Depends and
#     copyright, `apt-get purge` (skipped, with a note, when not root or without apt-get).
# Prints "check-install: N passed, 0 failed" and exits 0, or stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
passed=0
# Whether text contains a pattern. The text is read whole first: `cmd | grep -q` would stop
# reading at the first match, the writer could die of SIGPIPE, and pipefail would call
# that a failure.
has() { grep -q -e "$2" <<< "$1"; }
ok() { passed=$((passed + 1)); echo "check-install: ok: $*"; }
fail() { echo "check-install: FAILED: $*" >&2; echo "check-install: $passed passed, 1 failed"; exit 1; }

# The entry points the link binds by name are functions, with their sizes, in the dynamic
# symbol table of library $1, which is all a stripped library has: uprobes (bcc, bpftrace)
# and `perf probe` look functions up there (they were untyped: review R34), and valgrind
# replaces no function of size 0 (memcheck saw no heap: scripts/alias-sizes.c).
expect_function_exports() {
  local dynsyms name
  dynsyms="$(readelf --dyn-syms -W "$1")"
  for name in malloc free calloc realloc _Znwm _Znam VOS_MallocModule VOS_MallocWithDebug VOS_Free_Debug posix_memalign; do
    has "$dynsyms" " [1-9][0-9]* FUNC  *GLOBAL  *DEFAULT  *[0-9][0-9]* $name\$" \
      || fail "$1: $name is not exported as a function with its size"
  done
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
cat > "$work/probe.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <swmalloc.h>
int main(int argc, char **argv) {
    (void)argv;
    char *p = malloc(100 * (size_t)argc);   /* used, so the compiler cannot drop it */
    strcpy(p, "swmalloc");
    if (puts(p) < 0) return 2;
    free(p);
    swm_stats_t st;
    if (swm_stats_get(&st) != 0 || st.mallocs == 0) return 1;
    printf("mallocs %zu\n", st.mallocs);
    return 0;
}
EOF

# A program that knows nothing of swmalloc, for preloading: it allocates and exits.
printf '#include <stdio.h>\n#include <stdlib.h>\nint main(int c, char **v) { char *p = malloc(64 * (size_t)c); (void)v; return p == NULL || printf("%%p\\n", (void *)p) < 0; }\n' > "$work/plain.c"
cc -O1 "$work/plain.c" -o "$work/plain" || fail "building the plain program"

# ---- 1. install into a prefix ----
mkdir -p "$prefix/share/man"   # there before: --uninstall must leave it
bash scripts/install.sh --prefix "$prefix" > "$work/install.log" || { cat "$work/install.log"; fail "install.sh"; }
for f in lib/libswmalloc.so.1.1 lib/libswmalloc.so.1 lib/libswmalloc.so lib/libswmalloc.a lib/pkgconfig/swmalloc.pc \
         include/swmalloc.h include/vos_mem.h bin/swmalloc libexec/swmalloc/swm-workload share/man/man1/swmalloc.1 \
         share/doc/swmalloc/README.md; do
  [ -e "$prefix/$f" ] || fail "$f not installed"
done
ok "install.sh put every file in place"
has "$(readelf -d "$prefix/lib/libswmalloc.so.1.1")" 'SONAME.*\[libswmalloc.so.1\]' || fail "soname is not libswmalloc.so.1"
needed="$(readelf -d "$prefix/lib/libswmalloc.so.1.1" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
[ "$needed" = "libc.so.6 " ] || fail "the library needs more than libc: $needed"
ok "soname libswmalloc.so.1, needs libc only"
expect_function_exports "$prefix/lib/libswmalloc.so.1.1"
ok "malloc, free and the other entry points are exported as functions"
# The installed library is linked as the build's is: preloaded with libraries whose
# memset, memmove and the other calls swmalloc makes allocate, a program runs (review
# R49: relinked without the aliases, its memset recursed into malloc until the stack ran
# out, even for /bin/true).
cc -O1 -fno-builtin -shared -fPIC Tests/programs/allocating_hooks.c -o "$work/hooks.so" -ldl || fail "building allocating_hooks.so"
cc -O1 -g -fno-builtin -pthread -I include Tests/programs/regress.c -o "$work/regress" -ldl || fail "building regress"
out="$(LD_PRELOAD="$prefix/lib/libswmalloc.so.1 $work/hooks.so" "$work/regress" interposed_calls_allocate)" \
  || fail "the installed library under allocating hooks: $out"
[ "$out" = "ok interposed_calls_allocate" ] || fail "the installed library under allocating hooks: $out"
ok "the installed library runs under preloaded hooks that allocate"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
flags="$(pkg-config --cflags --libs swmalloc)" || fail "pkg-config swmalloc"
# shellcheck disable=SC2086
cc -O1 "$work/probe.c" -o "$work/probe" $flags || fail "building with pkg-config flags: $flags"
has "$(readelf -d "$work/probe")" 'NEEDED.*\[libswmalloc.so.1\]' || fail "the program does not need libswmalloc.so.1"
"$work/probe" > "$work/probe.out" || fail "the program built with pkg-config did not run on swmalloc"
ok "pkg-config --cflags --libs swmalloc builds a program that runs on it ($(tail -1 "$work/probe.out"))"
# memcheck checks a program linked with the installed library when told that it is the
# allocator (as for tcmalloc and jemalloc): a write past a block and a leak are found.
if command -v valgrind > /dev/null; then
  printf '#include <stdlib.h>\n#include <string.h>\nint main(void) { char *p = malloc(16); p[16] = 1; memset(malloc(100), 1, 100); free(p); return 0; }\n' \
    > "$work/overflow.c"
  # shellcheck disable=SC2086
  cc -O0 -g "$work/overflow.c" -o "$work/overflow" $flags || fail "building overflow.c"
  out="$(valgrind --leak-check=full --soname-synonyms='somalloc=libswmalloc.so*' "$work/overflow" 2>&1 || true)"
  has "$out" "Invalid write of size 1" && has "$out" "definitely lost: 100 bytes in 1 blocks" \
    || { echo "$out"; fail "valgrind --soname-synonyms=somalloc=libswmalloc.so* does not check the program's heap"; }
  ok "memcheck (--soname-synonyms=somalloc=libswmalloc.so*) finds a write past a block and a leak"
else
  echo "check-install: note: valgrind not found, its check skipped (apt-get install valgrind)"
fi
# A program that calls no allocation function itself (its C library does) stays linked to
# swmalloc under --as-needed, which some compilers pass by default: the linker dropped it.
printf '#include <stdio.h>\nint main(void) { return puts("stdio only") < 0; }\n' > "$work/stdio-only.c"
# shellcheck disable=SC2086
cc -O1 "$work/stdio-only.c" -o "$work/stdio-only" -Wl,--as-needed $flags || fail "building stdio-only.c with --as-needed"
has "$(readelf -d "$work/stdio-only")" 'NEEDED.*\[libswmalloc.so.1\]' \
  || fail "with --as-needed, a program that calls no allocation function lost libswmalloc.so.1"
ok "pkg-config's flags keep libswmalloc.so.1 under --as-needed"
cc -O1 -static -I "$prefix/include" "$work/probe.c" -o "$work/probe-static" \
  -Wl,--whole-archive "$prefix/lib/libswmalloc.a" -Wl,--no-whole-archive -pthread || fail "static link with libswmalloc.a"
if has "$(readelf -d "$work/probe-static" 2>/dev/null || true)" NEEDED; then fail "the static program has dynamic dependencies"; fi
"$work/probe-static" > /dev/null || fail "the static program did not run on swmalloc"
ok "a static C program linked with libswmalloc.a runs on it"
cat > "$work/oom.cpp" <<'CXX'
#include <cstdio>
#include <new>
static int calls;
static void handler() { if (++calls == 3) std::set_new_handler(nullptr); }
int main(int argc, char **) {
    std::set_new_handler(handler);
    try {
        char *volatile p = new char[(std::size_t(1) << 46) * argc];
        std::printf("allocated %p\n", static_cast<void *>(p));
    } catch (const std::bad_alloc &) {
        std::printf("bad_alloc after %d handler calls\n", calls);
    }
}
CXX
c++ -O1 -static "$work/oom.cpp" -o "$work/oom-static" -Wl,-u,_ZSt17__throw_bad_allocv,-u,_ZSt15get_new_handlerv \
  -Wl,--whole-archive "$prefix/lib/libswmalloc.a" -Wl,--no-whole-archive -pthread 2> "$work/oom-static.log" \
  || fail "static C++ link with libswmalloc.a: $(cat "$work/oom-static.log")"
has "$("$work/oom-static")" "bad_alloc after 3 handler calls" || fail "a static C++ program out of memory did not get std::bad_alloc"
ok "a static C++ program linked as the README says gets the new-handler, then std::bad_alloc"
has "$("$prefix/bin/swmalloc" info)" "installed under $prefix" || fail "the installed tool does not find its library"
has "$("$prefix/bin/swmalloc" run --stats -- "$work/probe" 2>&1 >/dev/null)" "swmalloc statistics" || fail "swmalloc run --stats"
ok "the installed swmalloc tool runs (info, run)"
for program in bin/swmalloc libexec/swmalloc/swm-workload; do
  if has "$(readelf -d "$prefix/$program")" 'NEEDED.*libswift'; then fail "$program needs the Swift runtime"; fi
  if has "$(readelf -d "$prefix/$program")" 'RPATH\|RUNPATH'; then fail "$program has a run path"; fi
done
has "$("$prefix/libexec/swmalloc/swm-workload" 2>&1 || true)" "workloads: single-loop" || fail "the installed swm-workload does not run"
ok "the installed tool and workload program need no Swift runtime and have no run path"
bash scripts/install.sh --prefix "$prefix" > /dev/null || fail "install.sh a second time"
bash scripts/install.sh --prefix "$prefix" --uninstall > /dev/null || fail "install.sh --uninstall"
left="$(cd "$prefix" && find . -mindepth 1 ! -path ./share ! -path ./share/man)"
[ -z "$left" ] || fail "--uninstall left: $left"
[ -d "$prefix/share/man" ] || fail "--uninstall removed share/man, which was there before"
ok "install twice, --uninstall: every file and created directory gone, share/man kept"
(cd "$work" && bash "$OLDPWD/scripts/install.sh" --prefix /opt/swm --destdir stage > /dev/null) || fail "install.sh --destdir stage"
[ -f "$work/stage/opt/swm/lib/libswmalloc.so.1" ] || fail "a relative --destdir was not taken from the current directory"
ok "a relative --destdir is taken from the current directory"
for bad in "$work/pfx:colon" "$work/pfx#hash" "$work/pfx space" "$work/pfx,comma"; do
  if bash scripts/install.sh --prefix "$bad" > /dev/null 2>&1; then fail "install.sh took the prefix '$bad'"; fi
  [ ! -e "$bad" ] || fail "install.sh created '$bad' before refusing it"
done
ok "a prefix with ':', '#', ',' or white space is refused (LD_PRELOAD, the rpath and the .pc file break on them)"
bash scripts/install.sh --prefix "$prefix" --libdir lib64 > /dev/null || fail "install.sh --libdir lib64"
[ -f "$prefix/lib64/libswmalloc.so.1" ] && [ ! -e "$prefix/lib" ] || fail "--libdir lib64: the library is not (only) in lib64"
has "$(PKG_CONFIG_PATH="$prefix/lib64/pkgconfig" pkg-config --variable=libdir swmalloc)" "^$prefix/lib64\$" \
  || fail "--libdir lib64: pkg-config's libdir is not $prefix/lib64"
has "$("$prefix/bin/swmalloc" info)" "$prefix/lib64/libswmalloc.so.1 (swmalloc .*installed under $prefix" \
  || fail "--libdir lib64: the installed tool does not find its library"
bash scripts/install.sh --prefix "$prefix" --uninstall > /dev/null || fail "install.sh --uninstall after --libdir"
left="$(cd "$prefix" && find . -mindepth 1 ! -path ./share ! -path ./share/man)"
[ -z "$left" ] || fail "--uninstall after --libdir lib64 left: $left"
ok "install.sh --libdir lib64: library, pkg-config and tool agree; --uninstall removes it"
# A library directory outside the prefix: the tool runs its benchmark with the library
# named by SWMALLOC_LIB, and finds its workload program in PREFIX/libexec (review R49:
# "workload program PREFIX/bin/swm-workload not found").
elsewhere="$work/elsewhere"
bash scripts/install.sh --prefix "$prefix" --libdir "$elsewhere" > /dev/null || fail "install.sh --libdir $elsewhere"
SWMALLOC_LIB="$elsewhere/libswmalloc.so.1" "$prefix/bin/swmalloc" bench --profile tiny -r 1 --workloads single-loop \
  --allocators swmalloc --no-baselines --json "$work/b.json" --svg "$work/b.svg" > "$work/bench.log" 2>&1 \
  || { cat "$work/bench.log"; fail "--libdir outside the prefix: the installed bench does not run"; }
bash scripts/install.sh --prefix "$prefix" --libdir "$elsewhere" --uninstall > /dev/null || fail "install.sh --uninstall after --libdir $elsewhere"
ok "install.sh --libdir outside the prefix: the installed bench finds its workload program"

# ---- 2. the Debian package ----
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
  echo "check-install: note: Debian package install skipped (needs root and apt-get)"
else
  unset PKG_CONFIG_PATH
  # Under a strict umask (an administrator's): the packages still get Debian's modes.
  (umask 077; bash scripts/build-deb.sh --out "$work") > "$work/debs"
  mapfile -t debs < "$work/debs"
  [ "${#debs[@]}" = 3 ] && [ -f "${debs[0]}" ] && [ -f "${debs[1]}" ] && [ -f "${debs[2]}" ] \
    || fail "build-deb.sh did not make its three packages: $(cat "$work/debs")"
  for deb in "${debs[@]}"; do
    modes="$(dpkg-deb -c "$deb" | awk '$1 !~ /^(drwxr-xr-x|-rw-r--r--|-rwxr-xr-x|lrwxrwxrwx)$/')"
    [ -z "$modes" ] || fail "$deb has files without Debian's modes (umask 077): $modes"
  done
  libdeb="$(grep '/libswmalloc1_' "$work/debs")"; devdeb="$(grep '/libswmalloc-dev_' "$work/debs")"
  tooldeb="$(grep '/swmalloc_' "$work/debs")"
  # The runtime package alone: a program preloads it, and it holds only the library.
  apt-get install -y -qq "$libdeb" > "$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get install $libdeb"; }
  multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || cc -print-multiarch)"
  has "$(LD_PRELOAD="/usr/lib/$multiarch/libswmalloc.so.1" SWMALLOC_OPTIONS=stats_print=1 "$work/plain" 2>&1 >/dev/null)" \
    "swmalloc statistics" || fail "preloading the packaged /usr/lib/$multiarch/libswmalloc.so.1"
  expect_function_exports "/usr/lib/$multiarch/libswmalloc.so.1"   # stripped
  has "$(dpkg-deb -f "$libdeb" Multi-Arch)" "same" || fail "libswmalloc1 is not Multi-Arch: same"
  [ ! -e /usr/include/swmalloc.h ] && [ ! -e /usr/bin/swmalloc ] || fail "libswmalloc1 holds more than the library"
  has "$(dpkg-query --control-show libswmalloc1 shlibs 2>/dev/null)" "^libswmalloc 1 libswmalloc1" || fail "libswmalloc1 has no shlibs"
  # dpkg --verify exits 0 even when it lists changed files: its output must be empty.
  verify="$(dpkg --verify libswmalloc1 2>&1)"
  [ -z "$verify" ] || fail "dpkg --verify libswmalloc1: $verify"
  apt-get install -y -qq "$devdeb" "$tooldeb" > "$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get install $devdeb $tooldeb"; }
  has "$(swmalloc info)" "installed under /usr" || fail "the packaged swmalloc tool"
  # Version 1.0.0's library path, and the soname alone (the loader's search), preload it.
  for name in /usr/lib/libswmalloc.so.1 libswmalloc.so.1; do
    has "$(LD_PRELOAD="$name" SWMALLOC_OPTIONS=stats_print=1 "$work/plain" 2>&1 >/dev/null)" \
      "swmalloc statistics" || fail "preloading the packaged library as $name"
  done
  cc -O1 "$work/probe.c" -o "$work/probe-deb" $(pkg-config --cflags --libs swmalloc) && "$work/probe-deb" > /dev/null \
    || fail "building against the packaged library"
  for package in libswmalloc1 libswmalloc-dev swmalloc; do
    [ -f "/usr/share/doc/$package/copyright" ] || fail "$package has no copyright file"
  done
  has "$(dpkg-deb -f "$tooldeb" Depends)" "libstdc++6" || fail "Depends lacks the tool's libstdc++6: $(dpkg-deb -f "$tooldeb" Depends)"
  has "$(dpkg-deb -f "$devdeb" Depends)" "libswmalloc1 (=" || fail "libswmalloc-dev does not depend on libswmalloc1"
  has "$(dpkg-deb -f "$tooldeb" Replaces)" "libswmalloc1 (<< 1.1.0-1)" \
    || fail "swmalloc does not replace 1.0.0-2's libswmalloc1, which owned /usr/lib/libswmalloc.so.1"
  apt-get purge -y -qq libswmalloc1 > /dev/null 2>&1 || fail "apt-get purge libswmalloc1"
  for f in "/usr/lib/$multiarch/libswmalloc.so.1" "/usr/lib/$multiarch/libswmalloc.so" /usr/lib/libswmalloc.so.1 \
      /usr/include/swmalloc.h /usr/bin/swmalloc; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || fail "apt-get purge libswmalloc1 left $f"
  done
  ok "the Debian packages (libswmalloc1, libswmalloc-dev, swmalloc) install, preload, build against, verify and purge"
fi
echo "check-install: $passed passed, 0 failed"
