#!/usr/bin/env bash
# Builds the Debian package swmalloc_VERSION_ARCH.deb (in the current directory, or in
# --out DIR; a relative DIR is taken from the current directory) from the files
# scripts/install.sh installs under /usr. Install it with
#   apt-get install ./swmalloc_*.deb
# and remove it with `apt-get purge swmalloc`. The binaries are stripped, the manual page
# compressed, /usr/share/doc/swmalloc holds the README, the copyright note and the
# changelog, the shlibs file lets packages built against it depend on it, and ldconfig
# runs through dpkg's trigger.
set -euo pipefail
start="$PWD"
out="$start"
if [ "${1:-}" = "--out" ]; then
  dir="${2:?--out needs a directory}"
  case "$dir" in /*) ;; *) dir="$start/$dir" ;; esac
  out="$(cd "$dir" && pwd)"
fi
cd "$(dirname "$0")/.."
command -v dpkg-deb >/dev/null || { echo "build-deb.sh: dpkg-deb not found (Debian's dpkg)" >&2; exit 2; }
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
bash scripts/install.sh --prefix /usr --destdir "$stage"
# dpkg owns the file list: the uninstall manifest is for installs without a package.
rm -f "$stage/usr/share/swmalloc/installed-files"
rmdir "$stage/usr/share/swmalloc" 2>/dev/null || true
version="$(sed -n 's/^Version: //p' "$stage/usr/lib/pkgconfig/swmalloc.pc")"
arch="$(dpkg --print-architecture)"
major="${version%%.*}"

strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/lib/libswmalloc.so.$major".*
strip --remove-section=.comment --remove-section=.note "$stage/usr/bin/swmalloc" "$stage/usr/libexec/swmalloc/swm-workload"
gzip -9n "$stage/usr/share/man/man1/swmalloc.1"
doc="$stage/usr/share/doc/swmalloc"
install -D -m 0644 README.md "$doc/README.md"
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
printf 'swmalloc (%s) unstable; urgency=medium\n\n  * Built from the swmalloc sources by scripts/build-deb.sh.\n\n -- swmalloc developers <swmalloc@localhost>  %s\n' \
  "$version" "$(date -R -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")" | gzip -9n > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

# Depends: the packages that hold the libraries the binaries need, at least the upstream
# version installed here (the binaries were linked against it: /usr/bin/swmalloc needs
# GLIBCXX_3.4.30, which an unversioned libstdc++6 did not promise; the Debian revision
# is left out, or a system with the same upstream version but an older security update,
# 12.2.0-14 against 12.2.0-14+deb12u1, could not install it), and libc6 at least the
# newest GLIBC_ symbol version they use.
binaries=("$stage/usr/bin/swmalloc" "$stage/usr/libexec/swmalloc/swm-workload" "$stage/usr/lib/libswmalloc.so.$major".*)
depends="$(for f in "${binaries[@]}"; do
  ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
  dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
done | cut -d: -f1 | sort -u | grep -v '^libc6$' | while read -r pkg; do
  printf '%s (>= %s), ' "$pkg" "$(dpkg-query -W -f='${Version}\n' "$pkg" 2>/dev/null | head -1 | sed 's/-[^-]*$//')"
done)"
glibc="$(for f in "${binaries[@]}"; do objdump -T "$f"; done | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' \
  | sort -t. -k1,1n -k2,2n -k3,3n | tail -1)"

mkdir -p "$stage/DEBIAN"
# md5sums, so that `dpkg --verify swmalloc` can tell a changed file.
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: swmalloc
Version: $version
Architecture: $arch
Maintainer: swmalloc developers <swmalloc@localhost>
Depends: ${depends}libc6 (>= ${glibc:-2.34})
Section: libs
Priority: optional
Installed-Size: $(du -sk "$stage/usr" | cut -f1)
Description: fast, scalable malloc for multi-threaded programs
 A drop-in malloc (LD_PRELOAD it, or link -lswmalloc) written in Embedded Swift,
 with per-thread heaps, memory that goes back to the OS after a delay, and the
 VOS memory API (VOS_Malloc/VOS_Free) with per-module and per-site accounting.
 Includes the headers, pkg-config file, static library and the swmalloc tool.
CONTROL
echo "libswmalloc $major swmalloc (>= $version)" > "$stage/DEBIAN/shlibs"
echo "activate-noawait ldconfig" > "$stage/DEBIAN/triggers"
chmod 0644 "$stage/DEBIAN/shlibs" "$stage/DEBIAN/triggers"
deb="$out/swmalloc_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group "$stage" "$deb" >/dev/null
echo "$deb"
