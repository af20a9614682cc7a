#!/usr/bin/env bash
# Installs swmalloc like a system library, or removes it.
#
#   scripts/install.sh [--prefix DIR] [--libdir DIR] [--destdir DIR]   build (release) and install
#   scripts/install.sh [--prefix DIR] [--destdir DIR] --uninstall
#
# What goes where (PREFIX defaults to /usr/local, LIBDIR to PREFIX/lib):
#   LIBDIR/libswmalloc.so.MAJOR.MINOR       the library, soname libswmalloc.so.MAJOR
#   LIBDIR/libswmalloc.so.MAJOR, LIBDIR/libswmalloc.so   the usual links
#   LIBDIR/libswmalloc.a                    for C programs that link statically
#   LIBDIR/pkgconfig/swmalloc.pc            pkg-config --cflags --libs swmalloc
#   PREFIX/include/swmalloc.h, vos_mem.h    the headers
#   PREFIX/bin/swmalloc                     the command-line tool (Swift runtime linked in)
#   PREFIX/libexec/swmalloc/swm-workload    the benchmark's workload program
#   PREFIX/share/man/man1/swmalloc.1        the manual page
#   PREFIX/share/doc/swmalloc/README.md     the README (the options table, offline)
#   PREFIX/share/swmalloc/installed-files   what --uninstall removes
#
# --libdir names the library directory: absolute, or relative to PREFIX (lib64 on Fedora,
# lib/x86_64-linux-gnu for Debian's multiarch layout). The tool finds the library by
# itself in PREFIX/lib, PREFIX/lib64 and PREFIX/lib/MULTIARCH; elsewhere give it
# --library or SWMALLOC_LIB. The link flags carry an rpath unless the loader searches
# LIBDIR by itself (ldconfig's directories).
#
# --destdir stages the files under DIR (for packaging: scripts/build-deb.sh) while they
# are built for PREFIX; a relative DIR is taken from the current directory. Installing
# again first removes what the last install put there (an older version's library
# included); --uninstall removes every file it installed and the directories it created.
# The build uses its own folders (.build-install and .build-install-tool), so it does
# not disturb the development build in .build.
set -euo pipefail
start="$PWD"
cd "$(dirname "$0")/.."

# The version is the tool's (Sources/swmalloc-tool/Main.swift), one place for all.
VERSION="$(sed -n 's/^let swmallocVersion = "\(.*\)"$/\1/p' Sources/swmalloc-tool/Main.swift)"
VERSION_MAJOR="${VERSION%%.*}"
rest="${VERSION#*.}"
VERSION_MINOR="${rest%%.*}"
prefix=/usr/local
libdir=
destdir=
uninstall=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --libdir) libdir="${2:?--libdir needs a directory}"; shift 2 ;;
    --libdir=*) libdir="${1#--libdir=}"; shift ;;
    --destdir) destdir="${2:?--destdir needs a directory}"; shift 2 ;;
    --destdir=*) destdir="${1#--destdir=}"; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be an absolute path" >&2; exit 2 ;; esac
case "$libdir" in "") libdir="$prefix/lib" ;; /*) ;; *) libdir="$prefix/$libdir" ;; esac
libdir="${libdir%/}"
# pkg-config's flags and LD_PRELOAD are split at white space, LD_PRELOAD, the rpath and
# PKG_CONFIG_PATH at ':', '#' starts a comment in the .pc file, and the compiler splits
# -Wl,-rpath,DIR at ',': such a prefix or library directory cannot work.
for dir in "--prefix:$prefix" "--libdir:$libdir"; do
  name="${dir%%:*}" value="${dir#*:}"
  case "$value" in *[[:space:]]*) echo "install.sh: $name must not contain white space: '$value'" >&2; exit 2 ;; esac
  case "$value" in *[:#,]*) echo "install.sh: $name must not contain ':', '#' or ',': '$value'" >&2; exit 2 ;; esac
  case "/$value/" in */../*|*/./*) echo "install.sh: $name must not contain '.' or '..' parts: '$value'" >&2; exit 2 ;; esac
done
case "$destdir" in ""|/*) ;; *) destdir="$start/$destdir" ;; esac
root="$destdir$prefix"
manifest="$root/share/swmalloc/installed-files"

# The manifest lists the installed files (paths under the prefix), then the directories
# the install created, each as "dir PATH", deepest first.
remove_files() { # the files of the manifest (not its directories)
  while IFS= read -r entry; do
    case "$entry" in "dir "*) ;; *) rm -f "$destdir$entry" ;; esac
  done < "$manifest"
}
refresh_loader_cache() { # a real install by root: the loader's cache follows it
  if [ -z "$destdir" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig || true; fi
}

if [ "$uninstall" = 1 ]; then
  if [ ! -f "$manifest" ]; then
    echo "install.sh: nothing installed under $root (no $manifest)" >&2
    exit 1
  fi
  dirs="$(sed -n 's/^dir //p' "$manifest")"
  remove_files
  while IFS= read -r dir; do
    [ -n "$dir" ] && { rmdir "$destdir$dir" 2>/dev/null || true; }
  done <<< "$dirs"
  refresh_loader_cache
  echo "swmalloc removed from $root"
  exit 0
fi

scratch=.build-install
echo "building swmalloc $VERSION (release, $scratch)"
swift build -c release --scratch-path "$scratch"
bin="$scratch/release"
# The tool and the workload program again with the Swift runtime linked in, so that they
# run where no Swift is installed, in a scratch folder of their own (the library and the
# static archive above stay those of the plain release build), and without SwiftPM's
# RUNPATH of $ORIGIN: installed programs look for libraries where the system's do.
swift build -c release --scratch-path "$scratch-tool" --static-swift-stdlib --disable-local-rpath --product swmalloc-tool
swift build -c release --scratch-path "$scratch-tool" --static-swift-stdlib --disable-local-rpath --product swm-workload
tool="$scratch-tool/release/swmalloc-tool"
workload="$scratch-tool/release/swm-workload"
for program in "$tool" "$workload"; do
  if readelf -d "$program" | grep -q 'NEEDED.*libswift'; then
    echo "install.sh: $program needs the Swift runtime:" >&2
    readelf -d "$program" | grep NEEDED >&2
    exit 1
  fi
done
# The manual page, from the tool's own help (swift-argument-parser's generate-manual),
# dated by SOURCE_DATE_EPOCH or the last commit, not the build: one commit, one page.
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
swift package --scratch-path "$scratch" plugin generate-manual --date "$(date -u -d "@$epoch" +%Y-%m-%d)" > /dev/null
manual="$scratch/plugins/GenerateManual/outputs/swmalloc-tool/swmalloc.1"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

# The shared library again, from the static archive of the same objects, with a soname:
# SwiftPM's libswmalloc.so has none (a soname would break linking against the build
# folder, which holds no libswmalloc.so.1). Linked as Package.swift links it: by lld
# (the Swift toolchain's), with the same version script and aliases (the hot exports
# bound to their entry points, memset/memmove/memcpy to the shim's own). Linked by the
# default linker without the aliases, the installed library called the C library's
# memset, and a preloaded memset that allocates crashed every program (review R49).
command -v ld.lld >/dev/null || { echo "install.sh: ld.lld (the Swift toolchain's lld) not found on PATH" >&2; exit 1; }
soname="libswmalloc.so.$VERSION_MAJOR"
real="libswmalloc.so.$VERSION_MAJOR.$VERSION_MINOR"
cc -shared -fuse-ld=lld -o "$stage/$real" \
  -Wl,--whole-archive "$bin/libswmalloc-static.a" -Wl,--no-whole-archive \
  -Wl,-soname,"$soname" -Wl,--version-script=Sources/swmalloc/swmalloc.map -Wl,-z,nodelete \
  Sources/swmalloc/swmalloc-aliases.ld -Wl,--no-undefined
# The aliases get their functions' sizes: lld leaves them 0, and valgrind does not replace
# a function of size 0, so memcheck with --soname-synonyms saw no heap (scripts/alias-sizes.c).
cc -O1 scripts/alias-sizes.c -o "$stage/alias-sizes"
"$stage/alias-sizes" "$stage/$real" > /dev/null
rm -f "$stage/alias-sizes"
if readelf -rW "$stage/$real" | grep -qE 'JUMP_SLOT.* (memset|memmove|memcpy)@'; then
  echo "install.sh: $real calls the C library's memset, memmove or memcpy" >&2
  exit 1
fi
if [ -n "$(ldd "$stage/$real" | grep -v -e 'libc.so' -e 'vdso' -e 'ld-linux' | grep '=>' || true)" ]; then
  echo "install.sh: $real depends on more than libc:" >&2
  ldd "$stage/$real" >&2
  exit 1
fi

# An rpath in the link flags only where the loader does not look by itself: the
# directories ldconfig reads (its configuration and the trusted ones; those configured
# but not there yet it names in a "Can't stat" line), compared after resolving links
# (/lib is /usr/lib on a merged system); without ldconfig, the usual ones.
searched_dirs() {
  if command -v ldconfig >/dev/null; then
    ldconfig -N -X -v 2>&1 | sed -n -e 's/^\(\/[^:]*\):.*/\1/p' -e "s/^ldconfig: Can't stat \(\/[^:]*\):.*/\1/p"
  else
    printf '%s\n' /lib /usr/lib /lib64 /usr/lib64 /usr/local/lib
  fi
}
real_dir() { readlink -m "$1"; }
rpath="-Wl,-rpath,\${libdir} "
while IFS= read -r dir; do
  if [ -n "$dir" ] && [ "$(real_dir "$dir")" = "$(real_dir "$libdir")" ]; then rpath=; fi
done <<< "$(searched_dirs)"
# The .pc file's libdir: under the prefix, as ${prefix}/...; elsewhere as it is.
case "$libdir" in "$prefix"/*) pc_libdir="\${prefix}${libdir#"$prefix"}" ;; *) pc_libdir="$libdir" ;; esac
# The values as sed replacements: `&`, `\` and the delimiter `|` taken literally.
sed_text() { printf '%s' "$1" | sed -e 's/[&|\\]/\\&/g'; }
sed -e "s|@PREFIX@|$(sed_text "$prefix")|g" -e "s|@LIBDIR@|$(sed_text "$pc_libdir")|g" -e "s|@VERSION@|$VERSION|g" \
  -e "s|@RPATH@|$rpath|g" scripts/swmalloc.pc.in > "$stage/swmalloc.pc"
grep -qxF "prefix=$prefix" "$stage/swmalloc.pc" || { echo "install.sh: could not write the prefix into swmalloc.pc" >&2; exit 1; }

# A new install replaces the last one: its files go first (an older version's library
# would stay behind otherwise), the directories it created stay on the list.
created=()
if [ -f "$manifest" ]; then
  while IFS= read -r entry; do
    case "$entry" in "dir "*) created+=("${entry#dir }") ;; esac
  done < "$manifest"
  # A manifest of an installer before directories were listed (0e2c9c5 and earlier):
  # the directories only swmalloc puts files in were surely created by it.
  if ! grep -q '^dir ' "$manifest"; then
    for own in libexec/swmalloc share/swmalloc; do [ -d "$root/$own" ] && created+=("$prefix/$own"); done
  fi
  remove_files
fi
installed=()
# The directories an install creates, the prefix and its parents included; when staging
# (--destdir) only those inside the prefix: the others are the package manager's.
note_new_dirs() { # note_new_dirs DIR (absolute): the missing ones, deepest first
  local dir="$1" missing=()
  while [ "$dir" != / ] && [ ! -d "$destdir$dir" ]; do
    if [ -n "$destdir" ]; then case "$dir" in "$prefix"/*) ;; *) break ;; esac; fi
    missing+=("$dir")
    dir="$(dirname "$dir")"
  done
  created=("${missing[@]}" "${created[@]}")
}
put() { # put MODE SOURCE DEST (DEST absolute)
  note_new_dirs "$(dirname "$3")"
  install -D -m "$1" "$2" "$destdir$3"
  installed+=("$3")
}
link() { # link TARGET NAME (NAME absolute)
  ln -sfn "$1" "$destdir$2"
  installed+=("$2")
}
put 0644 "$stage/$real" "$libdir/$real"
link "$real" "$libdir/$soname"
link "$soname" "$libdir/libswmalloc.so"
put 0644 "$bin/libswmalloc-static.a" "$libdir/libswmalloc.a"
put 0644 "$stage/swmalloc.pc" "$libdir/pkgconfig/swmalloc.pc"
put 0644 include/swmalloc.h "$prefix/include/swmalloc.h"
put 0644 include/vos_mem.h "$prefix/include/vos_mem.h"
put 0755 "$tool" "$prefix/bin/swmalloc"
put 0755 "$workload" "$prefix/libexec/swmalloc/swm-workload"
put 0644 "$manual" "$prefix/share/man/man1/swmalloc.1"
put 0644 README.md "$prefix/share/doc/swmalloc/README.md"   # the options table, offline
note_new_dirs "$prefix/share/swmalloc"
mkdir -p "$(dirname "$manifest")"
{
  printf '%s\n' "${installed[@]}" "$prefix/share/swmalloc/installed-files"
  # Deepest first, once each.
  printf '%s\n' "${created[@]}" | awk 'NF && !seen[$0]++' | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- \
    | sed 's/^/dir /'
} > "$manifest"

# Refresh the loader's cache (a prefix the loader does not search needs an rpath or
# LD_LIBRARY_PATH, as for any library).
refresh_loader_cache
echo "swmalloc $VERSION installed under $root:"
printf '  %s\n' "${installed[@]}"
multiarch="$(cc -print-multiarch 2>/dev/null || true)"
case "$libdir" in
  "$prefix/lib"|"$prefix/lib64"|"$prefix/lib/${multiarch:-?}") ;;
  *) echo "note: the installed swmalloc tool looks for the library in $prefix/lib, lib64 and lib/${multiarch:-MULTIARCH};" \
       "give it --library $libdir/libswmalloc.so.$VERSION_MAJOR or SWMALLOC_LIB" ;;
esac
