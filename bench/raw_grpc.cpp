// Raw baseline for the gRPC door: a grpc++ client of aico.rpc.Gateway/Call
// (proto/gateway.proto, docs/protocol.md "gRPC door"). Round trips: the
// synchronous stub on the calling thread, one call in flight. Throughput:
// the asynchronous stub with `window` calls in flight on one completion
// queue drained by the calling thread.
//
// Exception to the project rule "each C library is included in one place
// only" (src/transport/grpc/): the benchmark needs the raw library next to
// the engine to have a baseline measured in the same run. Nothing outside
// bench/ uses this file.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "gateway.grpc.pb.h"

#include "bench_common.hpp"

namespace aico::bench {

namespace {

using steady = std::chrono::steady_clock;

std::shared_ptr<grpc::Channel> make_channel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

void prepare(grpc::ClientContext& ctx, aico::rpc::CallRequest& req,
             const call_spec& call, std::chrono::milliseconds timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!call.token.empty())
    ctx.AddMetadata("authorization", "Bearer " + call.token);
  req.set_method(call.method);
  req.set_path(call.path);
}

bool check(const grpc::Status& st, const aico::rpc::CallReply& rep,
           std::string& err) {
  if (!st.ok()) {
    err = "raw grpc: status " + std::to_string(st.error_code()) + " "
          + st.error_message();
    return false;
  }
  if (rep.status() < 200 || rep.status() >= 300) {
    err = "raw grpc: HTTP status " + std::to_string(rep.status());
    return false;
  }
  return true;
}

/// One call slot of the pipelined phase.
struct slot {
  std::unique_ptr<grpc::ClientContext> ctx;
  aico::rpc::CallRequest req;
  aico::rpc::CallReply rep;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<aico::rpc::CallReply>> rd;
};

} // namespace

run_result raw_grpc_run(const std::string& target, const call_spec& call,
                        const run_params& p) {
  run_result res;
  try {
    auto ch = make_channel(target);
    auto stub = aico::rpc::Gateway::NewStub(ch);
    std::string err;
    // round trip
    proc_usage usage0;
    for (int i = 0; i < p.warmup + p.requests; ++i) {
      if (i == p.warmup)
        usage0 = proc_usage_now();
      auto t0 = steady::now();
      grpc::ClientContext ctx;
      aico::rpc::CallRequest req;
      aico::rpc::CallReply rep;
      prepare(ctx, req, call, p.timeout);
      auto st = stub->Call(&ctx, req, &rep);
      if (!check(st, rep, err)) {
        res.error = err;
        return res;
      }
      if (i >= p.warmup)
        res.rtt_us.push_back(micros(steady::now() - t0));
    }
    res.usage_since(usage0, p.requests);
    // pipelined: keep `window` in flight
    grpc::CompletionQueue cq;
    std::vector<slot> slots(static_cast<std::size_t>(p.window));
    auto start = [&](std::size_t i) {
      auto& s = slots[i];
      s.ctx = std::make_unique<grpc::ClientContext>();
      s.req.Clear();
      s.rep.Clear();
      prepare(*s.ctx, s.req, call, p.timeout);
      s.rd = stub->AsyncCall(s.ctx.get(), s.req, &cq);
      s.rd->Finish(&s.rep, &s.status, reinterpret_cast<void*>(i));
    };
    auto pipelined = [&](int total) {
      int sent = 0;
      int done = 0;
      for (std::size_t i = 0; i < slots.size() && sent < total; ++i) {
        start(i);
        ++sent;
      }
      while (done < sent) {
        void* tag = nullptr;
        bool ok = false;
        if (!cq.Next(&tag, &ok)) {
          err = "raw grpc: completion queue shut down";
          return false;
        }
        auto i = reinterpret_cast<std::size_t>(tag);
        ++done;
        if (!check(slots[i].status, slots[i].rep, err))
          return false;
        if (sent < total) {
          start(i);
          ++sent;
        }
      }
      return true;
    };
    bool ok = p.pipe_warmup <= 0 || pipelined(p.pipe_warmup);
    double secs = 0;
    if (ok) {
      auto t0 = steady::now();
      ok = pipelined(p.total);
      secs = std::chrono::duration<double>(steady::now() - t0).count();
    }
    cq.Shutdown();
    void* tag = nullptr;
    bool cq_ok = false;
    while (cq.Next(&tag, &cq_ok)) {
    }
    if (!ok) {
      res.error = err;
      return res;
    }
    res.pipe_seconds = secs;
    res.rps = p.total / res.pipe_seconds;
  } catch (const std::exception& e) {
    res.error = std::string{"raw grpc: "} + e.what();
  }
  return res;
}

} // namespace aico::bench
