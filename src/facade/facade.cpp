// aico engine: the plain C++ facade (include/aico/client.hpp). Each call
// is one short-lived event-based actor that makes the request and fulfils
// a std::promise; each subscription is one listener actor. No exception
// leaves an actor handler: promises are fulfilled through noexcept helpers
// and callback exceptions are swallowed.
#include "aico/client.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <utility>

#include "caf/all.hpp"

#include "messages/engine.hpp"
#include "src/facade/public_config.hpp"

namespace aico {

using namespace std::chrono_literals;

namespace detail {

// -- subscription_state --------------------------------------------------------

struct subscription_state {
  std::recursive_mutex mtx;
  bool active = true;
  caf::actor listener;

  /// Runs `f` unless cancelled; swallows its exceptions.
  template <class F>
  void deliver(F&& f) noexcept {
    std::lock_guard<std::recursive_mutex> guard{mtx};
    if (!active)
      return;
    try {
      f();
    } catch (...) {
      // a callback's exception must not cross the actor handler
    }
  }

  void cancel() noexcept {
    caf::actor l;
    {
      std::lock_guard<std::recursive_mutex> guard{mtx};
      active = false;
      l.swap(listener);
    }
    if (l)
      caf::anon_send_exit(l, caf::exit_reason::user_shutdown);
  }
};

// -- client_shared: outstanding calls and subscriptions -------------------------

struct client_shared {
  struct pending {
    caf::actor_addr addr;
    std::function<void()> fail;
  };

  std::mutex mtx;
  bool stopped = false;
  uint64_t next_id = 0;
  std::map<uint64_t, pending> calls;
  std::vector<std::weak_ptr<subscription_state>> subs;

  /// Registers a call; 0 if the client is shutting down.
  uint64_t add_call(std::function<void()> fail) {
    std::lock_guard<std::mutex> guard{mtx};
    if (stopped)
      return 0;
    auto id = ++next_id;
    calls.emplace(id, pending{caf::actor_addr{}, std::move(fail)});
    return id;
  }

  void set_actor(uint64_t id, caf::actor_addr addr) {
    std::lock_guard<std::mutex> guard{mtx};
    auto i = calls.find(id);
    if (i != calls.end())
      i->second.addr = std::move(addr);
  }

  void remove_call(uint64_t id) noexcept {
    std::lock_guard<std::mutex> guard{mtx};
    calls.erase(id);
  }

  bool add_sub(const std::shared_ptr<subscription_state>& st) {
    std::lock_guard<std::mutex> guard{mtx};
    if (stopped)
      return false;
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [](auto& w) { return w.expired(); }),
               subs.end());
    subs.push_back(st);
    return true;
  }

  /// Cancels every subscription and fails every outstanding call.
  void shutdown() {
    std::map<uint64_t, pending> cs;
    std::vector<std::weak_ptr<subscription_state>> ss;
    {
      std::lock_guard<std::mutex> guard{mtx};
      stopped = true;
      cs.swap(calls);
      ss.swap(subs);
    }
    for (auto& w : ss)
      if (auto st = w.lock())
        st->cancel();
    for (auto& kv : cs) {
      kv.second.fail();
      if (kv.second.addr)
        caf::anon_send_exit(kv.second.addr, caf::exit_reason::user_shutdown);
    }
  }
};

template <class T>
struct promise_box {
  std::mutex mtx;
  bool done = false;
  std::promise<T> promise;

  void set(T&& x) noexcept {
    std::lock_guard<std::mutex> guard{mtx};
    if (done)
      return;
    done = true;
    try {
      promise.set_value(std::move(x));
    } catch (...) {
    }
  }

  void fail(std::exception_ptr e) noexcept {
    std::lock_guard<std::mutex> guard{mtx};
    if (done)
      return;
    done = true;
    try {
      promise.set_exception(std::move(e));
    } catch (...) {
    }
  }
};

std::exception_ptr shutdown_error() noexcept {
  try {
    return std::make_exception_ptr(to_client_error(
      make_engine_error(error_class::network, "client shut down")));
  } catch (...) {
    return std::current_exception();
  }
}

std::exception_ptr to_exception(const caf::error& err) noexcept {
  try {
    return std::make_exception_ptr(to_client_error(err));
  } catch (...) {
    return std::current_exception();
  }
}

} // namespace detail

// -- subscription --------------------------------------------------------------

subscription::subscription() noexcept = default;

subscription::subscription(subscription&&) noexcept = default;

subscription::subscription(std::shared_ptr<detail::subscription_state> st)
  : state_(std::move(st)) {
}

subscription& subscription::operator=(subscription&& other) noexcept {
  if (this != &other) {
    cancel();
    state_ = std::move(other.state_);
  }
  return *this;
}

subscription::~subscription() {
  cancel();
}

void subscription::cancel() noexcept {
  if (state_)
    state_->cancel();
}

bool subscription::active() const noexcept {
  if (!state_)
    return false;
  std::lock_guard<std::recursive_mutex> guard{state_->mtx};
  return state_->active;
}

// -- client --------------------------------------------------------------------

struct AICO_LOCAL client::impl {
  std::unique_ptr<caf::actor_system_config> owned_cfg_;
  std::unique_ptr<caf::actor_system> owned_sys_;
  caf::actor_system* sys_ = nullptr;
  std::unique_ptr<aico::engine> eng_;
  std::shared_ptr<detail::client_shared> shared_;

  /// Owns an actor system (sharing scheduler, `threads` workers).
  impl(engine_config cfg, size_t threads)
    : owned_cfg_(std::make_unique<caf::actor_system_config>()) {
    owned_cfg_->set("scheduler.policy", caf::atom("sharing"));
    owned_cfg_->set("scheduler.max-threads",
                    static_cast<int>(std::max<size_t>(threads, 1)));
    owned_sys_ = std::make_unique<caf::actor_system>(*owned_cfg_);
    sys_ = owned_sys_.get();
    eng_ = std::make_unique<aico::engine>(*sys_, std::move(cfg));
    shared_ = std::make_shared<detail::client_shared>();
  }

  /// Borrows the host's actor system.
  impl(caf::actor_system& sys, engine_config cfg) : sys_(&sys) {
    eng_ = std::make_unique<aico::engine>(*sys_, std::move(cfg));
    shared_ = std::make_shared<detail::client_shared>();
  }

  ~impl() {
    shared_->shutdown();
    eng_.reset(); // bounded by shutdown_timeout
    owned_sys_.reset();
    owned_cfg_.reset();
  }

  template <class T, class Handle, class... Ts>
  std::future<T> ask(Handle dest, caf::timespan timeout, Ts... xs);

  subscription add_subscription(
    std::shared_ptr<detail::subscription_state> st,
    std::function<caf::actor(std::shared_ptr<detail::subscription_state>)>
      spawn_listener);
};

client::client(const client_config& cfg, size_t threads)
  : impl_(std::make_unique<impl>(engine_config_or_throw(cfg), threads)) {
}

client::client(caf::actor_system& sys, const client_config& cfg)
  : impl_(std::make_unique<impl>(sys, engine_config_or_throw(cfg))) {
}

client::~client() = default;

std::chrono::milliseconds client::shutdown_timeout() const noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
    impl_->eng_->config().shutdown_timeout);
}

template <class T, class Handle, class... Ts>
std::future<T> client::impl::ask(Handle dest, caf::timespan timeout,
                                 Ts... xs) {
  auto box = std::make_shared<detail::promise_box<T>>();
  auto fut = box->promise.get_future();
  auto shared = shared_;
  auto id = shared->add_call([box] { box->fail(detail::shutdown_error()); });
  if (id == 0) {
    box->fail(detail::shutdown_error());
    return fut;
  }
  auto a = sys_->spawn([=](caf::event_based_actor* self) {
    self->request(dest, timeout, xs...)
      .then(
        [box, shared, id](T& x) {
          box->set(std::move(x));
          shared->remove_call(id);
        },
        [box, shared, id](caf::error& err) {
          box->fail(detail::to_exception(err));
          shared->remove_call(id);
        });
  });
  shared->set_actor(id, a.address());
  return fut;
}

std::future<session_info> client::login(const std::string& user,
                                        const std::string& password) {
  return impl_->ask<session_info>(impl_->eng_->tokens(),
                           impl_->eng_->config().request_timeout + 2s,
                           login_atom_v, user, password);
}

std::future<bool> client::logout() {
  return impl_->ask<bool>(impl_->eng_->tokens(), impl_->eng_->config().request_timeout + 2s,
                   logout_atom_v);
}

std::future<chat_message> client::send_message(outgoing_message msg) {
  return impl_->ask<chat_message>(impl_->eng_->chat(), impl_->eng_->config().request_timeout + 5s,
                           send_atom_v, std::move(msg));
}

std::future<chat_message> client::send_message(const std::string& content) {
  outgoing_message m;
  m.content = content;
  return send_message(std::move(m));
}

std::future<history_result> client::history(history_query q) {
  return impl_->ask<history_result>(impl_->eng_->chat(),
                             impl_->eng_->config().request_timeout + 4s,
                             history_atom_v, std::move(q));
}

std::future<user_result> client::me(read_options opts) {
  return impl_->ask<user_result>(impl_->eng_->users(), impl_->eng_->config().request_timeout + 4s,
                          me_atom_v, opts);
}

std::future<queue_entry> client::update_preferences(user_preferences prefs) {
  return impl_->ask<queue_entry>(impl_->eng_->users(), impl_->eng_->config().request_timeout + 4s,
                          prefs_atom_v, std::move(prefs));
}

std::future<family_result> client::family(read_options opts) {
  return impl_->ask<family_result>(impl_->eng_->users(),
                            impl_->eng_->config().request_timeout + 4s, family_atom_v,
                            opts);
}

std::future<health_result> client::health(read_options opts) {
  return impl_->ask<health_result>(impl_->eng_->system(),
                            impl_->eng_->config().request_timeout + 4s, health_atom_v,
                            opts);
}

std::future<::aico::system_status> client::system_status() {
  return impl_->ask<::aico::system_status>(
    impl_->eng_->system(), impl_->eng_->config().request_timeout + 4s, status_atom_v);
}

std::future<update_ticket> client::request_update() {
  return impl_->ask<update_ticket>(impl_->eng_->system(),
                            impl_->eng_->config().request_timeout + 4s,
                            update_atom_v);
}

std::future<std::vector<queue_entry>> client::queue_list() {
  return impl_->ask<std::vector<queue_entry>>(impl_->eng_->queue(), 10s, list_atom_v);
}

std::future<queue_entry> client::queue_retry(int64_t seq) {
  return impl_->ask<queue_entry>(impl_->eng_->queue(), 10s, retry_atom_v, seq);
}

std::future<bool> client::queue_drop(int64_t seq) {
  return impl_->ask<bool>(impl_->eng_->queue(), 10s, drop_atom_v, seq);
}

std::future<::aico::connection_state> client::connection_state() {
  return impl_->ask<::aico::connection_state>(impl_->eng_->connection(), 5s, state_atom_v);
}

// -- subscriptions ----------------------------------------------------------------

subscription client::impl::add_subscription(
  std::shared_ptr<detail::subscription_state> st,
  std::function<caf::actor(std::shared_ptr<detail::subscription_state>)>
    spawn_listener) {
  if (!shared_->add_sub(st)) {
    st->active = false;
    return subscription{std::move(st)};
  }
  auto l = spawn_listener(st);
  {
    std::lock_guard<std::recursive_mutex> guard{st->mtx};
    if (st->active)
      st->listener = l;
    else
      caf::anon_send_exit(l, caf::exit_reason::user_shutdown);
  }
  return subscription{std::move(st)};
}

subscription
client::on_message(std::function<void(const chat_message&)> f) {
  auto chat = impl_->eng_->chat();
  return impl_->add_subscription(
    std::make_shared<detail::subscription_state>(),
    [sys = impl_->sys_, chat, f = std::move(f)](auto st) {
      auto l = sys->spawn(
        [st, f](chat_listener_actor::pointer)
          -> chat_listener_actor::behavior_type {
          return {
            [st, f](message_atom, const chat_message& m) {
              st->deliver([&] { f(m); });
            },
            [](event_atom, const stream_chunk&) {},
          };
        });
      caf::anon_send(chat, watch_atom_v, l);
      return caf::actor_cast<caf::actor>(l);
    });
}

subscription
client::on_stream_chunk(std::function<void(const stream_chunk&)> f) {
  auto chat = impl_->eng_->chat();
  return impl_->add_subscription(
    std::make_shared<detail::subscription_state>(),
    [sys = impl_->sys_, chat, f = std::move(f)](auto st) {
      auto l = sys->spawn(
        [st, f](chat_listener_actor::pointer)
          -> chat_listener_actor::behavior_type {
          return {
            [](message_atom, const chat_message&) {},
            [st, f](event_atom, const stream_chunk& c) {
              st->deliver([&] { f(c); });
            },
          };
        });
      caf::anon_send(chat, watch_atom_v, l);
      return caf::actor_cast<caf::actor>(l);
    });
}

subscription client::on_connection_state(
  std::function<void(const ::aico::connection_state&)> f) {
  auto sup = impl_->eng_->connection();
  return impl_->add_subscription(
    std::make_shared<detail::subscription_state>(),
    [sys = impl_->sys_, sup, f = std::move(f)](auto st) {
      auto l = sys->spawn(
        [st, f](engine_listener_actor::pointer)
          -> engine_listener_actor::behavior_type {
          return {
            [st, f](state_atom, const ::aico::connection_state& s) {
              st->deliver([&] { f(s); });
            },
            [](event_atom, const server_event&) {},
          };
        });
      caf::anon_send(sup, watch_atom_v, l);
      return caf::actor_cast<caf::actor>(l);
    });
}

subscription client::on_system_status(
  std::function<void(const ::aico::system_status&)> f) {
  auto sys_repo = impl_->eng_->system();
  return impl_->add_subscription(
    std::make_shared<detail::subscription_state>(),
    [sys = impl_->sys_, sys_repo, f = std::move(f)](auto st) {
      auto l = sys->spawn(
        [st, f](system_listener_actor::pointer)
          -> system_listener_actor::behavior_type {
          return {
            [st, f](status_atom, const ::aico::system_status& s) {
              st->deliver([&] { f(s); });
            },
            [](update_atom, const system_update_event&) {},
            [](state_atom, const ::aico::connection_state&) {},
          };
        });
      caf::anon_send(sys_repo, watch_atom_v, l);
      return caf::actor_cast<caf::actor>(l);
    });
}

} // namespace aico
