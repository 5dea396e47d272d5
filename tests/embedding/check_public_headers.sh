#!/usr/bin/env bash
# Public header check (ctest public_headers):
#   check_public_headers.sh INCLUDE_DIR [CXX]
# Compiles every INCLUDE_DIR/aico/*.hpp alone (-fsyntax-only, C++17, only
# INCLUDE_DIR added to the include path) and lists what it includes (-H):
# - no header may include Boost, SQLite, curl, libwebsockets, ZeroMQ,
#   protobuf, OpenSSL or anything of the source tree (messages/, src/);
# - only aico/actors.hpp may include CAF.
# Used on the source tree and, by the consumer test, on the unpacked
# libaico-client-dev package.
set -u
inc=$1
cxx=${2:-c++}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aico-hdr-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
forbidden='/boost/|sqlite3\.h|/curl/|libwebsockets|lws_config|/zmq\.h|zmq_utils|/google/protobuf/|/openssl/|/messages/|/src/'
status=0
n=0
for h in "$inc"/aico/*.hpp; do
  name=aico/$(basename "$h")
  n=$((n + 1))
  echo "#include <$name>" > "$tmp/t.cpp"
  if ! "$cxx" -std=c++17 -fsyntax-only -H -Wall -Wextra -Werror -I"$inc" \
      "$tmp/t.cpp" 2> "$tmp/deps.txt"; then
    echo "FAIL: $name does not compile alone:"
    grep -v '^\.' "$tmp/deps.txt" | head -n 20
    status=1
    continue
  fi
  # -H lines: dots (depth), a space, the path
  sed -n 's/^\.\+ //p' "$tmp/deps.txt" > "$tmp/files.txt"
  before=$status
  if grep -E "$forbidden" "$tmp/files.txt" > "$tmp/bad.txt"; then
    echo "FAIL: $name includes private dependencies:"
    head -n 10 "$tmp/bad.txt"
    status=1
  fi
  if [ "$name" != aico/actors.hpp ] && grep -q '/caf/' "$tmp/files.txt"; then
    echo "FAIL: $name includes CAF (only aico/actors.hpp may)"
    status=1
  fi
  [ $status -eq $before ] && echo "$name: $(wc -l < "$tmp/files.txt") headers, ok"
done
[ "$n" -gt 0 ] || { echo "FAIL: no headers in $inc/aico"; exit 1; }
exit $status
