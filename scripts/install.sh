#!/usr/bin/env bash
# Installs swmalloc like a system library, or removes it.
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR]      build (release) and install
#   scripts/install.sh [--prefix DIR] [--destdir DIR] --uninstall
#
# What goes where (PREFIX defaults to /usr/local):
#   PREFIX/lib/libswmalloc.so.MAJOR.MINOR   the library, soname libswmalloc.so.MAJOR
#   PREFIX/lib/libswmalloc.so.MAJOR, PREFIX/lib/libswmalloc.so   the usual links
#   PREFIX/lib/libswmalloc.a                for C programs that link statically
#   PREFIX/lib/pkgconfig/swmalloc.pc        pkg-config --cflags --libs swmalloc
#   PREFIX/include/swmalloc.h, vos_mem.h    the headers
#   PREFIX/bin/swmalloc                     the command-line tool (Swift runtime linked in)
#   PREFIX/libexec/swmalloc/swm-workload    the benchmark's workload program
#   PREFIX/share/man/man1/swmalloc.1        the manual page
#   PREFIX/share/swmalloc/installed-files   what --uninstall removes
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
destdir=
uninstall=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --destdir) destdir="${2:?--destdir needs a directory}"; shift 2 ;;
    --destdir=*) destdir="${1#--destdir=}"; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be an absolute path" >&2; exit 2 ;; esac
# pkg-config's flags and LD_PRELOAD are split at white space, LD_PRELOAD, the rpath and
# PKG_CONFIG_PATH at ':', '#' starts a comment in the .pc file, and the compiler splits
# -Wl,-rpath,DIR at ',': such a prefix cannot work.
case "$prefix" in *[[:space:]]*) echo "install.sh: --prefix must not contain white space: '$prefix'" >&2; exit 2 ;; esac
case "$prefix" in *[:#,]*) echo "install.sh: --prefix must not contain ':', '#' or ',': '$prefix'" >&2; exit 2 ;; esac
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
# run where no Swift is installed (the Embedded core cannot be built that way, hence a
# build of its own).
swift build -c release --scratch-path "$scratch-tool" --static-swift-stdlib --product swmalloc-tool
swift build -c release --scratch-path "$scratch-tool" --static-swift-stdlib --product swm-workload
tool="$scratch-tool/release/swmalloc-tool"
workload="$scratch-tool/release/swm-workload"
for program in "$tool" "$workload"; do
  if readelf -d "$program" | grep -q 'NEEDED.*libswift'; then
    echo "install.sh: $program needs the Swift runtime:" >&2
    readelf -d "$program" | grep NEEDED >&2
    exit 1
  fi
done
# The manual page, from the tool's own help (swift-argument-parser's generate-manual).
swift package --scratch-path "$scratch" plugin generate-manual > /dev/null
manual="$scratch/plugins/GenerateManual/outputs/swmalloc-tool/swmalloc.1"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

# The shared library again, from the static archive of the same objects, with a soname:
# SwiftPM's libswmalloc.so has none (a soname would break linking against the build
# folder, which holds no libswmalloc.so.1).
soname="libswmalloc.so.$VERSION_MAJOR"
real="libswmalloc.so.$VERSION_MAJOR.$VERSION_MINOR"
cc -shared -o "$stage/$real" \
  -Wl,--whole-archive "$bin/libswmalloc-static.a" -Wl,--no-whole-archive \
  -Wl,-soname,"$soname" -Wl,--version-script=Sources/swmalloc/swmalloc.map -Wl,-z,nodelete \
  -Wl,--no-undefined
if [ -n "$(ldd "$stage/$real" | grep -v -e 'libc.so' -e 'vdso' -e 'ld-linux' | grep '=>' || true)" ]; then
  echo "install.sh: $real depends on more than libc:" >&2
  ldd "$stage/$real" >&2
  exit 1
fi

# An rpath in the link flags only where the loader does not look by itself.
case "$prefix" in
  /usr|/usr/local) rpath= ;;
  *) rpath="-Wl,-rpath,\${libdir} " ;;
esac
# The prefix as a sed replacement: `&`, `\` and the delimiter `|` taken literally.
prefix_text="$(printf '%s' "$prefix" | sed -e 's/[&|\\]/\\&/g')"
sed -e "s|@PREFIX@|$prefix_text|g" -e "s|@VERSION@|$VERSION|g" -e "s|@RPATH@|$rpath|g" scripts/swmalloc.pc.in > "$stage/swmalloc.pc"
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
# The prefix itself, and those of its parents that do not exist yet; not when staging
# (--destdir): the directories of a package are its package manager's.
missing="$prefix"
while [ -z "$destdir" ] && [ "$missing" != / ] && [ ! -d "$destdir$missing" ]; do
  created+=("$missing")
  missing="$(dirname "$missing")"
done
note_new_dirs() { # note_new_dirs DIR (relative to the prefix): the missing ones, deepest first
  local dir="$1" missing=()
  while [ "$dir" != . ] && [ ! -d "$root/$dir" ]; do
    missing+=("$prefix/$dir")
    dir="$(dirname "$dir")"
  done
  created=("${missing[@]}" "${created[@]}")
}
put() { # put MODE SOURCE DEST (DEST relative to the prefix)
  note_new_dirs "$(dirname "$3")"
  install -D -m "$1" "$2" "$root/$3"
  installed+=("$prefix/$3")
}
link() { # link TARGET NAME (NAME relative to the prefix)
  ln -sfn "$1" "$root/$2"
  installed+=("$prefix/$2")
}
put 0644 "$stage/$real" "lib/$real"
link "$real" "lib/$soname"
link "$soname" "lib/libswmalloc.so"
put 0644 "$bin/libswmalloc-static.a" "lib/libswmalloc.a"
put 0644 "$stage/swmalloc.pc" "lib/pkgconfig/swmalloc.pc"
put 0644 include/swmalloc.h include/swmalloc.h
put 0644 include/vos_mem.h include/vos_mem.h
put 0755 "$tool" bin/swmalloc
put 0755 "$workload" libexec/swmalloc/swm-workload
put 0644 "$manual" share/man/man1/swmalloc.1
put 0644 README.md share/doc/swmalloc/README.md   # the options table, offline
note_new_dirs share/swmalloc
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
