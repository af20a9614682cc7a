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
# are built for PREFIX. The build uses its own folders (.build-install and
# .build-install-tool), so it does not disturb the development build in .build.
set -euo pipefail
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
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be an absolute path" >&2; exit 2 ;; esac
root="$destdir$prefix"
manifest="$root/share/swmalloc/installed-files"

if [ "$uninstall" = 1 ]; then
  if [ ! -f "$manifest" ]; then
    echo "install.sh: nothing installed under $root (no $manifest)" >&2
    exit 1
  fi
  while IFS= read -r file; do
    rm -f "$destdir$file"
  done < "$manifest"
  rm -f "$manifest"
  for dir in share/swmalloc libexec/swmalloc lib/pkgconfig share/man/man1 share/man; do
    rmdir "$root/$dir" 2>/dev/null || true
  done
  echo "swmalloc removed from $root"
  exit 0
fi

scratch=.build-install
echo "building swmalloc $VERSION (release, $scratch)"
swift build -c release --scratch-path "$scratch"
bin="$scratch/release"
# The tool again with the Swift runtime linked in, so that it runs where no Swift is
# installed (the Embedded core cannot be built that way, hence a build of its own).
swift build -c release --scratch-path "$scratch-tool" --static-swift-stdlib --product swmalloc-tool
tool="$scratch-tool/release/swmalloc-tool"
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
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$VERSION|g" -e "s|@RPATH@|$rpath|g" scripts/swmalloc.pc.in > "$stage/swmalloc.pc"

installed=()
put() { # put MODE SOURCE DEST (DEST relative to the prefix)
  install -D -m "$1" "$2" "$root/$3"
  installed+=("$prefix/$3")
}
link() { # link TARGET NAME (NAME relative to the prefix)
  ln -sfn "$1" "$root/$2"
  installed+=("$prefix/$2")
}
put 0755 "$stage/$real" "lib/$real"
link "$real" "lib/$soname"
link "$soname" "lib/libswmalloc.so"
put 0644 "$bin/libswmalloc-static.a" "lib/libswmalloc.a"
put 0644 "$stage/swmalloc.pc" "lib/pkgconfig/swmalloc.pc"
put 0644 include/swmalloc.h include/swmalloc.h
put 0644 include/vos_mem.h include/vos_mem.h
put 0755 "$tool" bin/swmalloc
put 0755 "$bin/swm-workload" libexec/swmalloc/swm-workload
put 0644 "$manual" share/man/man1/swmalloc.1
mkdir -p "$(dirname "$manifest")"
printf '%s\n' "${installed[@]}" "$prefix/share/swmalloc/installed-files" > "$manifest"

# Refresh the loader's cache (a prefix the loader does not search needs an rpath or
# LD_LIBRARY_PATH, as for any library).
if [ -z "$destdir" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then
  ldconfig || true
fi
echo "swmalloc $VERSION installed under $root:"
printf '  %s\n' "${installed[@]}"
