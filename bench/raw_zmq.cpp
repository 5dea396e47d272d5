// Raw baseline for the IPC transport: a cppzmq DEALER on the calling thread,
// protobuf Frame{request} out, Frame{response} in (docs/protocol.md "IPC").
//
// Exception to the project rule "each C library is included in one place
// only" (src/transport/zmq/): the benchmark needs the raw library next to the
// engine to have a baseline measured in the same run. Nothing outside
// bench/ uses this file.
#include <zmq.hpp>

#include <cstdint>
#include <exception>
#include <string>

#if __has_include("proto/ipc.pb.h")
#include "proto/ipc.pb.h"
#else
#include "ipc.pb.h"
#endif

#include "bench_common.hpp"

namespace aico::bench {

namespace {

using steady = std::chrono::steady_clock;

class raw_dealer {
public:
  raw_dealer(const std::string& endpoint, const call_spec& call)
    : ctx_(1), sock_(ctx_, zmq::socket_type::dealer), call_(call) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::sndhwm, 1000);
    sock_.set(zmq::sockopt::rcvhwm, 10000);
    sock_.connect(endpoint);
  }

  /// Encodes and sends one Frame{request} with a fresh id.
  void send() {
    aico::ipc::Frame f;
    auto* rq = f.mutable_request();
    rq->set_id("raw-" + std::to_string(next_id_++));
    rq->set_method(call_.method);
    rq->set_path(call_.path);
    if (!call_.token.empty())
      rq->set_token(call_.token);
    f.SerializeToString(&buf_);
    sock_.send(zmq::buffer(buf_), zmq::send_flags::none);
  }

  /// Receives and decodes one Frame{response}; false on timeout (`err` says
  /// why) or on a non-2xx status.
  bool receive(std::chrono::milliseconds timeout, std::string& err) {
    zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) {
      err = "raw zmq: no response within "
            + std::to_string(timeout.count()) + " ms";
      return false;
    }
    zmq::message_t msg;
    if (!sock_.recv(msg, zmq::recv_flags::none)) {
      err = "raw zmq: receive failed";
      return false;
    }
    aico::ipc::Frame f;
    if (!f.ParseFromArray(msg.data(), static_cast<int>(msg.size()))
        || !f.has_response()) {
      err = "raw zmq: unexpected frame";
      return false;
    }
    auto status = f.response().status();
    if (status < 200 || status >= 300) {
      err = "raw zmq: status " + std::to_string(status);
      return false;
    }
    return true;
  }

private:
  zmq::context_t ctx_;
  zmq::socket_t sock_;
  call_spec call_;
  uint64_t next_id_ = 1;
  std::string buf_;
};

} // namespace

run_result raw_zmq_run(const std::string& endpoint, const call_spec& call,
                       const run_params& p) {
  run_result res;
  try {
    raw_dealer d{endpoint, call};
    std::string err;
    // round trip
    proc_usage usage0;
    for (int i = 0; i < p.warmup + p.requests; ++i) {
      if (i == p.warmup)
        usage0 = proc_usage_now();
      auto t0 = steady::now();
      d.send();
      if (!d.receive(p.timeout, err)) {
        res.error = err;
        return res;
      }
      if (i >= p.warmup)
        res.rtt_us.push_back(micros(steady::now() - t0));
    }
    res.usage_since(usage0, p.requests);
    // pipelined: keep `window` in flight (responses may come out of order;
    // only their number matters here)
    auto pipelined = [&](int total) {
      int sent = 0;
      int done = 0;
      while (sent < total && sent - done < p.window) {
        d.send();
        ++sent;
      }
      while (done < total) {
        if (!d.receive(p.timeout, err))
          return false;
        ++done;
        if (sent < total) {
          d.send();
          ++sent;
        }
      }
      return true;
    };
    if (p.pipe_warmup > 0 && !pipelined(p.pipe_warmup)) {
      res.error = err;
      return res;
    }
    auto t0 = steady::now();
    if (!pipelined(p.total)) {
      res.error = err;
      return res;
    }
    res.pipe_seconds = std::chrono::duration<double>(steady::now() - t0)
                         .count();
    res.rps = p.total / res.pipe_seconds;
  } catch (const std::exception& e) {
    res.error = std::string{"raw zmq: "} + e.what();
  }
  return res;
}

} // namespace aico::bench
