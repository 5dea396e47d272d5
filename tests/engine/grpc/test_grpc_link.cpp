// The engine's CAF-free gRPC client loop (src/transport/grpc/grpc_link)
// against the real gateway's gRPC door on 127.0.0.1.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <variant>

#include "src/transport/grpc/grpc_link.hpp"
#include "support/clients.hpp"
#include "support/gateway_process.hpp"
#include "support/test_pki.hpp"

namespace aico::test {
namespace {

using namespace std::chrono_literals;
namespace gl = aico::grpc_link;
using steady = std::chrono::steady_clock;

struct rec_reply {
  uint64_t gen, id;
  gl::reply r;
};
struct rec_failed {
  uint64_t gen, id;
  gl::failure f;
  std::string why;
};
struct rec_sub {
  uint64_t gen;
  gl::subscribed s;
};
struct rec_event {
  uint64_t gen;
  gl::event e;
};
struct rec_end {
  uint64_t gen;
  gl::failure f;
  std::string code, why;
};
struct rec_link {
  uint64_t gen;
  bool up;
};
struct rec_open_failed {
  uint64_t gen;
  std::string why;
};
using record = std::variant<rec_reply, rec_failed, rec_sub, rec_event, rec_end,
                            rec_link, rec_open_failed>;

/// Everything the link reports, in order, for the test thread to wait on.
class recorder {
public:
  void push(record r) {
    {
      std::lock_guard<std::mutex> lock(m_);
      q_.push_back(std::move(r));
    }
    cv_.notify_all();
  }

  /// Waits for (and removes) the first record of type T matching `pred`.
  template <class T>
  std::optional<T> wait(std::function<bool(const T&)> pred,
                        std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> lock(m_);
    auto deadline = steady::now() + timeout;
    for (;;) {
      for (auto it = q_.begin(); it != q_.end(); ++it)
        if (auto* t = std::get_if<T>(&*it); t && pred(*t)) {
          T out = std::move(*t);
          q_.erase(it);
          return out;
        }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout)
        return std::nullopt;
    }
  }

  template <class T>
  std::size_t count(std::function<bool(const T&)> pred) {
    std::lock_guard<std::mutex> lock(m_);
    std::size_t n = 0;
    for (auto& r : q_)
      if (auto* t = std::get_if<T>(&r); t && pred(*t))
        ++n;
    return n;
  }

  gl::link_handlers handlers() {
    gl::link_handlers h;
    h.on_reply = [this](uint64_t g, uint64_t id, gl::reply&& r) {
      push(rec_reply{g, id, std::move(r)});
    };
    h.on_send_failed = [this](uint64_t g, uint64_t id, gl::failure f,
                              const std::string& why) {
      push(rec_failed{g, id, f, why});
    };
    h.on_subscribed = [this](uint64_t g, gl::subscribed&& s) {
      push(rec_sub{g, std::move(s)});
    };
    h.on_event = [this](uint64_t g, gl::event&& e) {
      push(rec_event{g, std::move(e)});
    };
    h.on_stream_end = [this](uint64_t g, gl::failure f, const std::string& c,
                             const std::string& why) {
      push(rec_end{g, f, c, why});
    };
    h.on_link = [this](uint64_t g, bool up) { push(rec_link{g, up}); };
    h.on_open_failed = [this](uint64_t g, const std::string& why) {
      push(rec_open_failed{g, why});
    };
    return h;
  }

private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<record> q_;
};

gl::request req(std::string method, std::string path, std::string body = "",
                std::string token = "") {
  return gl::request{std::move(method), std::move(path), std::move(body),
                     std::move(token)};
}

steady::time_point in(std::chrono::milliseconds d) { return steady::now() + d; }

class GrpcLink : public ::testing::Test {
protected:
  virtual std::vector<std::string> extra_args() { return {}; }
  virtual gl::link_options link_opts() { return {}; }

  void SetUp() override {
    gateway_options o;
    o.extra_args = {"--bot-delay-ms", "1", "--grpc", "127.0.0.1:0"};
    auto more = extra_args();
    o.extra_args.insert(o.extra_args.end(), more.begin(), more.end());
    gw_ = std::make_unique<gateway_process>(o);
    ASSERT_TRUE(gw_->start()) << gw_->last_error();
    target_ = gw_->reported_grpc();
    ASSERT_FALSE(target_.empty()) << gw_->ready_line();
    link_ = std::make_unique<gl::grpc_link>(link_opts(), rec_.handlers());
  }

  void TearDown() override {
    if (link_)
      link_->stop();
    link_.reset();
    if (gw_ && gw_->running())
      gw_->stop();
  }

  http_client http() const { return http_client("127.0.0.1", gw_->port()); }

  std::string login(const std::string& user, const std::string& pw) {
    auto r = http().post("/api/v1/users/authenticate",
                         {{"username", user}, {"password", pw}});
    EXPECT_EQ(r.status, 200) << r.raw;
    return jstr(r.body, "/data/access_token");
  }

  bool wait_up(uint64_t gen, bool up = true, std::chrono::milliseconds t = 10s) {
    return rec_
      .wait<rec_link>([&](const rec_link& l) { return l.gen == gen && l.up == up; },
                      t)
      .has_value();
  }

  std::optional<rec_reply> reply_of(uint64_t id,
                                    std::chrono::milliseconds t = 10s) {
    return rec_.wait<rec_reply>([&](const rec_reply& r) { return r.id == id; },
                                t);
  }
  std::optional<rec_failed> failure_of(uint64_t id,
                                       std::chrono::milliseconds t = 10s) {
    return rec_.wait<rec_failed>(
      [&](const rec_failed& r) { return r.id == id; }, t);
  }

  std::unique_ptr<gateway_process> gw_;
  std::string target_;
  recorder rec_;
  std::unique_ptr<gl::grpc_link> link_;
};

TEST_F(GrpcLink, UpAndReplies) {
  link_->open(1, target_);
  ASSERT_TRUE(wait_up(1));
  link_->send(1, 10, req("GET", "/health"), in(5s));
  auto h = reply_of(10);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->gen, 1u);
  EXPECT_EQ(h->r.status, 200);
  EXPECT_EQ(jstr(parse_json(h->r.body), "/data/services/grpc"), "up");
  // a login over the link, then a call with its token
  link_->send(1, 11,
              req("POST", "/users/authenticate",
                  R"({"username":"alice","password":"alice-pw"})"),
              in(5s));
  auto l = reply_of(11);
  ASSERT_TRUE(l.has_value());
  ASSERT_EQ(l->r.status, 200) << l->r.body;
  auto token = jstr(parse_json(l->r.body), "/data/access_token");
  link_->send(1, 12, req("GET", "/users/me", "", token), {});
  auto me = reply_of(12);
  ASSERT_TRUE(me.has_value());
  EXPECT_EQ(jstr(parse_json(me->r.body), "/data/username"), "alice");
  // an API error is a reply too, with its headers
  link_->send(1, 13, req("DELETE", "/users/me", "", token), in(5s));
  auto e = reply_of(13);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->r.status, 405);
  bool allow = false;
  for (auto& [k, v] : e->r.headers)
    allow = allow || (k == "Allow" && v.find("GET") != std::string::npos);
  EXPECT_TRUE(allow);
}

TEST_F(GrpcLink, DeadlineIsAGrpcDeadline) {
  auto admin = login("root", "root-pw");
  auto r = http().post("/api/v1/admin/faults",
                       json::object{{"misbehave", {{"door", "grpc"},
                                                   {"path", "/users/me"},
                                                   {"mode", "hang"}}}},
                       admin);
  ASSERT_EQ(r.status, 200) << r.raw;
  link_->open(1, target_);
  ASSERT_TRUE(wait_up(1));
  auto t0 = steady::now();
  link_->send(1, 20, req("GET", "/users/me", "", admin), in(300ms));
  auto f = failure_of(20);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->f, gl::failure::deadline) << f->why;
  EXPECT_GE(steady::now() - t0, 250ms);
  // a deadline already past fails without an answer too
  link_->send(1, 21, req("GET", "/health"), steady::now() - 1ms);
  auto past = failure_of(21);
  ASSERT_TRUE(past.has_value());
  EXPECT_EQ(past->f, gl::failure::deadline) << past->why;
}

TEST_F(GrpcLink, EventStreamLiveAndReplay) {
  auto token = login("alice", "alice-pw");
  link_->open(1, target_);
  link_->subscribe(1, token, 0);
  auto s = rec_.wait<rec_sub>([](const rec_sub&) { return true; });
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->gen, 1u);
  EXPECT_FALSE(s->s.replay);
  EXPECT_FALSE(s->s.user_id.empty());
  auto post = [&](const std::string& id) {
    auto r = http().post("/api/v1/conversations/messages",
                         json::object{{"id", id}, {"content", "over grpc"},
                                      {"type", "image"}},
                         token);
    EXPECT_EQ(r.status, 201) << r.raw;
  };
  post("link-ev-1");
  auto ev = rec_.wait<rec_event>([](const rec_event& e) {
    return e.e.topic == "message"
           && jstr(parse_json(e.e.data), "/id") == "link-ev-1";
  });
  ASSERT_TRUE(ev.has_value());
  uint64_t since = ev->e.seq;
  link_->unsubscribe();
  post("link-ev-2");
  // resume after `since`: the missed event is replayed
  link_->subscribe(1, token, since);
  auto s2 = rec_.wait<rec_sub>([](const rec_sub& r) { return r.s.replay; });
  ASSERT_TRUE(s2.has_value());
  EXPECT_TRUE(s2->s.complete);
  EXPECT_EQ(s2->s.since, since);
  EXPECT_EQ(s2->s.replayed, 1u);
  auto missed = rec_.wait<rec_event>([](const rec_event& e) {
    return jstr(parse_json(e.e.data), "/id") == "link-ev-2";
  });
  ASSERT_TRUE(missed.has_value());
  EXPECT_GT(missed->e.seq, since);
  // the replaced/unsubscribed stream never reported an end
  EXPECT_EQ(rec_.count<rec_end>([](const rec_end&) { return true; }), 0u);
  // a bad token: the stream ends, unauthenticated
  link_->subscribe(1, "forged", 0);
  auto end = rec_.wait<rec_end>([](const rec_end&) { return true; });
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->f, gl::failure::unauthenticated) << end->why;
  EXPECT_EQ(end->code, "invalid_token");
}

TEST_F(GrpcLink, DoorDownIsLostDoorUpIsUpAgain) {
  auto admin = login("root", "root-pw");
  link_->open(1, target_);
  ASSERT_TRUE(wait_up(1));
  link_->subscribe(1, admin, 0);
  ASSERT_TRUE(rec_.wait<rec_sub>([](const rec_sub&) { return true; }));
  auto r = http().post("/api/v1/admin/faults",
                       json::object{{"grpc", "down"}}, admin);
  ASSERT_EQ(r.status, 200) << r.raw;
  auto end = rec_.wait<rec_end>([](const rec_end&) { return true; });
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->f, gl::failure::unavailable) << end->why;
  EXPECT_EQ(end->gen, 1u);
  ASSERT_TRUE(wait_up(1, false)) << "no link lost after grpc down";
  link_->send(1, 30, req("GET", "/health"), in(2s));
  auto f = failure_of(30);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->f, gl::failure::unavailable) << f->why;

  r = http().post("/api/v1/admin/faults", json::object{{"grpc", "up"}}, admin);
  ASSERT_EQ(r.status, 200) << r.raw;
  // gRPC reconnects by itself within the bounded backoff (1 s here)
  ASSERT_TRUE(wait_up(1, true, 10s)) << "no link up after grpc up";
  link_->send(1, 31, req("GET", "/health"), in(5s));
  auto ok = reply_of(31);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->r.status, 200);
}

TEST_F(GrpcLink, GatewayKilledIsLost) {
  link_->open(1, target_);
  ASSERT_TRUE(wait_up(1));
  gw_->kill9();
  EXPECT_TRUE(wait_up(1, false, 15s));
}

TEST_F(GrpcLink, StaleGenerationIsDropped) {
  auto admin = login("root", "root-pw");
  auto r = http().post("/api/v1/admin/faults",
                       json::object{{"misbehave", {{"door", "grpc"},
                                                   {"path", "/users/me"},
                                                   {"mode", "hang"}}}},
                       admin);
  ASSERT_EQ(r.status, 200) << r.raw;
  link_->open(1, target_);
  ASSERT_TRUE(wait_up(1));
  // a call in flight on channel 1 when channel 2 replaces it
  link_->send(1, 40, req("GET", "/users/me", "", admin), in(10s));
  std::this_thread::sleep_for(100ms);
  link_->open(2, target_);
  auto c = failure_of(40);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->gen, 1u);
  EXPECT_EQ(c->f, gl::failure::cancelled) << c->why;
  // a send for channel 1 now is not sent
  link_->send(1, 41, req("GET", "/health"), in(5s));
  auto stale = failure_of(41);
  ASSERT_TRUE(stale.has_value());
  EXPECT_EQ(stale->f, gl::failure::stale_generation);
  link_->subscribe(1, admin, 0);
  auto stale_sub = rec_.wait<rec_end>([](const rec_end& e) {
    return e.f == gl::failure::stale_generation;
  });
  ASSERT_TRUE(stale_sub.has_value());
  // channel 2 works, and everything from it carries gen 2
  ASSERT_TRUE(wait_up(2));
  link_->send(2, 42, req("GET", "/health"), in(5s));
  auto ok = reply_of(42);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->gen, 2u);
  EXPECT_EQ(ok->r.status, 200);
  // after close(), nothing is current
  link_->close();
  link_->send(2, 43, req("GET", "/health"), in(5s));
  auto closed = failure_of(43);
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(closed->f, gl::failure::stale_generation);
}

TEST_F(GrpcLink, StopIsPromptAndSilent) {
  auto admin = login("root", "root-pw");
  auto r = http().post("/api/v1/admin/faults",
                       json::object{{"misbehave", {{"door", "grpc"},
                                                   {"path", "/users/me"},
                                                   {"mode", "hang"},
                                                   {"count", 10}}}},
                       admin);
  ASSERT_EQ(r.status, 200) << r.raw;
  link_->open(1, target_);
  ASSERT_TRUE(wait_up(1));
  link_->subscribe(1, admin, 0);
  ASSERT_TRUE(rec_.wait<rec_sub>([](const rec_sub&) { return true; }));
  for (uint64_t i = 0; i < 5; ++i)
    link_->send(1, 50 + i, req("GET", "/users/me", "", admin), in(30s));
  std::this_thread::sleep_for(100ms);
  auto t0 = steady::now();
  link_->stop();
  EXPECT_LT(steady::now() - t0, 2s);
  // nothing is reported after stop()
  std::this_thread::sleep_for(200ms);
  auto any_failed = rec_.wait<rec_failed>([](const rec_failed&) { return true; }, 1ms);
  EXPECT_FALSE(any_failed.has_value())
    << any_failed->id << " " << gl::to_string(any_failed->f) << " " << any_failed->why;
  EXPECT_EQ(rec_.count<rec_end>([](const rec_end&) { return true; }), 0u);
}

// -- TLS ----------------------------------------------------------------------------

class GrpcLinkTls : public GrpcLink {
protected:
  void SetUp() override {
    pki_dir_ = std::make_unique<temp_dir>("aico-pki");
    pki_ = make_test_pki(pki_dir_->path());
    GrpcLink::SetUp();
  }
  std::vector<std::string> extra_args() override {
    return gateway_tls_args(pki_, true);
  }
  gl::link_options link_opts() override {
    gl::link_options o;
    o.use_tls = true;
    o.tls.ca_file = pki_.ca_cert;
    o.tls.client_cert = pki_.device_cert;
    o.tls.client_key = pki_.device_key;
    return o;
  }
  std::unique_ptr<temp_dir> pki_dir_;
  test_pki pki_;
};

TEST_F(GrpcLinkTls, MutualTlsWorksAndUnsupportedOptionsAreRefused) {
  link_->open(1, target_);
  ASSERT_TRUE(wait_up(1));
  link_->send(1, 60, req("GET", "/health"), in(5s));
  auto ok = reply_of(60);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->r.status, 200);
  link_->stop();

  // without the client certificate: never up, calls fail
  auto o = link_opts();
  o.tls.client_cert.clear();
  o.tls.client_key.clear();
  recorder rec2;
  {
    gl::grpc_link bare(o, rec2.handlers());
    bare.open(1, target_);
    bare.send(1, 61, req("GET", "/health"), in(3s));
    auto f = rec2.wait<rec_failed>([](const rec_failed& r) { return r.id == 61; });
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->f, gl::failure::unavailable) << f->why;
    EXPECT_EQ(rec2.count<rec_link>([](const rec_link& l) { return l.up; }), 0u);
  }
  // a pin cannot be checked by grpc++: refused, not ignored
  auto pinned = link_opts();
  pinned.tls.pinned_public_key = pki_.server_pin;
  recorder rec3;
  gl::grpc_link p(pinned, rec3.handlers());
  p.open(5, target_);
  auto of = rec3.wait<rec_open_failed>([](const rec_open_failed&) { return true; });
  ASSERT_TRUE(of.has_value());
  EXPECT_EQ(of->gen, 5u);
  EXPECT_NE(of->why.find("pinning"), std::string::npos) << of->why;
  p.send(5, 62, req("GET", "/health"), in(1s));
  auto f = rec3.wait<rec_failed>([](const rec_failed& r) { return r.id == 62; });
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->f, gl::failure::stale_generation);
}

} // namespace
} // namespace aico::test
