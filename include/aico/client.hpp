// aico client library: the plain C++ facade, for code that does not use
// actors. No CAF or other third-party header is included: a host needs only
// this header (and aico/config.hpp, aico/errors.hpp, aico/models.hpp, which
// it includes) and libaico_client.so.
//
//   aico::client c{aico::client_config::load("client.json")};
//   c.login("alice", "secret").get();            // throws aico::client_error
//   auto sub = c.on_message([](const aico::chat_message& m) { ... });
//   c.send_message("hello").get();               // queued (durable)
//   ...
//   sub.cancel();                                 // or let it go out of scope
//
// Every call returns a std::future; a failure is a client_error carrying the
// engine's classification. Callbacks run on a worker thread of the engine,
// one at a time per subscription: keep them short and never block on a
// future of the same client inside one. Exceptions thrown by a callback are
// swallowed.
//
// CAF applications that want typed actor handles instead use
// aico/actors.hpp (aico::actor_engine).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "aico/config.hpp"
#include "aico/errors.hpp"
#include "aico/export.hpp"
#include "aico/models.hpp"

namespace caf {
class actor_system;
} // namespace caf

namespace aico {

namespace detail {
struct subscription_state;
} // namespace detail

/// The library's version ("1.2.3", the project version it was built from).
AICO_API const char* library_version() noexcept;

/// A running callback subscription. Delivery stops on cancel() or when the
/// object is destroyed (move it to keep it). After cancel() returns no
/// callback of it runs any more (unless cancel() is called from inside the
/// callback itself, which is allowed). Outliving the client is harmless.
class AICO_API subscription {
public:
  subscription() noexcept;
  subscription(subscription&&) noexcept;
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
class AICO_API client {
public:
  /// Runs the engine on its own `threads` worker threads and starts
  /// connecting. Throws client_error (validation) on a bad configuration.
  explicit client(const client_config& cfg, size_t threads = 2);

  /// Runs the engine in the host's CAF actor system (which must outlive the
  /// client). Throws client_error (validation) on a bad configuration.
  client(caf::actor_system& sys, const client_config& cfg);

  /// Cancels every subscription, fails outstanding futures with a network
  /// error "client shut down" and stops the engine, bounded by the
  /// configured shutdown timeout (plus the owned worker threads' own stop).
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

  // -- configuration -----------------------------------------------------------------

  /// The configured shutdown timeout (what ~client waits at most for the
  /// engine).
  std::chrono::milliseconds shutdown_timeout() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace aico
