#!/usr/bin/env bash
# Consumer test (ctest consumer_packages): the Debian packages as a host
# application on Debian's default Boost would use them.
#   consumer_test.sh BUILD_DIR SOURCE_DIR GATEWAY_BIN
# 1. cpack the packages from BUILD_DIR (libaico-client1, libaico-client-dev,
#    aico-tools) and check their Depends
# 2. dpkg -x the runtime and -dev packages into a temporary root
# 3. check the unpacked headers (check_public_headers.sh) and library
#    (check_exports.sh)
# 4. build examples/facade_app and examples/host_app against the root, each
#    with find_package(aico_client) and with pkg-config (no Boost, or other
#    private dependency, on any include path or link line)
# 5. start aico-gateway on 127.0.0.1 (free port, temp data dir, one user)
#    and run the four binaries against it, bounded by timeout
# Everything lives in one temp dir that is removed at the end.
set -u
build=$1 src=$2 gateway=$3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aico-consumer-XXXXXX")
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

step "cpack"
(cd "$build" && cpack -G DEB -B "$tmp/debs" > "$tmp/cpack.log" 2>&1) \
  || fail "cpack"
deb() { ls "$tmp"/debs/"$1"_*.deb 2>/dev/null | head -n 1; }
rt=$(deb libaico-client1) dev=$(deb libaico-client-dev) tools=$(deb aico-tools)
[ -n "$rt" ] && [ -n "$dev" ] && [ -n "$tools" ] \
  || fail "packages missing: $(ls "$tmp/debs")"

step "package metadata"
rt_dep=$(dpkg-deb -f "$rt" Depends)
echo "libaico-client1 Depends: $rt_dep"
for p in libcaf-core0.17 libboost-json1.81.0 libprotobuf libsqlite3-0 \
         libcurl4 libwebsockets libzmq5 libssl3; do
  case "$rt_dep" in *"$p"*) ;; *) fail "libaico-client1 does not depend on $p" ;; esac
done
case "$rt_dep" in *-dev*) fail "runtime depends on a -dev package" ;; esac
dev_dep=$(dpkg-deb -f "$dev" Depends)
echo "libaico-client-dev Depends: $dev_dep"
case "$dev_dep" in "libaico-client1 (= "*) ;; *) fail "dev Depends: $dev_dep" ;; esac
case "$dev_dep" in *boost*|*protobuf*|*sqlite*|*curl*|*zmq*|*websockets*)
  fail "the -dev package depends on a private dependency: $dev_dep" ;; esac
dpkg-deb -c "$tools" > "$tmp/tools.txt"
for b in aico aico-chat aico-stress aico-gateway; do
  grep -q "/bin/$b\$" "$tmp/tools.txt" || fail "aico-tools lacks $b"
done
dpkg-deb -c "$dev" > "$tmp/dev.txt"
if grep -E '\.hpp$' "$tmp/dev.txt" | grep -v '/include/aico/[a-z_]*\.hpp$'; then
  fail "the -dev package installs headers outside include/aico"
fi

step "dpkg -x into $tmp/root"
dpkg -x "$rt" "$tmp/root" && dpkg -x "$dev" "$tmp/root" || fail "dpkg -x"
usr=$tmp/root/usr
lib=$(find "$usr" -name 'libaico_client.so.1' | head -n 1)
[ -n "$lib" ] || fail "no libaico_client.so.1 in the packages"
libdir=$(dirname "$lib")
[ -L "$libdir/libaico_client.so" ] || fail "no libaico_client.so dev link"
[ -f "$libdir/pkgconfig/aico_client.pc" ] || fail "no aico_client.pc"

step "headers and exports of the packaged files"
bash "$here/check_public_headers.sh" "$usr/include" > "$tmp/headers.out" 2>&1 \
  || fail "public headers"
bash "$here/check_exports.sh" "$lib" > "$tmp/exports.out" 2>&1 \
  || fail "exports"

export PKG_CONFIG_PATH=$libdir/pkgconfig
pc=$(pkg-config --cflags --libs aico_client) || fail "pkg-config aico_client"
echo "pkg-config: $pc"
case "$pc" in *boost*|*protobuf*|*sqlite*|*zmq*|*websockets*|*curl*)
  fail "pkg-config names a private dependency: $pc" ;; esac

step "build the examples (find_package and pkg-config)"
with_cmake() { # name
  cmake -S "$src/examples/$1" -B "$tmp/build-$1" \
    -DCMAKE_PREFIX_PATH="$usr" -DCMAKE_BUILD_TYPE=Release \
    > "$tmp/$1-cmake.log" 2>&1 \
    && nice cmake --build "$tmp/build-$1" >> "$tmp/$1-cmake.log" 2>&1
}
with_pkg_config() { # name extra-libs...
  local name=$1
  shift
  mkdir -p "$tmp/pc-$name"
  nice c++ -std=c++17 -O1 -o "$tmp/pc-$name/$name" \
    "$src/examples/$name/main.cpp" $pc "$@" > "$tmp/$name-pc.log" 2>&1
}
with_cmake facade_app & p1=$!
with_pkg_config facade_app & p2=$!
wait $p1 || fail "facade_app with find_package"
wait $p2 || fail "facade_app with pkg-config"
with_cmake host_app & p1=$!
with_pkg_config host_app -lcaf_core & p2=$!
wait $p1 || fail "host_app with find_package"
wait $p2 || fail "host_app with pkg-config"
# the include paths CMake used: the package's and CAF's, nothing private
cat "$tmp"/build-*/CMakeFiles/*.dir/flags.make > "$tmp/flags.txt"
grep -i -E 'boost|protobuf|sqlite|zmq|websockets|curl' "$tmp/flags.txt" \
  && fail "a private dependency's include path was used"
grep -q -- "$usr/include" "$tmp/flags.txt" \
  || fail "the examples were not built against the unpacked headers"
for b in "$tmp/build-facade_app/facade_app" "$tmp/pc-facade_app/facade_app"; do
  readelf -d "$b" | grep NEEDED > "$tmp/needed.txt"
  grep -q libaico_client.so.1 "$tmp/needed.txt" || fail "$b: not linked to libaico_client.so.1"
  grep -E 'boost|protobuf|sqlite|zmq|websockets|curl|caf' "$tmp/needed.txt" \
    && fail "$b links a private dependency directly"
done
export LD_LIBRARY_PATH=$libdir
ldd "$tmp/pc-facade_app/facade_app" | grep -q "$libdir/libaico_client.so.1" \
  || fail "facade_app does not load the packaged library"

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

printf 'secret\n' > "$tmp/alice.pw"
chmod 600 "$tmp/alice.pw"

run_host_app() { # binary tag
  step "run host_app ($2)"
  timeout -k 5 60 "$1" --url "$url" --ipc "$ipc" \
    --state-dir "$tmp/state-host-$2" --user alice --password-file "$tmp/alice.pw" \
    > "$tmp/host_app-$2.out" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || fail "host_app ($2) exited with $rc"
  check "$tmp/host_app-$2.out" "logged in as alice" "sent message " \
    "bot reply: " "host_app: done (0)"
}
run_host_app "$tmp/build-host_app/host_app" cmake
run_host_app "$tmp/pc-host_app/host_app" pkg-config

cat > "$tmp/facade.json" <<JSON
{
  "url": "$url",
  "transports": ["ipc", "ws", "http"],
  "request_timeout_ms": 5000,
  "shutdown_timeout_ms": 2000,
  "queue": {"limit": 100}
}
JSON
run_facade_app() { # binary tag
  step "run facade_app ($2: config file + command line)"
  timeout -k 5 60 "$1" --config "$tmp/facade.json" --ipc "$ipc" \
    --state-dir "$tmp/state-facade-$2" --user alice --password-file "$tmp/alice.pw" \
    > "$tmp/facade_app-$2.out" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || fail "facade_app ($2) exited with $rc"
  check "$tmp/facade_app-$2.out" "aico client library " "logged in as alice" \
    "me: alice" "sent message " "bot reply: " "state: connected" \
    "facade_app: done"
}
run_facade_app "$tmp/build-facade_app/facade_app" cmake
run_facade_app "$tmp/pc-facade_app/facade_app" pkg-config

step "bad config is reported, not a crash"
echo '{"queue": {"limt": 1}}' > "$tmp/bad.json"
timeout -k 5 20 "$tmp/pc-facade_app/facade_app" --config "$tmp/bad.json" \
  --user alice --password secret > "$tmp/bad.out" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "bad config: exit $rc, expected 2"
check "$tmp/bad.out" "queue.limt" "password on the command line"

step "ok"
cat "$tmp/headers.out" "$tmp/exports.out"
exit 0
