#!/usr/bin/env bash
# The main job: builds everything, starts the reference gateway on an
# embedded default (loopback, data in ./.aico-demo, a demo user) and opens
# the terminal chat `aico-chat` logged in as the demo user (/quit to leave).
# When stdout is not a terminal (CI), or with AICO_DEMO_SCRIPTED=1, it runs a
# scripted session through the engine's CLI instead: login, status, send,
# watch the companion bot's streamed reply, history. Stops the gateway at
# the end.
#
# Environment: AICO_DEMO_PORT (default 8771), AICO_DEMO_DIR (default
# ./.aico-demo). To use another gateway, run build/bin/aico-chat or
# build/bin/aico yourself with --url/--ipc (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target aico-gateway aico aico-chat >/dev/null

PORT=${AICO_DEMO_PORT:-8771}
DIR=$(mkdir -p "${AICO_DEMO_DIR:-.aico-demo}" && cd "${AICO_DEMO_DIR:-.aico-demo}" && pwd)
IPC_PATH="$DIR/gateway.ipc"
# Unix socket paths are short; fall back to /tmp for deep checkouts
[ ${#IPC_PATH} -le 100 ] || IPC_PATH="/tmp/aico-demo-$(id -u).ipc"

echo "== starting aico-gateway on 127.0.0.1:$PORT (data in $DIR/gateway)"
coproc GW { exec build/bin/aico-gateway --data-dir "$DIR/gateway" \
  --listen "127.0.0.1:$PORT" --ipc "ipc://$IPC_PATH" --enable-faults \
  --user demo:demo-password --user admin:admin-password:admin 2>"$DIR/gateway.log"; }
GW_PID=$GW_PID
trap 'kill $GW_PID 2>/dev/null; wait $GW_PID 2>/dev/null || true' EXIT
if ! read -r -t 15 READY <&"${GW[0]}"; then
  echo "aico-gateway did not start; see $DIR/gateway.log:" >&2
  tail -5 "$DIR/gateway.log" >&2
  exit 1
fi
echo "   $READY"

export AICO_URL="http://127.0.0.1:$PORT" AICO_IPC="ipc://$IPC_PATH" \
  AICO_STATE_DIR="$DIR/client"
AICO=build/bin/aico

if [ -t 0 ] && [ -t 1 ] && [ -z "${AICO_DEMO_SCRIPTED:-}" ]; then
  echo "== opening aico-chat as demo (type a message and Enter; /status /health /retry /quit)"
  echo "   to watch a failover, from another terminal: bash scripts/demo-fault.sh ipc down   (ws down, reset)"
  sleep 1
  rc=0
  # the password from a file descriptor, not the command line (no warning)
  build/bin/aico-chat --user demo --password-file <(printf 'demo-password\n') || rc=$?
  echo "== aico-chat exited ($rc); gateway data kept in $DIR"
  exit "$rc"
fi

run() { echo; echo "\$ aico $*"; "$AICO" "$@"; }

echo; echo "\$ aico login demo --password-stdin   (the password on stdin, not on the command line)"
printf 'demo-password\n' | "$AICO" login demo --password-stdin
run status
run health
run send "Hello companion! How is the garden doing this morning?"
echo; echo "\$ aico watch --for 3   (meanwhile another 'aico send'; the companion streams its reply)"
"$AICO" watch --for 3 &
WATCH_PID=$!
sleep 1
"$AICO" send "Tell me something about tomatoes and sunshine" >/dev/null
wait $WATCH_PID
run history --limit 6
echo; echo "== demo finished; gateway data kept in $DIR"
