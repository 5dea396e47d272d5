// Test support for the gateway's gRPC door: a small client over the
// generated stub (proto/gateway.proto) that returns answers in the shape of
// http_response, so the EXPECT_OK / EXPECT_ERROR macros apply.
#pragma once

#include <chrono>
#include <fstream>
#include <sstream>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "gateway.grpc.pb.h"

#include "support/clients.hpp"

namespace aico::test {

/// The answer of one Call: the envelope (status, body, headers) when gRPC
/// said OK; otherwise `code` and `error` say what gRPC reported.
struct grpc_response {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  int status = 0; ///< 0 when the call failed at the gRPC level
  std::string error;
  std::map<std::string, std::string> headers;
  std::string raw;
  json::value body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

/// Credentials for a TLS channel: the CA to trust and an optional client
/// certificate (PEM file paths).
struct grpc_tls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class grpc_client {
public:
  /// A plaintext channel to `target` (HOST:PORT), or TLS with `tls`.
  explicit grpc_client(const std::string& target,
                       std::optional<grpc_tls> tls = std::nullopt) {
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (tls) {
      grpc::SslCredentialsOptions o;
      o.pem_root_certs = slurp(tls->ca_file);
      if (!tls->cert_file.empty()) {
        o.pem_cert_chain = slurp(tls->cert_file);
        o.pem_private_key = slurp(tls->key_file);
      }
      creds = grpc::SslCredentials(o);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    grpc::ChannelArguments args;
    // a fresh connection per client (no sharing of subchannels between
    // the clients of one test)
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 100);
    args.SetMaxReceiveMessageSize(8 * 1024 * 1024);
    args.SetMaxSendMessageSize(8 * 1024 * 1024);
    channel_ = grpc::CreateCustomChannel(target, creds, args);
    stub_ = aico::rpc::Gateway::NewStub(channel_);
  }

  grpc_response call(const std::string& method, const std::string& path,
                     const std::string& body = "",
                     const std::string& token = "",
                     std::chrono::milliseconds timeout
                     = std::chrono::milliseconds(5000),
                     const std::string& authorization = "") {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    if (!authorization.empty())
      ctx.AddMetadata("authorization", authorization);
    else if (!token.empty())
      ctx.AddMetadata("authorization", "Bearer " + token);
    aico::rpc::CallRequest req;
    req.set_method(method);
    req.set_path(path);
    req.set_body(body);
    aico::rpc::CallReply rep;
    auto st = stub_->Call(&ctx, req, &rep);
    grpc_response out;
    out.code = st.error_code();
    if (!st.ok()) {
      out.error = st.error_message();
      return out;
    }
    out.status = rep.status();
    out.raw = rep.body();
    out.body = parse_json(out.raw);
    for (auto& [k, v] : rep.headers())
      out.headers[k] = v;
    return out;
  }

  grpc_response call_json(const std::string& method, const std::string& path,
                          const json::value& body,
                          const std::string& token = "") {
    return call(method, path, to_text(body), token);
  }

  /// A login over gRPC; the access token ("" on failure).
  std::string login(const std::string& user, const std::string& password) {
    auto r = call_json("POST", "/users/authenticate",
                  json::object{{"username", user}, {"password", password}});
    return jstr(r.body, "/data/access_token");
  }

  /// An open Events stream.
  struct stream {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<aico::rpc::EventsMessage>> reader;

    bool read(aico::rpc::EventsMessage& m) { return reader->Read(&m); }
    grpc::Status finish() { return reader->Finish(); }
    std::string trailer(const std::string& key) const {
      auto& md = ctx->GetServerTrailingMetadata();
      auto it = md.find(key);
      return it == md.end() ? std::string()
                            : std::string(it->second.data(), it->second.size());
    }
  };

  stream events(const std::string& token, uint64_t since = 0,
                std::chrono::milliseconds timeout
                = std::chrono::milliseconds(30000)) {
    stream s;
    s.ctx = std::make_unique<grpc::ClientContext>();
    s.ctx->set_deadline(std::chrono::system_clock::now() + timeout);
    if (!token.empty())
      s.ctx->AddMetadata("authorization", "Bearer " + token);
    aico::rpc::EventsRequest req;
    req.set_since(since);
    s.reader = stub_->Events(s.ctx.get(), req);
    return s;
  }

  grpc::Channel& channel() { return *channel_; }

private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<aico::rpc::Gateway::Stub> stub_;
};

} // namespace aico::test
