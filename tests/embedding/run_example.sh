#!/usr/bin/env bash
# Embedding test (ctest embedding_examples):
#   run_example.sh BUILD_DIR SOURCE_DIR GATEWAY_BIN
# 1. cmake --install BUILD_DIR into a temp prefix
# 2. pkg-config --cflags --libs aico_client against that prefix
# 3. configure + build examples/host_app and examples/facade_app with
#    -DCMAKE_PREFIX_PATH=<prefix> (in parallel)
# 4. start aico-gateway on 127.0.0.1 (free port, temp data dir, one user)
# 5. run both apps (bounded by timeout) and check their output
# Everything lives in one temp dir that is removed at the end.
set -u
build=$1 src=$2 gateway=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aico-embed-XXXXXX")
gw_pid=
cleanup() {
  if [ -n "$gw_pid" ]; then
    kill "$gw_pid" 2>/dev/null
    wait "$gw_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/*.log "$tmp"/*.out; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }
  done
  exit 1
}
step() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
t0=$(date +%s)

prefix=$tmp/prefix
step "install into $prefix"
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log" 2>&1 \
  || fail "cmake --install"
[ -f "$prefix/lib/cmake/aico_client/aico_clientConfig.cmake" ] \
  || fail "no aico_clientConfig.cmake installed"
[ -f "$prefix/include/aico/client.hpp" ] || fail "no aico/client.hpp installed"
[ -x "$prefix/bin/aico-gateway" ] || fail "no aico-gateway installed"

step "pkg-config"
PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs aico_client \
  > "$tmp/pkgconfig.out" 2>&1 || fail "pkg-config aico_client"
grep -q -- "-I$prefix/include/aico" "$tmp/pkgconfig.out" \
  || grep -q -- "-I$prefix/lib/pkgconfig/../../include/aico" "$tmp/pkgconfig.out" \
  || fail "pkg-config cflags do not point into the prefix"
grep -q -- "-laico_core" "$tmp/pkgconfig.out" || fail "pkg-config libs"

step "build the examples against the installed package"
build_example() { # name
  cmake -S "$src/examples/$1" -B "$tmp/build-$1" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
    > "$tmp/$1-build.log" 2>&1 \
    && nice cmake --build "$tmp/build-$1" >> "$tmp/$1-build.log" 2>&1
}
build_example host_app & p1=$!
build_example facade_app & p2=$!
wait $p1 || fail "building host_app"
wait $p2 || fail "building facade_app"

step "start the gateway"
mkdir -p "$tmp/gw"
"$gateway" --data-dir "$tmp/gw" --listen 127.0.0.1:0 \
  --ipc "ipc://$tmp/gw.ipc" --user alice:secret \
  > "$tmp/gateway.out" 2> "$tmp/gateway.log" &
gw_pid=$!
for _ in $(seq 100); do
  grep -q '^ready ' "$tmp/gateway.out" && break
  kill -0 "$gw_pid" 2>/dev/null || fail "gateway exited"
  sleep 0.1
done
url=$(sed -n 's/^ready http=\([^ ]*\).*/\1/p' "$tmp/gateway.out")
ipc=$(sed -n 's/.* ipc=\([^ ]*\).*/\1/p' "$tmp/gateway.out")
[ -n "$url" ] || fail "gateway not ready"
case "$url" in http://127.0.0.1:*) ;; *) fail "not loopback: $url" ;; esac

check() { # file pattern...
  local f=$1
  shift
  for p in "$@"; do
    grep -q -- "$p" "$f" || fail "$(basename "$f"): missing '$p'"
  done
}

step "run host_app ($url, $ipc)"
timeout -k 5 60 "$tmp/build-host_app/host_app" --url "$url" --ipc "$ipc" \
  --state-dir "$tmp/state-host" --user alice --password secret \
  > "$tmp/host_app.out" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "host_app exited with $rc"
check "$tmp/host_app.out" "logged in as alice" "sent message " "bot reply: " \
  "host_app: done (0)"

step "run facade_app (config file + command line)"
cat > "$tmp/facade.json" <<JSON
{
  "url": "$url",
  "transports": ["ipc", "ws", "http"],
  "request_timeout_ms": 5000,
  "shutdown_timeout_ms": 2000,
  "queue": {"limit": 100}
}
JSON
timeout -k 5 60 "$tmp/build-facade_app/facade_app" --config "$tmp/facade.json" \
  --ipc "$ipc" --state-dir "$tmp/state-facade" --user alice \
  --password secret > "$tmp/facade_app.out" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "facade_app exited with $rc"
check "$tmp/facade_app.out" "logged in as alice" "me: alice" "sent message " \
  "bot reply: " "state: connected" "facade_app: done"

step "bad config is reported, not a crash"
echo '{"queue": {"limt": 1}}' > "$tmp/bad.json"
timeout -k 5 20 "$tmp/build-facade_app/facade_app" --config "$tmp/bad.json" \
  --user alice --password secret > "$tmp/bad.out" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "bad config: exit $rc, expected 2"
check "$tmp/bad.out" "queue.limt"

step "ok"
cat "$tmp/host_app.out" "$tmp/facade_app.out"
exit 0
