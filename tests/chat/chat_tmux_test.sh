#!/usr/bin/env bash
# End-to-end test of aico-chat: drives the real terminal program under tmux
# against the real gateway (loopback, temporary directory, faults enabled).
#
#   chat_tmux_test.sh GATEWAY_BIN CHAT_BIN
#
# log in through the login screen -> send -> the bot's reply and [delivered]
# -> IPC in the status bar -> POST /admin/faults {"ipc":"down"} -> WS in the
# status bar -> send again, delivered -> resize -> /status, /health -> the
# gateway stops: reconnecting/offline in the status bar, a message typed
# then shows [queued] -> /quit, exit status 0.
# Every wait is bounded; the tmux server and the gateway are always stopped.
set -uo pipefail

GATEWAY=${1:?gateway binary}
CHAT=${2:?aico-chat binary}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/aico-chat-test.XXXXXX")
SOCK="aico-chat-test-$$-$RANDOM"
SESSION=chat
GW_PID=""
START=$(date +%s)

cleanup() {
  tmux -L "$SOCK" kill-server 2>/dev/null
  if [ -n "$GW_PID" ]; then
    kill "$GW_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$GW_PID" 2>/dev/null
    wait "$GW_PID" 2>/dev/null
  fi
  if [ -z "${AICO_KEEP_TEST_DIRS:-}" ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "---- screen ----" >&2
  screen >&2
  echo "---- aico-chat.log ----" >&2
  tail -20 "$DIR/client/aico-chat.log" >&2 2>/dev/null
  echo "---- gateway.log ----" >&2
  tail -20 "$DIR/gateway.log" >&2 2>/dev/null
  exit 1
}

screen() { tmux -L "$SOCK" capture-pane -p -t "$SESSION" 2>/dev/null; }
keys() { tmux -L "$SOCK" send-keys -t "$SESSION" "$@"; }
# types literal text, then Enter
type_line() { keys -l "$1"; keys Enter; }

status_bar() { screen | head -1; }

# poll SECONDS WHAT PATTERN: waits until WHAT's output matches PATTERN
# (extended regex), polling every 100 ms; fails the test after SECONDS
poll() {
  local secs=$1 what=$2 pattern=$3
  local deadline=$(( $(date +%s%N) / 1000000 + secs * 1000 ))
  while [ $(( $(date +%s%N) / 1000000 )) -lt $deadline ]; do
    if "$what" | grep -Eq -- "$pattern"; then return 0; fi
    sleep 0.1
  done
  fail "'$pattern' not seen in $what within ${secs} s"
}
wait_for() { poll "$1" screen "$2"; }
wait_status() { poll "$1" status_bar "$2"; }

# -- the gateway ------------------------------------------------------------
IPC="ipc://$DIR/gw.ipc"
"$GATEWAY" --data-dir "$DIR/gateway" --listen 127.0.0.1:0 --ipc "$IPC" \
  --user alice:alice-pw --user root:root-pw:admin --enable-faults \
  >"$DIR/gateway.out" 2>"$DIR/gateway.log" &
GW_PID=$!
for _ in $(seq 150); do
  grep -q '^ready' "$DIR/gateway.out" 2>/dev/null && break
  kill -0 "$GW_PID" 2>/dev/null || break
  sleep 0.1
done
READY=$(grep '^ready' "$DIR/gateway.out") || fail "gateway did not start"
URL=$(sed -E 's/.*http=(http:[^ ]*).*/\1/' <<<"$READY")
echo "gateway: $READY"

# -- aico-chat in a detached tmux session (120x40) ----------------------------
export LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=screen
tmux -L "$SOCK" -f /dev/null new-session -d -s "$SESSION" -x 120 -y 40 \
  "'$CHAT' --url '$URL' --ipc '$IPC' --state-dir '$DIR/client'; echo \"exit=\$?\" > '$DIR/exit'; sleep 30" \
  || fail "tmux did not start"
tmux -L "$SOCK" set-option -t "$SESSION" remain-on-exit on >/dev/null 2>&1

# the login screen
wait_for 10 'username:'
type_line alice
wait_for 5 'password:'
type_line alice-pw
wait_for 15 'conversation '
wait_status 15 'connected . IPC'
echo "logged in; status bar: $(status_bar)"

# send; the companion bot answers (streamed) and the message is delivered
type_line "hello from tmux"
wait_for 15 'alice: hello from tmux \[delivered\]'
wait_for 15 'companion: .*\[(delivered|sent|read)\]'
echo "message delivered and bot replied"

# IPC off -> the engine fails over to the WebSocket
TOKEN=$(curl -sS -m 5 -X POST "$URL/api/v1/users/authenticate" \
  -H 'Content-Type: application/json' \
  -d '{"username":"root","password":"root-pw"}' \
  | sed -E 's/.*"access_token":"([^"]*)".*/\1/')
[ -n "$TOKEN" ] || fail "admin login failed"
curl -sS -m 5 -X POST "$URL/api/v1/admin/faults" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"ipc":"down"}' >/dev/null || fail "POST /admin/faults failed"
wait_status 20 'connected . WS'
echo "after IPC down: $(status_bar)"

type_line "still here over ws"
wait_for 15 'alice: still here over ws \[delivered\]'

# resize: the status bar and the conversation are redrawn
tmux -L "$SOCK" resize-window -t "$SESSION" -x 80 -y 24 2>/dev/null \
  || tmux -L "$SOCK" resize-pane -t "$SESSION" -x 80 -y 24
sleep 0.5
wait_status 5 'connected . WS'
wait_for 5 '^>'

# /status shows the state in the view
type_line "/status"
wait_for 5 '\* connection: connected . WS'

# /health asks the gateway
type_line "/health"
wait_for 10 '\* health: healthy'

# the gateway stops: the status bar says so, typing and sending keep working
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null; GW_PID=""
wait_status 20 'reconnecting|offline'
type_line "typed while offline"
wait_for 5 'alice: typed while offline \[(queued|sending)\]'
wait_status 5 'queue [1-9]'
echo "offline: $(status_bar)"

# /quit: clean exit, status 0
type_line "/quit"
for _ in $(seq 100); do [ -f "$DIR/exit" ] && break; sleep 0.1; done
[ -f "$DIR/exit" ] || fail "aico-chat did not exit within 10 s of /quit"
grep -q 'exit=0' "$DIR/exit" || fail "aico-chat exited with $(cat "$DIR/exit")"
echo "PASS in $(( $(date +%s) - START )) s"
