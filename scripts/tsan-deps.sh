#!/usr/bin/env bash
# Builds CAF 0.17.6 (Debian 12's libcaf-dev version) with ThreadSanitizer
# into DIR (default build-tsan/deps/caf), for scripts/test.sh --sanitize thread.
#
#   scripts/tsan-deps.sh [DIR]
#
# Why: Debian's libcaf_core/libcaf_io are not instrumented, so TSan cannot see
# the synchronisation inside CAF's mailboxes and schedulers and reports every
# message handed from one CAF thread to another as a race (docs/security.md
# "Sanitizers"). Built from the same upstream source Debian packages, with
# -fsanitize=thread, the engine is compiled against these headers and runs
# against these libraries (FindCAF's CAF_ROOT_DIR; the build RPATH points here).
#
# The source comes from Debian's source package (apt-get source; the script
# adds a deb-src entry for bookworm if there is none) and is checked against
# the SHA-256 in the .dsc. AICO_CAF_TARBALL=FILE uses a tarball you already
# have (same check if the .dsc is next to it). Debian's own patches are
# applied when the debian.tar.xz could be fetched; otherwise the one code
# change among them (an #include <limits>, found by diffing the installed
# headers against upstream) is made here.
# Takes ~10 min of CPU (6 min on 2 cores); nothing happens if DIR already holds a
# build of the same version with the same flags.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dest=${1:-build-tsan/deps/caf}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
version=0.17.6
flags="-O1 -g1 -fsanitize=thread -fno-omit-frame-pointer"
stamp="$dest/.aico-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version $flags" ] \
   && [ -f "$dest/lib/libcaf_core.so" ]; then
  echo "tsan-deps: CAF $version with TSan already in $dest"
  exit 0
fi
work="$dest.src"
rm -rf "$work"
mkdir -p "$work"
cd "$work"
tarball=${AICO_CAF_TARBALL:-}
if [ -z "$tarball" ]; then
  if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "tsan-deps: adding a deb-src entry for bookworm (/etc/apt/sources.list.d/aico-src.sources)"
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > /etc/apt/sources.list.d/aico-src.sources
    apt-get update -qq
  fi
  # the debian.tar.xz may be missing on a snapshot mirror: keep what came
  apt-get source --download-only actor-framework >/dev/null 2>&1 || true
  tarball=$work/actor-framework_$version.orig.tar.gz
fi
if [ ! -f "$tarball" ]; then
  echo "tsan-deps: could not fetch the CAF $version source (apt-get source actor-framework)." >&2
  echo "tsan-deps: give a tarball with AICO_CAF_TARBALL=FILE." >&2
  exit 1
fi
dsc=$(ls "$(dirname "$tarball")"/actor-framework_*.dsc 2>/dev/null | head -1 || true)
if [ -n "$dsc" ]; then
  want=$(awk '/^Checksums-Sha256:/{s=1;next} s&&/orig.tar.gz/{print $1;exit}' "$dsc")
  have=$(sha256sum "$tarball" | cut -d' ' -f1)
  if [ "$want" != "$have" ]; then
    echo "tsan-deps: $tarball does not match the SHA-256 in $dsc" >&2
    exit 1
  fi
fi
tar xzf "$tarball" -C "$work"
src=$work/actor-framework-$version
deb=$(ls "$work"/actor-framework_*.debian.tar.xz 2>/dev/null | head -1 || true)
if [ -n "$deb" ]; then
  tar xJf "$deb" -C "$src"
  if [ -f "$src/debian/patches/series" ]; then
    while read -r p; do
      [ -n "$p" ] && [ "${p#\#}" = "$p" ] && patch -d "$src" -p1 -s < "$src/debian/patches/$p"
    done < "$src/debian/patches/series"
  fi
fi
# The one change of Debian's patches that touches code (GCC 11+ no longer
# pulls <limits> in through <algorithm>); the installed /usr/include/caf
# differs from upstream 0.17.6 in exactly this line
rb=$src/libcaf_io/caf/io/network/receive_buffer.hpp
grep -q '#include <limits>' "$rb" || sed -i 's|^#include <cstddef>|#include <cstddef>\n#include <limits>|' "$rb"
grep -q '#include <limits>' "$rb"
launcher=()
if command -v ccache >/dev/null 2>&1 && [ -n "${AICO_CCACHE:-}" ]; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread \
  -DCMAKE_INSTALL_PREFIX="$dest" -DCAF_NO_EXAMPLES=yes -DCAF_NO_UNIT_TESTS=yes \
  -DCAF_NO_OPENSSL=yes -DCAF_NO_TOOLS=yes -DCAF_NO_PYTHON=yes -DCAF_NO_OPENCL=yes \
  -DCAF_NO_SUMMARY=yes -DCAF_NO_COMPILER_CHECK=yes "${launcher[@]}" >/dev/null
cmake --build "$work/build" -j"$(nproc)"
cmake --install "$work/build" >/dev/null
echo "$version $flags" > "$stamp"
rm -rf "$work"
echo "tsan-deps: CAF $version with TSan installed in $dest"
