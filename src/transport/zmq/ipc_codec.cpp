// aico engine: the IPC wire codec. The only translation unit of the engine
// that includes the generated protobuf header.
#include "src/transport/zmq/ipc_codec.hpp"

#include <climits>
#include <exception>

// protobuf_generate_cpp puts the generated header at the root of the build
// directory ("ipc.pb.h"); accept a "proto/" layout too.
#if __has_include("proto/ipc.pb.h")
#include "proto/ipc.pb.h"
#else
#include "ipc.pb.h"
#endif

namespace aico::ipc_link {

namespace {

std::string serialize(const aico::ipc::Frame& f) {
  std::string out;
  try {
    if (!f.SerializeToString(&out))
      out.clear();
  } catch (...) {
    out.clear();
  }
  return out;
}

} // namespace

const char* to_string(frame_kind k) {
  switch (k) {
    case frame_kind::invalid:
      return "invalid";
    case frame_kind::request:
      return "request";
    case frame_kind::response:
      return "response";
    case frame_kind::event:
      return "event";
    case frame_kind::ping:
      return "ping";
    case frame_kind::pong:
      return "pong";
    case frame_kind::subscribe:
      return "subscribe";
    case frame_kind::unsubscribe:
      return "unsubscribe";
  }
  return "invalid";
}

std::string encode_request(const wire_request& r) {
  aico::ipc::Frame f;
  auto* q = f.mutable_request();
  q->set_id(r.id);
  q->set_method(r.method);
  q->set_path(r.path);
  q->set_token(r.token);
  q->set_body(r.body);
  return serialize(f);
}

std::string encode_ping(uint64_t nonce, int64_t sent_at_ms) {
  aico::ipc::Frame f;
  f.mutable_ping()->set_nonce(nonce);
  f.mutable_ping()->set_sent_at_ms(sent_at_ms);
  return serialize(f);
}

std::string encode_subscribe(const std::string& id, const std::string& token,
                             uint64_t since) {
  aico::ipc::Frame f;
  f.mutable_subscribe()->set_id(id);
  f.mutable_subscribe()->set_token(token);
  if (since > 0)
    f.mutable_subscribe()->set_since(since);
  return serialize(f);
}

std::string encode_unsubscribe(const std::string& id) {
  aico::ipc::Frame f;
  f.mutable_unsubscribe()->set_id(id);
  return serialize(f);
}

std::string encode_response(const wire_response& r) {
  aico::ipc::Frame f;
  auto* p = f.mutable_response();
  p->set_id(r.id);
  p->set_status(r.status);
  p->set_body(r.body);
  for (auto& kv : r.headers)
    (*p->mutable_headers())[kv.first] = kv.second;
  return serialize(f);
}

std::string encode_event(const wire_event& e) {
  aico::ipc::Frame f;
  auto* p = f.mutable_event();
  p->set_topic(e.topic);
  p->set_data(e.data);
  p->set_seq(e.seq);
  return serialize(f);
}

std::string encode_pong(uint64_t nonce, int64_t sent_at_ms) {
  aico::ipc::Frame f;
  f.mutable_pong()->set_nonce(nonce);
  f.mutable_pong()->set_sent_at_ms(sent_at_ms);
  return serialize(f);
}

decoded_frame decode_frame(const void* data, std::size_t size) {
  decoded_frame out;
  if (size == 0) {
    out.error = "empty frame";
    return out;
  }
  if (size > static_cast<std::size_t>(INT_MAX)) {
    out.error = "frame too large";
    return out;
  }
  try {
    aico::ipc::Frame f;
    if (!f.ParseFromArray(data, static_cast<int>(size))) {
      out.error = "not a valid aico.ipc.Frame";
      return out;
    }
    switch (f.kind_case()) {
      case aico::ipc::Frame::kRequest: {
        auto& q = f.request();
        out.kind = frame_kind::request;
        out.request.id = q.id();
        out.request.method = q.method();
        out.request.path = q.path();
        out.request.token = q.token();
        out.request.body = q.body();
        break;
      }
      case aico::ipc::Frame::kResponse: {
        auto* p = f.mutable_response();
        out.kind = frame_kind::response;
        out.response.id = std::move(*p->mutable_id());
        out.response.status = p->status();
        out.response.body = std::move(*p->mutable_body());
        for (auto& kv : p->headers())
          out.response.headers.emplace(kv.first, kv.second);
        break;
      }
      case aico::ipc::Frame::kEvent: {
        auto* e = f.mutable_event();
        out.kind = frame_kind::event;
        out.event.topic = std::move(*e->mutable_topic());
        out.event.data = std::move(*e->mutable_data());
        out.event.seq = e->seq();
        break;
      }
      case aico::ipc::Frame::kPing:
        out.kind = frame_kind::ping;
        out.ping.nonce = f.ping().nonce();
        out.ping.sent_at_ms = f.ping().sent_at_ms();
        break;
      case aico::ipc::Frame::kPong:
        out.kind = frame_kind::pong;
        out.ping.nonce = f.pong().nonce();
        out.ping.sent_at_ms = f.pong().sent_at_ms();
        break;
      case aico::ipc::Frame::kSubscribe:
        out.kind = frame_kind::subscribe;
        out.subscribe.id = f.subscribe().id();
        out.subscribe.token = f.subscribe().token();
        break;
      case aico::ipc::Frame::kUnsubscribe:
        out.kind = frame_kind::unsubscribe;
        out.subscribe.id = f.unsubscribe().id();
        break;
      case aico::ipc::Frame::KIND_NOT_SET:
      default:
        out.error = "frame has no kind";
        break;
    }
  } catch (const std::exception& e) {
    out = decoded_frame{};
    out.error = std::string{"decode failed: "} + e.what();
  } catch (...) {
    out = decoded_frame{};
    out.error = "decode failed";
  }
  return out;
}

} // namespace aico::ipc_link
