#!/usr/bin/env bash
# Chaos soak (docs/performance.md, "Chaos soak"): 100,000 messages through
# aico-stress (full engine sessions) against a self-started gateway on
# loopback (with its gRPC door) under the fault schedule
#   every 5s: ws down 2s; every 7s: grpc down 2s; every 11s: ipc down 3s;
#   5% 503
# with the engines' transports grpc,ipc,ws,http (gRPC first: it carries most
# of the traffic and fails over to IPC, WebSocket and HTTP)
# bounded by 10 minutes; the integrity check against the gateway's store must
# be exact (0 lost, 0 duplicated, per-conversation order kept).
#
# Baseline measured in the same run: the same users and rate for BASELINE_S
# seconds without faults; the soak's throughput and latency are printed as
# ratios against it.
#
# Usage: bench/chaos_soak.sh [BUILD_DIR]   (default: build)
# Environment: MESSAGES (100000), USERS (50), CONVERSATIONS (4), RATE (220),
#   LIMIT_S (600), BASELINE_S (60), FAULTS (the schedule above),
#   TRANSPORTS (grpc,ipc,ws,http; the baseline uses them too), OUT (a
#   directory for the JSON reports; default a temp dir).
# Exit code: 0 when the soak's integrity is exact, 1 otherwise.
set -euo pipefail
BUILD=${1:-build}
STRESS="$BUILD/bin/aico-stress"
[ -x "$STRESS" ] || { echo "chaos_soak: $STRESS not built (cmake --build $BUILD --target aico-stress aico-gateway)" >&2; exit 1; }
command -v jq >/dev/null || { echo "chaos_soak: needs jq (apt-get install jq)" >&2; exit 1; }
MESSAGES=${MESSAGES:-100000}
USERS=${USERS:-50}
CONVERSATIONS=${CONVERSATIONS:-4}
RATE=${RATE:-220}
LIMIT_S=${LIMIT_S:-600}
BASELINE_S=${BASELINE_S:-60}
FAULTS=${FAULTS:-"every 5s: ws down 2s; every 7s: grpc down 2s; every 11s: ipc down 3s; 5% 503"}
TRANSPORTS=${TRANSPORTS:-grpc,ipc,ws,http}
OUT=${OUT:-$(mktemp -d /tmp/aico-soak-XXXXXX)}
mkdir -p "$OUT"
common=(--users "$USERS" --conversations "$CONVERSATIONS" --rate "$RATE"
        --ramp 3 --mix send=100 --drain-timeout 120 --transports "$TRANSPORTS"
        --json)

echo "== baseline: ${BASELINE_S} s without faults ($USERS users, $RATE msg/s, transports $TRANSPORTS)" >&2
"$STRESS" "${common[@]}" --duration "$BASELINE_S" > "$OUT/baseline.json" || true
echo "== soak: $MESSAGES messages, at most ${LIMIT_S} s, faults: $FAULTS" >&2
rc=0
"$STRESS" "${common[@]}" --messages "$MESSAGES" --duration "$LIMIT_S" \
  --faults "$FAULTS" > "$OUT/soak.json" || rc=$?

summary() { # file label
  jq -r --arg l "$2" '"\($l): \(.elapsed_s) s load + \(.drain_s) s drain, "
    + "\(.throughput.messages_per_s) msg/s, send p50 \(.operations.send.latency.p50_ms) ms, "
    + "p99 \(.operations.send.latency.p99_ms) ms, max \(.operations.send.latency.max_ms) ms; "
    + "failovers \(.failovers), fault actions \(.faults.actions); "
    + "sent \(.integrity.sent) stored \(.integrity.stored) lost \(.integrity.lost) "
    + "duplicated \(.integrity.duplicated) out of order \(.integrity.out_of_order) "
    + "(\(.integrity.conversations) conversations, exact: \(.integrity.exact))"' "$1"
}
echo
summary "$OUT/baseline.json" baseline
summary "$OUT/soak.json" soak
jq -r -n --slurpfile b "$OUT/baseline.json" --slurpfile s "$OUT/soak.json" '
  def r(x; y): if y == 0 then "n/a" else ((x / y * 100 | round) / 100 | tostring) + "x" end;
  "soak/baseline: throughput \(r($s[0].throughput.messages_per_s; $b[0].throughput.messages_per_s)), "
  + "send p50 \(r($s[0].operations.send.latency.p50_ms; $b[0].operations.send.latency.p50_ms)), "
  + "p99 \(r($s[0].operations.send.latency.p99_ms; $b[0].operations.send.latency.p99_ms))"'
echo "reports: $OUT/baseline.json $OUT/soak.json"
exit "$rc"
