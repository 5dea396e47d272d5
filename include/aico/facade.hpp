// aico engine: a plain C++ facade for code that does not use actors.
//
//   aico::client c{aico::load_config("client.json").value()};
//   c.login("alice", "secret").get();            // throws aico::client_error
//   auto sub = c.on_message([](const aico::chat_message& m) { ... });
//   c.send_message("hello").get();               // queued (durable)
//   ...
//   sub.cancel();                                 // or let it go out of scope
//
// Every call returns a std::future; a failure is a client_error carrying the
// engine's classification. Callbacks run on a CAF worker thread, one at a
// time per subscription: keep them short and never block on a future of the
// same client inside one. Exceptions thrown by a callback are swallowed.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "messages/engine.hpp"
#include "messages/errors.hpp"
#include "messages/models.hpp"
#include "messages/repositories.hpp"

namespace aico {

/// The exception stored in a failed future: the engine error's
/// classification (what() is describe(error)).
class client_error : public std::runtime_error {
public:
  explicit client_error(classification c, const std::string& what);

  /// Builds one from an engine (or CAF) error.
  static client_error from(const caf::error& err);

  const classification& info() const noexcept { return info_; }
  error_class cls() const noexcept { return info_.cls; }
  bool retryable() const noexcept { return info_.retryable; }
  int32_t status() const noexcept { return info_.status; }
  const std::string& code() const noexcept { return info_.code; }
  const std::string& message() const noexcept { return info_.message; }

private:
  classification info_;
};

namespace detail {
struct subscription_state;
struct client_shared;
} // namespace detail

/// A running callback subscription. Delivery stops on cancel() or when the
/// object is destroyed (move it to keep it). After cancel() returns no
/// callback of it runs any more (unless cancel() is called from inside the
/// callback itself, which is allowed). Outliving the client is harmless.
class subscription {
public:
  subscription() = default;
  subscription(subscription&&) noexcept = default;
  subscription& operator=(subscription&& other) noexcept;
  subscription(const subscription&) = delete;
  subscription& operator=(const subscription&) = delete;
  ~subscription();

  /// Stops delivery; idempotent.
  void cancel() noexcept;

  /// True until cancel() (or the client's destruction).
  bool active() const noexcept;

private:
  friend class client;
  explicit subscription(std::shared_ptr<detail::subscription_state> st);
  std::shared_ptr<detail::subscription_state> state_;
};

/// The engine behind futures and callbacks.
class client {
public:
  /// Owns an actor system (sharing scheduler, `threads` workers) and an
  /// engine with `cfg`; starts connecting.
  explicit client(engine_config cfg, size_t threads = 2);

  /// Borrows the host's actor system (which must outlive the client).
  client(caf::actor_system& sys, engine_config cfg);

  /// Cancels every subscription, fails outstanding futures with a network
  /// error "client shut down" and stops the engine, bounded by
  /// cfg.shutdown_timeout (plus the owned actor system's own stop).
  /// Unsent messages stay in the durable queue (with a state_dir).
  ~client();

  client(const client&) = delete;
  client& operator=(const client&) = delete;

  // -- session -----------------------------------------------------------------

  std::future<session_info> login(const std::string& user,
                                  const std::string& password);
  /// Forgets the tokens at once (always), then tells the gateway and waits
  /// for its answer (bounded by the request timeout): true once it
  /// confirmed; a client_error (network, timeout, ...) if it could not be
  /// told. The session stays valid on the gateway until it expires then.
  std::future<bool> logout();

  // -- chat ----------------------------------------------------------------------

  /// Queues a message (durable); resolves at once with it as queued. Follow
  /// its status with on_message.
  std::future<chat_message> send_message(outgoing_message msg);
  /// Shorthand: `content` to the current conversation.
  std::future<chat_message> send_message(const std::string& content);
  std::future<history_result> history(history_query q = {});

  // -- user ------------------------------------------------------------------------

  std::future<user_result> me(read_options opts = {});
  /// Queued like a send (works offline).
  std::future<queue_entry> update_preferences(user_preferences prefs);
  std::future<family_result> family(read_options opts = {});

  // -- system ----------------------------------------------------------------------

  std::future<health_result> health(read_options opts = {});
  std::future<::aico::system_status> system_status();
  /// Admin only (authorization error otherwise).
  std::future<update_ticket> request_update();

  // -- offline queue ---------------------------------------------------------------

  std::future<std::vector<queue_entry>> queue_list();
  /// Puts a failed (parked) entry back in its lane.
  std::future<queue_entry> queue_retry(int64_t seq);
  /// Removes a pending or parked entry; false if it was not removed.
  std::future<bool> queue_drop(int64_t seq);

  // -- connection ------------------------------------------------------------------

  std::future<::aico::connection_state> connection_state();

  // -- subscriptions ---------------------------------------------------------------

  /// Every new message and status change of the chat stream (replace by id;
  /// includes the bot's final replies).
  subscription on_message(std::function<void(const chat_message&)> f);
  /// Chunks of streamed bot replies.
  subscription on_stream_chunk(std::function<void(const stream_chunk&)> f);
  /// The current connection state at once, then every change.
  subscription on_connection_state(
    std::function<void(const ::aico::connection_state&)> f);
  /// The gateway's status (polled while subscribed and connected).
  subscription on_system_status(
    std::function<void(const ::aico::system_status&)> f);

  // -- escape hatch ----------------------------------------------------------------

  /// The engine (typed actor handles) for actor code.
  aico::engine& engine() noexcept { return *eng_; }
  caf::actor_system& actor_system() noexcept { return *sys_; }

private:
  template <class T, class Handle, class... Ts>
  std::future<T> ask(Handle dest, caf::timespan timeout, Ts... xs);

  subscription add_subscription(
    std::shared_ptr<detail::subscription_state> st,
    std::function<caf::actor(std::shared_ptr<detail::subscription_state>)>
      spawn_listener);

  std::unique_ptr<caf::actor_system_config> owned_cfg_;
  std::unique_ptr<caf::actor_system> owned_sys_;
  caf::actor_system* sys_ = nullptr;
  std::unique_ptr<aico::engine> eng_;
  std::shared_ptr<detail::client_shared> shared_;
};

} // namespace aico
