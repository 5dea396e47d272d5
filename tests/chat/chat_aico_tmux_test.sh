#!/usr/bin/env bash
# End-to-end test of `aico-chat --profile aico`: drives the real terminal
# program under tmux against aico-backend-peer (the test peer of the real
# AICO backend's wire; loopback, temporary directory, slow fake model so the
# stream can be watched).
#
#   chat_aico_tmux_test.sh PEER_BIN CHAT_BIN
#
# log in with UUID + PIN through the login screen ("user id:", "PIN:") -> send -> the reply
# appears chunk by chunk ([streaming...] with a part of it), then whole and
# [delivered]; the thinking is hidden -> /thinking shows it -> /quit, exit 0.
# Every wait is bounded; the tmux server and the peer are always stopped.
set -uo pipefail

PEER=${1:?aico-backend-peer binary}
CHAT=${2:?aico-chat binary}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/aico-chat-aico-test.XXXXXX")
SOCK="aico-chat-aico-test-$$-$RANDOM"
SESSION=chat
PEER_PID=""
START=$(date +%s)
UUID=a11ce000-0000-4000-8000-000000000001
PIN=1234

cleanup() {
  tmux -L "$SOCK" kill-server 2>/dev/null
  if [ -n "$PEER_PID" ]; then
    kill "$PEER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$PEER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PEER_PID" 2>/dev/null
    wait "$PEER_PID" 2>/dev/null
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
  echo "---- peer.log ----" >&2
  tail -20 "$DIR/peer.log" >&2 2>/dev/null
  exit 1
}

screen() { tmux -L "$SOCK" capture-pane -p -t "$SESSION" 2>/dev/null; }
keys() { tmux -L "$SOCK" send-keys -t "$SESSION" "$@"; }
type_line() { keys -l "$1"; keys Enter; }
status_bar() { screen | head -1; }

poll() {
  local secs=$1 what=$2 pattern=$3
  local deadline=$(( $(date +%s%N) / 1000000 + secs * 1000 ))
  while [ $(( $(date +%s%N) / 1000000 )) -lt $deadline ]; do
    if "$what" | grep -Eq -- "$pattern"; then return 0; fi
    sleep 0.05
  done
  fail "'$pattern' not seen in $what within ${secs} s"
}
wait_for() { poll "$1" screen "$2"; }
wait_status() { poll "$1" status_bar "$2"; }

# -- the peer: one chunk every 250 ms, 3 thinking chunks ----------------------
"$PEER" --data-dir "$DIR/peer" --listen 127.0.0.1:0 --ws-listen 127.0.0.1:0 \
  --user "$UUID:$PIN:Alice Test" --model-delay-ms 250 --thinking-chunks 3 \
  >"$DIR/peer.out" 2>"$DIR/peer.log" &
PEER_PID=$!
for _ in $(seq 150); do
  grep -q '^ready' "$DIR/peer.out" 2>/dev/null && break
  kill -0 "$PEER_PID" 2>/dev/null || break
  sleep 0.1
done
READY=$(grep '^ready' "$DIR/peer.out") || fail "peer did not start"
URL=$(sed -E 's/.*http=(http:[^ ]*).*/\1/' <<<"$READY")
echo "peer: $READY"

# -- aico-chat --profile aico in a detached tmux session (120x40) -------------
export LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=screen
tmux -L "$SOCK" -f /dev/null new-session -d -s "$SESSION" -x 120 -y 40 \
  "'$CHAT' --profile aico --url '$URL' --transports http --state-dir '$DIR/client'; echo \"exit=\$?\" > '$DIR/exit'; sleep 30" \
  || fail "tmux did not start"
tmux -L "$SOCK" set-option -t "$SESSION" remain-on-exit on >/dev/null 2>&1

wait_for 10 'user id:'
type_line "$UUID"
wait_for 5 'PIN:'
type_line "$PIN"
wait_for 15 'conversation'
wait_status 15 '(connected|degraded) . HTTP'
echo "logged in; status bar: $(status_bar)"

# the reply streams: a part of it with [streaming...] first, then all of it
type_line "one two three four five six"
wait_for 15 'companion: You said: one[^[]*\[streaming\.\.\.\]'
PARTIAL=$(screen | grep -E 'companion: You said:.*\[streaming' | head -1)
echo "while streaming: $PARTIAL"
grep -q 'six' <<<"$PARTIAL" && fail "the reply appeared whole, not chunk by chunk"
wait_for 15 'companion: You said: one two three four five six \[delivered\]'
wait_for 5 "$UUID: one two three four five six \[delivered\]"
echo "reply complete and delivered"
# the model's thinking is not shown by default
screen | grep -q 'thought-1' && fail "thinking shown while hidden"

# /thinking shows it (a message of its own), /thinking hides it again
type_line "/thinking"
wait_for 5 'companion \(thinking\): thought-1 thought-2 thought-3'
type_line "/thinking"
wait_for 5 '\* thinking: hidden'
screen | grep -q 'companion (thinking)' && fail "thinking still shown"

# a second message continues the conversation
type_line "again"
wait_for 15 'companion: You said: again \[delivered\]'

type_line "/quit"
for _ in $(seq 100); do [ -f "$DIR/exit" ] && break; sleep 0.1; done
[ -f "$DIR/exit" ] || fail "aico-chat did not exit within 10 s of /quit"
grep -q 'exit=0' "$DIR/exit" || fail "aico-chat exited with $(cat "$DIR/exit")"
echo "PASS in $(( $(date +%s) - START )) s"
