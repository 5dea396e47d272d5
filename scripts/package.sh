#!/usr/bin/env bash
# Builds the Debian packages libaico-client1, libaico-client-dev and
# aico-tools (CPack, cmake/aico_package.cmake) into OUT_DIR.
#
#   scripts/package.sh [BUILD_DIR] [OUT_DIR]
#
# BUILD_DIR (default: build-package) is configured Release with the shared
# library if it is not configured yet, then the installed targets are built
# (the tests and benchmarks are not needed). OUT_DIR defaults to BUILD_DIR.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-package}
out=${2:-$build}
jobs=${JOBS:-2}
if [ ! -f "$build/CMakeCache.txt" ]; then
  # prefix /usr at configure time: GNUInstallDirs then uses Debian's
  # multiarch library directory (lib/<triplet>)
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX=/usr -DAICO_CLIENT_SHARED=ON -DAICO_ENABLE_TESTS=OFF -DAICO_ENABLE_BENCH=OFF
fi
nice cmake --build "$build" -j"$jobs" \
  --target aico_client aico aico-chat aico-stress aico-gateway
mkdir -p "$out"
(cd "$build" && cpack -G DEB -B "$out" > "$out/cpack.log" 2>&1) || {
  tail -n 40 "$out/cpack.log"
  exit 1
}
ls -1 "$out"/*.deb
