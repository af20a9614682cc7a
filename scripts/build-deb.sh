#!/usr/bin/env bash
# Builds the Debian packages of swmalloc (in the current directory, or in --out DIR; a
# relative DIR is taken from the current directory) from the files scripts/install.sh
# installs under /usr, split as Debian splits a library:
#   libswmalloc1     the shared library (/usr/lib/MULTIARCH/libswmalloc.so.1.1 and its
#                    soname link, MULTIARCH x86_64-linux-gnu on amd64), with the shlibs
#                    file and the ldconfig trigger
#   libswmalloc-dev  headers, the libswmalloc.so link, the static library, pkg-config
#   swmalloc         the swmalloc tool, the benchmark's workload program, the manual page,
#                    and a link at version 1.0.0's library path, /usr/lib/libswmalloc.so.1
# and prints their paths, one a line. Install them with
#   apt-get install ./libswmalloc1_*.deb ./libswmalloc-dev_*.deb ./swmalloc_*.deb
# and remove them with `apt-get purge libswmalloc1` (the two others depend on it). The
# binaries are stripped (the static library of its debug information), the manual page
# compressed, each package's /usr/share/doc holds the copyright note and the changelog
# (the tool's also the README), the shlibs file lets packages built against the library
# depend on libswmalloc1, and md5sums let `dpkg --verify` tell a changed file. Two builds
# of one commit give the same packages, byte for byte (SOURCE_DATE_EPOCH below).
set -euo pipefail
# The packages' directories and files get Debian's modes whatever the caller's umask
# (under 027, dpkg-deb refused the 0750 control directory: review R81).
umask 022
# Reproducible packages: the manual's date, the changelog's and every file's mtime in the
# archives (dpkg-deb clamps them to it) are the last commit's, unless the caller sets it.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(cd "$(dirname "$0")" && git log -1 --format=%ct 2>/dev/null || date +%s)}"
start="$PWD"
out="$start"
if [ "${1:-}" = "--out" ]; then
  dir="${2:?--out needs a directory}"
  case "$dir" in /*) ;; *) dir="$start/$dir" ;; esac
  out="$(cd "$dir" && pwd)"
fi
cd "$(dirname "$0")/.."
command -v dpkg-deb >/dev/null || { echo "build-deb.sh: dpkg-deb not found (Debian's dpkg)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/stage"
# Debian's multiarch library directory (dpkg-dev's dpkg-architecture, or the compiler's).
multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || cc -print-multiarch)"
[ -n "$multiarch" ] || { echo "build-deb.sh: no multiarch triplet (dpkg-architecture, cc -print-multiarch)" >&2; exit 2; }
libdir="usr/lib/$multiarch"
bash scripts/install.sh --prefix /usr --libdir "lib/$multiarch" --destdir "$stage" >&2   # stdout: the packages only
# dpkg owns the file list: the uninstall manifest is for installs without a package.
rm -f "$stage/usr/share/swmalloc/installed-files"
rmdir "$stage/usr/share/swmalloc" 2>/dev/null || true
version="$(sed -n 's/^Version: //p' "$stage/$libdir/pkgconfig/swmalloc.pc")"
arch="$(dpkg --print-architecture)"
major="${version%%.*}"
lib="libswmalloc$major"
# Version 1.0.0 (no Debian revision) was one package, swmalloc, holding everything; from
# 1.0.0-2 on the library packages replace and break it, and the tool upgrades it. From
# 1.1.0 the library lies in the multiarch directory.
debversion="$version-1"
split="swmalloc (<< 1.0.0-2)"

strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/$libdir/libswmalloc.so.$major".*
strip --remove-section=.comment --remove-section=.note "$stage/usr/bin/swmalloc" "$stage/usr/libexec/swmalloc/swm-workload"
# The static library without its debug information (as Debian's dh_strip leaves one): it
# held the build folder's absolute paths.
strip --strip-debug --remove-section=.comment "$stage/$libdir/libswmalloc.a"
gzip -9n "$stage/usr/share/man/man1/swmalloc.1"

# Each package's root, and the files it takes from the stage (moved, so that none is left
# behind or packaged twice).
take() {   # take PACKAGE PATH... (paths relative to the stage)
  local package="$1"; shift
  for path in "$@"; do
    mkdir -p "$work/$package/$(dirname "$path")"
    mv "$stage/$path" "$work/$package/$path"
  done
}
(cd "$stage" && ls -d "$libdir/libswmalloc.so.$major" "$libdir/libswmalloc.so.$major".*) > "$work/runtime-files"
# shellcheck disable=SC2046
take "$lib" $(cat "$work/runtime-files")
take libswmalloc-dev usr/include "$libdir/libswmalloc.so" "$libdir/libswmalloc.a" "$libdir/pkgconfig"
take swmalloc usr/bin usr/libexec usr/share/man usr/share/doc/swmalloc
# Version 1.0.0 installed the library as /usr/lib/libswmalloc.so.1: a link there keeps
# working the LD_PRELOAD, /etc/ld.so.preload and unit-file lines that name that path
# (review R81: they stopped preloading anything after the upgrade). In the tool's
# package, which upgrades 1.0.0's: the library's is Multi-Arch: same, where a path
# outside the multiarch directory must be the same file for every architecture.
mkdir -p "$work/swmalloc/usr/lib"
ln -s "$multiarch/libswmalloc.so.$major" "$work/swmalloc/usr/lib/libswmalloc.so.$major"
left="$(cd "$stage" && find . -type f -o -type l)"
[ -z "$left" ] || { echo "build-deb.sh: files in no package: $left" >&2; exit 1; }

changelog_date="$(date -R -u -d "@$SOURCE_DATE_EPOCH")"
for package in "$lib" libswmalloc-dev swmalloc; do
  doc="$work/$package/usr/share/doc/$package"
  mkdir -p "$doc"
  cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: swmalloc
Source: the swmalloc sources (their README and docs/)

Files: *
Copyright: the swmalloc developers
License: none-stated
 The swmalloc sources state no license; ask their developers before you
 redistribute this package.
COPYRIGHT
  printf '%s (%s) unstable; urgency=medium\n\n  * Built from the swmalloc sources by scripts/build-deb.sh.\n\n -- swmalloc developers <swmalloc@localhost>  %s\n' \
    "$package" "$debversion" "$changelog_date" | gzip -9n > "$doc/changelog.Debian.gz"
  chmod 0644 "$doc/copyright" "$doc/changelog.Debian.gz"
done

# Depends: the packages that hold the libraries the binaries need, at least the upstream
# version installed here (the binaries were linked against it: /usr/bin/swmalloc needs
# GLIBCXX_3.4.30, which an unversioned libstdc++6 did not promise; the Debian revision
# is left out, or a system with the same upstream version but an older security update,
# 12.2.0-14 against 12.2.0-14+deb12u1, could not install it), and libc6 at least the
# newest GLIBC_ symbol version they use.
depends() {   # depends FILE...
  local needed glibc
  needed="$(for f in "$@"; do
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
  done | sort -u | while read -r so; do
    dpkg -S "$(readlink -f "$so")" 2>/dev/null || dpkg -S "$so" 2>/dev/null || true
  done | cut -d: -f1 | sort -u | grep -v '^libc6$' | while read -r pkg; do
    printf '%s (>= %s), ' "$pkg" "$(dpkg-query -W -f='${Version}\n' "$pkg" 2>/dev/null | head -1 | sed 's/-[^-]*$//')"
  done)"
  glibc="$(for f in "$@"; do objdump -T "$f"; done | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' \
    | sort -t. -k1,1n -k2,2n -k3,3n | tail -1)"
  printf '%slibc6 (>= %s)' "$needed" "${glibc:-2.34}"
}

# control PACKAGE DEPENDS SECTION SUMMARY DESCRIPTION [MORE]: the control file (MORE: extra
# fields) and md5sums.
control() {
  local root="$work/$1"
  mkdir -p "$root/DEBIAN"
  cat > "$root/DEBIAN/control" <<CONTROL
Package: $1
Source: swmalloc
Version: $debversion
Architecture: $arch
Maintainer: swmalloc developers <swmalloc@localhost>
Depends: $2
${6:+$6
}Section: $3
Priority: optional
Installed-Size: $(du -sk "$root/usr" | cut -f1)
Description: $4
$5
CONTROL
  (cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
  chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
}
about=" A drop-in malloc (LD_PRELOAD it, or link -lswmalloc) written in Embedded Swift,
 with per-thread heaps, memory that goes back to the OS after a delay, and the
 VOS memory API (VOS_Malloc/VOS_Free) with per-module and per-site accounting."

control "$lib" "$(depends "$work/$lib/$libdir/libswmalloc.so.$major".*)" libs \
  "fast, scalable malloc for multi-threaded programs (library)" "$about
 .
 This package holds the shared library." "Multi-Arch: same
Replaces: $split
Breaks: $split"
echo "libswmalloc $major $lib (>= $version)" > "$work/$lib/DEBIAN/shlibs"
echo "activate-noawait ldconfig" > "$work/$lib/DEBIAN/triggers"
chmod 0644 "$work/$lib/DEBIAN/shlibs" "$work/$lib/DEBIAN/triggers"
control libswmalloc-dev "$lib (= $debversion)" libdevel \
  "fast, scalable malloc for multi-threaded programs (development files)" "$about
 .
 This package holds the headers (swmalloc.h, vos_mem.h), the static library and
 the pkg-config file." "Replaces: $split
Breaks: $split"
# The link at /usr/lib/libswmalloc.so.1 was libswmalloc1's file in 1.0.0-2: the tool's
# package replaces it there (Debian Policy 7.6.1; without it, dpkg refused to unpack the
# tool before the library was upgraded: review R84).
control swmalloc "$lib (= $debversion), $(depends "$work/swmalloc/usr/bin/swmalloc" "$work/swmalloc/usr/libexec/swmalloc/swm-workload")" \
  utils "run programs on swmalloc, read its statistics, benchmark it" "$about
 .
 This package holds the swmalloc tool (run, stats, info, bench) and its manual." "Replaces: $lib (<< 1.1.0-1)
Breaks: $lib (<< 1.1.0-1)"

for package in "$lib" libswmalloc-dev swmalloc; do
  deb="$out/${package}_${debversion}_${arch}.deb"
  dpkg-deb --build --root-owner-group "$work/$package" "$deb" >/dev/null
  echo "$deb"
done
