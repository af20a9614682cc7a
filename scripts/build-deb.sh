#!/usr/bin/env bash
# Builds the Debian package swmalloc_VERSION_ARCH.deb (in the current directory, or in
# --out DIR) from the files scripts/install.sh installs under /usr. Install it with
#   apt-get install ./swmalloc_*.deb
# and remove it with `apt-get remove swmalloc`.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$PWD"
if [ "${1:-}" = "--out" ]; then out="$(cd "${2:?--out needs a directory}" && pwd)"; fi
command -v dpkg-deb >/dev/null || { echo "build-deb.sh: dpkg-deb not found (Debian's dpkg)" >&2; exit 2; }
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
bash scripts/install.sh --prefix /usr --destdir "$stage"
# dpkg owns the file list: the uninstall manifest is for installs without a package.
rm -f "$stage/usr/share/swmalloc/installed-files"
rmdir "$stage/usr/share/swmalloc" 2>/dev/null || true
version="$(sed -n 's/^Version: //p' "$stage/usr/lib/pkgconfig/swmalloc.pc")"
arch="$(dpkg --print-architecture)"
mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: swmalloc
Version: $version
Architecture: $arch
Maintainer: swmalloc developers <swmalloc@localhost>
Depends: libc6 (>= 2.34)
Section: libs
Priority: optional
Installed-Size: $(du -sk "$stage/usr" | cut -f1)
Description: fast, scalable malloc for multi-threaded programs
 A drop-in malloc (LD_PRELOAD it, or link -lswmalloc) written in Embedded Swift,
 with per-thread heaps, memory that goes back to the OS after a delay, and the
 VOS memory API (VOS_Malloc/VOS_Free) with per-module and per-site accounting.
 Includes the headers, pkg-config file, static library and the swmalloc tool.
CONTROL
printf '#!/bin/sh\nset -e\nldconfig\n' > "$stage/DEBIAN/postinst"
printf '#!/bin/sh\nset -e\nldconfig\n' > "$stage/DEBIAN/postrm"
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"
deb="$out/swmalloc_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group "$stage" "$deb" >/dev/null
echo "$deb"
