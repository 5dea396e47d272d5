#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/<harness>/ (run from anywhere;
the seeds are checked in, this script documents where they come from)."""
import base64, hashlib, hmac, json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

def out(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

msg = {"id": "m-1714564800-1", "conversation_id": "default-u_alice",
       "content": "hello there", "type": "text", "sender_id": "u_alice",
       "sender": "alice", "timestamp": "2024-05-01T12:00:00.123Z",
       "timestamp_ms": 1714564800123, "seq": 42, "status": "sent",
       "read_at": None, "metadata": {"k": [1, 2.5, "x"]}, "reply_to": None}
user = {"id": "u_alice", "username": "alice", "display_name": "Alice",
        "role": "admin", "preferences": {"theme": "dark", "volume": 7,
        "ratio": 0.5, "notify": True}, "created_at": "2024-04-30T08:15:00.000Z"}
history = {"messages": [msg, msg], "has_more": True, "next_before": "m-1",
           "next_since": 42}
family = {"members": [{"id": "u_bob", "username": "bob", "display_name": "Bob",
                       "role": "user", "relationship": "child"}]}
health = {"is_healthy": True, "version": "0.1.0", "uptime_s": 12}
status = {"is_healthy": False, "version": "0.1.0", "faults": {"ipc": "down"}}
chunk = {"conversation_id": "default-u_alice", "message_id": "m-2",
         "chunk": "hel", "index": 0, "done": False}
ticket = {"update_id": "upd_0a1b2c3d", "status": "queued"}
upd = {"update_id": "upd_0a1b2c3d", "stage": "download", "progress": 0.5,
       "message": "x"}
models = {"message": msg, "user": user, "history": history, "family": family,
          "health": health, "status": status, "chunk": chunk,
          "ticket": ticket, "update_event": upd,
          "prefs": {"a": 1, "b": "x", "c": None, "d": 1.5e300, "e": False}}
for k, v in models.items():
    out("fuzz_model_codec", k + "_ok", b"\x01" + json.dumps(v).encode())
    out("fuzz_model_codec", k + "_env", b"\x01" + json.dumps(
        {"success": True, "data": v, "message": "ok"}).encode())
out("fuzz_model_codec", "error_env", b"\x02" + json.dumps(
    {"success": False, "message": "no", "code": "not_found", "details": {}}).encode())
out("fuzz_model_codec", "big_number", b'\x01{"success":true,"data":{"big":1e400}}')
out("fuzz_model_codec", "html", b"\x07<html>bad gateway</html>")

frames = [
    {"type": "response", "id": "a", "status": 200,
     "body": {"success": True, "data": user}, "headers": {"Retry-After": "1"}},
    {"type": "response", "id": "b", "status": 503, "body": None},
    {"type": "event", "topic": "message", "data": msg, "seq": 42},
    {"type": "event", "topic": "message.stream", "data": chunk, "seq": 43},
    {"type": "pong", "id": "p1"},
    {"type": "auth_ok", "id": "x", "user": "u_alice",
     "replay": {"complete": True, "replayed": 3}},
    {"type": "error", "status": 401, "code": "invalid_token",
     "message": "expired", "id": "x"},
]
for i, f in enumerate(frames):
    out("fuzz_ws_codec", "frame_%d" % i, json.dumps(f))
out("fuzz_ws_codec", "seq_neg_inf", '{"type":"event","topic":"t","data":1,"seq":-1e3096}')
out("fuzz_ws_codec", "status_big", '{"type":"response","id":"a","status":4294967496}')
out("fuzz_ws_codec", "url", "ws://127.0.0.1:8771/api/v1/ws?x=1")
out("fuzz_ws_codec", "url6", "wss://[::1]:443/ws")
out("fuzz_ws_codec", "body", '{"content":"hi","type":"text","metadata":{}}')

# protobuf by hand: field key = (num << 3) | wire type
def varint(n):
    b = bytearray()
    while True:
        x = n & 0x7F
        n >>= 7
        if n:
            b.append(x | 0x80)
        else:
            b.append(x)
            return bytes(b)
def ld(num, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload
def vi(num, n):
    return varint(num << 3) + varint(n & 0xFFFFFFFFFFFFFFFF)
req = ld(1, "r1") + ld(2, "GET") + ld(3, "/users/me") + ld(4, "tok") + ld(5, "")
out("fuzz_ipc_codec", "request", ld(1, req))
resp = ld(1, "r1") + vi(2, 200) + ld(3, json.dumps({"success": True, "data": user})) \
    + ld(4, ld(1, "Retry-After") + ld(2, "3"))
out("fuzz_ipc_codec", "response", ld(2, resp))
out("fuzz_ipc_codec", "response_neg", ld(2, ld(1, "r2") + vi(2, -1)))
ev = ld(1, "message") + ld(2, json.dumps(msg)) + vi(3, 42)
out("fuzz_ipc_codec", "event", ld(3, ev))
out("fuzz_ipc_codec", "ping", ld(4, vi(1, 7) + vi(2, 1714564800123)))
out("fuzz_ipc_codec", "pong", ld(5, vi(1, 7) + vi(2, 1714564800123)))
out("fuzz_ipc_codec", "subscribe", ld(6, ld(1, "s1") + ld(2, "tok") + vi(3, 5)))
out("fuzz_ipc_codec", "unsubscribe", ld(7, ld(1, "s1")))
out("fuzz_ipc_codec", "empty", b"")

sse = [
    "id: 1\nevent: message\ndata: {\"a\":1}\n\n",
    ": keep-alive\n\nretry: 1500\n\n",
    "\xef\xbb\xbfdata: a\r\ndata: b\r\n\r\n",
    "id: 5\rdata: x\r\rdata:y\n\n",
    "data: " + "x" * 300 + "\n\n",
    "data: 1\ndata: 2\n" * 50 + "\n",
]
for i, t in enumerate(sse):
    out("fuzz_sse_parser", "s%d" % i, bytes([i * 3]) + t.encode("latin-1"))

claims = [{"sub": "u_alice", "name": "alice", "role": "user", "iat": 1700000000,
           "exp": 1700000900, "jti": "j1"},
          {"sub": 17, "exp": 9.2e18}, {"exp": 1e400}, {"exp": "soon"}, {}]
for i, c in enumerate(claims):
    out("fuzz_jwt_claims", "c%d" % i, json.dumps(c))
out("fuzz_jwt_claims", "token", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln")

hdr = '{"alg":"HS256","typ":"JWT"}'
for i, c in enumerate(claims):
    out("fuzz_gateway_jwt", "c%d" % i, hdr + "\n" + json.dumps(c))
out("fuzz_gateway_jwt", "none", '{"alg":"none"}\n{"sub":"u"}')
out("fuzz_gateway_jwt", "crit", '{"alg":"HS256","crit":["x"]}\n{}')

reqs = [
    ("POST", "/api/v1/users/authenticate", 0, {"username": "alice", "password": "alice-pw"}),
    ("POST", "/api/v1/users/authenticate", 0, {"username": "alice", "password": "wrong"}),
    ("POST", "/api/v1/users/refresh", 0, {"refresh_token": "nope"}),
    ("POST", "/api/v1/users/logout", 1, {}),
    ("GET", "/api/v1/users/me", 1, None),
    ("PUT", "/api/v1/users/me/preferences", 1, {"theme": "dark", "n": 1, "x": None}),
    ("GET", "/api/v1/users/me/family", 1, None),
    ("POST", "/api/v1/conversations/messages", 1,
     {"id": "c-1", "content": "hi", "type": "text", "metadata": {"a": [1]}}),
    ("GET", "/api/v1/conversations/default-u_alice/messages?limit=5&before=m-1", 1, None),
    ("GET", "/api/v1/conversations/default-u_alice/messages?since=3", 1, None),
    ("POST", "/api/v1/conversations/messages/m-1/read", 1, {}),
    ("GET", "/api/v1/health", 0, None),
    ("GET", "/api/v1/health/detailed", 2, None),
    ("GET", "/api/v1/system/status", 2, None),
    ("POST", "/api/v1/system/update", 2, {"version": "0.2.0"}),
    ("GET", "/api/v1/admin/users", 2, None),
    ("GET", "/api/v1/users/me", 3, None),
    ("GET", "/api/v1/users/me", 4, None),
]
for i, (m, t, tok, body) in enumerate(reqs):
    b = "" if body is None else json.dumps(body)
    out("fuzz_gateway_api", "r%02d" % i, (m + " " + t + "\n").encode()
        + bytes([tok]) + b.encode())
out("fuzz_gateway_api", "big_pref", b"PUT /api/v1/users/me/preferences\n\x01{\"big\":1e400}")
