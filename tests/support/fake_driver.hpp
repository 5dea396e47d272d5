// A fake transport driver for tests on CAF's test coordinator: it records
// what its owner asked (open, send, subscribe, ping, ...) and hands the
// test the driver_events handlers, so the test plays the I/O thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "src/transport/driver.hpp"

namespace aico::test {

namespace tp = aico::transport;

/// What the actor asked of the fake driver, and the handlers to answer by.
struct driver_log {
  tp::driver_caps caps;
  tp::driver_events ev;
  std::vector<std::string> calls; ///< "open 1 tok", "send 1 k1 id c1", ...
  std::vector<uint64_t> opened;   ///< gens of open()
  std::vector<uint64_t> cancelled;
  std::optional<tp::send_result> next_send; ///< else queued(key * 10)
  uint64_t last_sub = 0;
  uint64_t last_since = 0;
  bool stopped = false;

  std::size_t count(const std::string& prefix) const {
    std::size_t n = 0;
    for (auto& c : calls)
      if (c.rfind(prefix, 0) == 0)
        ++n;
    return n;
  }
};

class fake_driver : public tp::driver {
public:
  fake_driver(std::shared_ptr<driver_log> log, tp::driver_events ev)
    : log_(std::move(log)) {
    log_->ev = std::move(ev);
  }
  const char* name() const override { return "fake"; }
  tp::driver_caps capabilities() const override { return log_->caps; }
  std::string unusable() const override { return {}; }
  void open(uint64_t gen, const std::string& token) override {
    log_->opened.push_back(gen);
    log_->calls.push_back("open " + std::to_string(gen) + " " + token);
  }
  void close() override { log_->calls.push_back("close"); }
  tp::send_result send(uint64_t gen, tp::outgoing_call c) override {
    log_->calls.push_back("send " + std::to_string(gen) + " k"
                          + std::to_string(c.key) + " id " + c.wire_id);
    if (log_->next_send) {
      auto r = *log_->next_send;
      log_->next_send.reset();
      return r;
    }
    return tp::send_result::queued(c.key * 10);
  }
  void cancel(uint64_t handle) override { log_->cancelled.push_back(handle); }
  void subscribe(uint64_t gen, uint64_t sub, const std::string& token,
                 uint64_t since) override {
    log_->last_sub = sub;
    log_->last_since = since;
    log_->calls.push_back("subscribe " + std::to_string(gen) + " " + token
                          + " since " + std::to_string(since));
  }
  void unsubscribe(uint64_t gen) override {
    log_->calls.push_back("unsubscribe " + std::to_string(gen));
  }
  void ping(uint64_t gen) override {
    log_->calls.push_back("ping " + std::to_string(gen));
  }
  bool reserved_id(const std::string& id) const override {
    return id.rfind("ctl-", 0) == 0;
  }
  std::string describe(tp::timing_cause c, tp::duration,
                       tp::duration) const override {
    switch (c) {
      case tp::timing_cause::connect_timeout:
        return "fake connect timed out";
      case tp::timing_cause::dead_peer:
        return "fake peer silent";
      case tp::timing_cause::reconnect_grace:
        break;
    }
    return "fake not back in time";
  }
  void stop() override { log_->stopped = true; }

private:
  std::shared_ptr<driver_log> log_;
};

} // namespace aico::test
