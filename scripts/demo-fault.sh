#!/usr/bin/env bash
# Switches a door of the demo gateway (scripts/demo.sh) off or on, as its
# admin user, so the status bar of aico-chat shows the failover live:
#   bash scripts/demo-fault.sh ipc down     # IPC off: aico-chat moves to WS
#   bash scripts/demo-fault.sh ws down      # WS off too: degraded, HTTP
#   bash scripts/demo-fault.sh reset        # everything back: fails back to IPC
# Environment: AICO_DEMO_PORT (default 8771). Loopback only.
set -euo pipefail
PORT=${AICO_DEMO_PORT:-8771}
BASE="http://127.0.0.1:$PORT/api/v1"
case "${1:-}" in
  ipc|ws)
    [ "${2:-}" = down ] || [ "${2:-}" = up ] || { echo "usage: $0 ipc|ws down|up, or $0 reset" >&2; exit 2; }
    BODY="{\"$1\":\"$2\"}" ;;
  reset) BODY='{"reset":true}' ;;
  *) echo "usage: $0 ipc|ws down|up, or $0 reset" >&2; exit 2 ;;
esac
TOKEN=$(curl -sf -X POST "$BASE/users/authenticate" -H 'Content-Type: application/json' \
  -d '{"username":"admin","password":"admin-password"}' | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p') \
  || { echo "demo-fault: the demo gateway on 127.0.0.1:$PORT does not answer (bash scripts/demo.sh)" >&2; exit 1; }
[ -n "$TOKEN" ] || { echo "demo-fault: admin login failed" >&2; exit 1; }
curl -sf -X POST "$BASE/admin/faults" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d "$BODY" >/dev/null \
  || { echo "demo-fault: POST /admin/faults failed" >&2; exit 1; }
echo "demo gateway: $BODY"
