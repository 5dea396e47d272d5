// aico engine: the chat, user and system repositories (messages/repositories.hpp).
//
// Reads go through the response cache, writes through the durable offline
// queue, everything else straight to the resilient client. The chat
// repository keeps the latest version of every message it shows, so the
// stream it publishes is keyed by id and a status never goes backwards.
#include <cmath>
#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/json.hpp>

#include "messages/errors.hpp"
#include "messages/repositories.hpp"
#include "src/model/codec.hpp"

namespace json = boost::json;

namespace aico {

namespace {


// -- shared helpers -----------------------------------------------------------------

std::string random_id(const char* prefix) {
  static const char* hex = "0123456789abcdef";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = prefix;
  for (int i = 0; i < 24; ++i)
    id += hex[rng() % 16];
  return id;
}

/// The gateway's id character set ([A-Za-z0-9_.:-], 1-128).
bool valid_id(const std::string& s) {
  if (s.empty() || s.size() > 128)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':'
           || c == '-';
  });
}

caf::error invalid(const std::string& field, const std::string& what) {
  return make_engine_error(error_class::validation,
                           "field '" + field + "': " + what, 0,
                           "validation_error");
}

/// Extra time a caller waits beyond the deadline it hands down, so the
/// callee's own answer (which it gives by that deadline) always arrives.
constexpr auto answer_grace = std::chrono::seconds(1);

/// An enqueue whose answer did not come in time: it may or may not be in
/// the queue. Anything else the queue says passes through (the queue only
/// says "not queued" when it is certain, or "outcome_unknown" itself).
caf::error enqueue_error(caf::error err, const std::string& key) {
  auto c = classify(err);
  if (c.code == "outcome_unknown" || c.cls != error_class::timeout)
    return err;
  return make_engine_error(error_class::unknown,
                           "the outcome of queueing " + key
                             + " is unknown: the offline queue did not answer "
                               "in time; its list shows whether it was "
                               "queued",
                           0, "outcome_unknown");
}

read_origin origin_of(const cached_reply& r) {
  return {r.from_cache, r.stale, r.age};
}

/// Runs `f(user_id)` with the logged-in user's id (the cache scope), or
/// delivers the token manager's error to `rp`.
template <class Self, class RP, class F>
void with_user(Self* self, const token_manager_actor& tokens, RP rp, F f) {
  self->request(tokens, std::chrono::seconds(5), session_atom_v)
    .then([=](const session_info& s) mutable { f(s.user_id); },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
}

/// What the cache must check a body of T against.
template <class T>
constexpr cached_body body_kind() {
  if constexpr (std::is_same_v<T, user>)
    return cached_body::user;
  else if constexpr (std::is_same_v<T, family>)
    return cached_body::family;
  else if constexpr (std::is_same_v<T, system_health>)
    return cached_body::system_health;
  else if constexpr (std::is_same_v<T, history_page>)
    return cached_body::history_page;
  else if constexpr (std::is_same_v<T, system_status>)
    return cached_body::system_status;
  else
    return cached_body::envelope;
}

/// A cached GET decoded as T.
template <class T, class Result, class Self>
caf::result<Result> cached_get(Self* self, const repository_deps& deps,
                               std::string path, read_options ro,
                               bool auth = true) {
  auto rp = self->template make_response_promise<Result>();
  auto go = [=](const std::string& user) mutable {
    cache_read r;
    r.user = user;
    r.call = api_call{random_id("r-"), "GET", path, "", ""};
    r.max_age = ro.max_age;
    r.force_refresh = ro.force_refresh;
    r.allow_stale = ro.allow_stale;
    r.expect = body_kind<T>();
    r.auth = auth;
    self->request(deps.cache, deps.request_timeout + std::chrono::seconds(2),
                  read_atom_v, r)
      .then(
        [=](const cached_reply& cr) mutable {
          auto v = decode_reply<T>(cr.reply.status, cr.reply.body);
          if (!v) {
            rp.deliver(std::move(v.error()));
            return;
          }
          Result res;
          res.value = std::move(*v);
          res.origin = origin_of(cr);
          rp.deliver(std::move(res));
        },
        [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
  };
  if (auth)
    with_user(self, deps.tokens, rp, go);
  else
    go(std::string{});
  return rp;
}

/// A direct call decoded as T.
template <class T, class Self>
caf::result<T> direct_call(Self* self, const repository_deps& deps,
                           std::string method, std::string path,
                           std::string body) {
  auto rp = self->template make_response_promise<T>();
  api_call c{random_id("c-"), std::move(method), std::move(path),
             std::move(body), ""};
  self
    ->request(deps.api, deps.request_timeout + std::chrono::seconds(2),
              request_atom_v, c, deps.request_timeout, true)
    .then(
      [=](const api_reply& r) mutable {
        auto v = decode_reply<T>(r.status, r.body);
        if (v)
          rp.deliver(std::move(*v));
        else
          rp.deliver(std::move(v.error()));
      },
      [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

// -- chat ----------------------------------------------------------------------------

/// Position in the lifecycle; a message only moves forward (failed aside).
int rank(message_status s) {
  switch (s) {
    case message_status::queued:
      return 0;
    case message_status::sending:
      return 1;
    case message_status::sent:
      return 2;
    case message_status::delivered:
      return 3;
    case message_status::read:
      return 4;
    case message_status::failed:
      return -1;
  }
  return 0;
}

/// Whether `next` may replace `prev` in the stream.
bool may_replace(const chat_message& prev, const chat_message& next) {
  auto a = prev.status;
  auto b = next.status;
  if (a == message_status::failed)
    return true; // retried (queued/sending) or failed again with a reason
  if (b == message_status::failed)
    return rank(a) < rank(message_status::sent); // the server never had it
  if (rank(b) > rank(a))
    return true;
  // same status: only new information (e.g. server fields arriving)
  return rank(b) == rank(a) && !(prev == next)
         && (next.seq != 0 || prev.seq == 0);
}

/// Fills what the server knows into `into` (keeps the local status).
void merge_server_fields(chat_message& into, const chat_message& from) {
  if (!from.conversation_id.empty())
    into.conversation_id = from.conversation_id;
  if (!from.content.empty())
    into.content = from.content;
  if (!from.type.empty())
    into.type = from.type;
  into.sender_id = from.sender_id;
  into.sender = from.sender;
  into.timestamp = from.timestamp;
  into.timestamp_ms = from.timestamp_ms;
  into.seq = from.seq;
  if (!from.read_at.empty())
    into.read_at = from.read_at;
  into.metadata = from.metadata;
  into.reply_to = from.reply_to;
}

/// The message as written in a queued send body (after a restart the
/// repository has no other record of it).
chat_message from_send_body(const queue_entry& e) {
  chat_message m;
  m.id = e.idempotency_key;
  boost::system::error_code ec;
  auto jv = json::parse(e.body, ec);
  if (ec || !jv.is_object())
    return m;
  auto& o = jv.get_object();
  auto s = [&](const char* k) -> std::string {
    if (auto p = o.if_contains(k); p && p->is_string())
      return std::string{p->get_string()};
    return {};
  };
  m.conversation_id = s("conversation_id");
  m.content = s("content");
  if (auto t = s("type"); !t.empty())
    m.type = t;
  if (auto p = o.if_contains("metadata"); p && p->is_object())
    m.metadata = json::serialize(*p);
  return m;
}

constexpr size_t max_tracked = 10000;

struct chat_state {
  static constexpr const char* name = "aico.chat_repository";
  repository_deps deps;
  std::vector<chat_listener_actor> listeners;
  std::map<std::string, chat_message> tracked;
  std::deque<std::string> order; ///< insertion order of `tracked`
};

using chat_impl = chat_repository_actor::stateful_pointer<chat_state>;

void emit(chat_impl self, const chat_message& m) {
  for (auto& l : self->state.listeners)
    self->send(l, message_atom_v, m);
}

/// Records `m` if it moves the message forward and publishes it.
void upsert(chat_impl self, chat_message m) {
  auto& st = self->state;
  auto i = st.tracked.find(m.id);
  if (i == st.tracked.end()) {
    st.tracked.emplace(m.id, m);
    st.order.push_back(m.id);
    // forget the oldest settled messages beyond the bound
    while (st.order.size() > max_tracked) {
      auto j = st.tracked.find(st.order.front());
      if (j != st.tracked.end()
          && (j->second.status == message_status::queued
              || j->second.status == message_status::sending))
        break; // never forget a message still on its way
      if (j != st.tracked.end())
        st.tracked.erase(j);
      st.order.pop_front();
    }
    emit(self, m);
    return;
  }
  if (!may_replace(i->second, m))
    return;
  i->second = m;
  emit(self, m);
}

void on_queue_update(chat_impl self, const queue_update& u) {
  auto& st = self->state;
  auto& e = u.entry;
  if (e.kind == command_kind::mark_read) {
    if (u.status != queue_status::sent || u.reply_body.empty())
      return;
    auto m = decode_reply<chat_message>(u.http_status ? u.http_status : 200,
                                        u.reply_body);
    if (!m)
      return;
    auto i = st.tracked.find(m->id);
    chat_message next = i != st.tracked.end() ? i->second : *m;
    merge_server_fields(next, *m);
    next.status = message_status::read;
    upsert(self, std::move(next));
    return;
  }
  if (e.kind != command_kind::send_message)
    return;
  auto i = st.tracked.find(e.idempotency_key);
  chat_message m = i != st.tracked.end() ? i->second : from_send_body(e);
  m.failure_reason.clear();
  switch (u.status) {
    case queue_status::queued:
    case queue_status::retrying:
      m.status = message_status::queued;
      break;
    case queue_status::sending:
      m.status = message_status::sending;
      break;
    case queue_status::sent: {
      if (!u.reply_body.empty()) {
        auto srv = decode_reply<chat_message>(
          u.http_status ? u.http_status : 200, u.reply_body);
        if (srv)
          merge_server_fields(m, *srv);
      }
      if (rank(m.status) < rank(message_status::sent))
        m.status = message_status::sent;
      break;
    }
    case queue_status::failed:
      m.status = message_status::failed;
      m.failure_reason = u.error_message.empty() ? e.parked_reason
                                                 : u.error_message;
      break;
    case queue_status::dropped:
      m.status = message_status::failed;
      m.failure_reason = "dropped by the user";
      break;
  }
  upsert(self, std::move(m));
}

void on_server_event(chat_impl self, const server_event& ev) {
  auto& st = self->state;
  if (ev.topic == "message" || ev.topic == "message.read") {
    auto m = decode_message(ev.data);
    if (!m)
      return; // a malformed event is dropped, never crashes the stream
    auto i = st.tracked.find(m->id);
    chat_message next = i != st.tracked.end() ? i->second : *m;
    merge_server_fields(next, *m);
    next.failure_reason.clear();
    bool read = ev.topic == "message.read" || m->status == message_status::read
                || !m->read_at.empty();
    next.status = read ? message_status::read : message_status::delivered;
    upsert(self, std::move(next));
  } else if (ev.topic == "message.stream") {
    auto c = decode_stream_chunk(ev.data);
    if (!c)
      return;
    for (auto& l : st.listeners)
      self->send(l, event_atom_v, *c);
  }
}

chat_repository_actor::behavior_type chat_fun(chat_impl self,
                                              repository_deps deps) {
  self->state.deps = std::move(deps);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& ls = self->state.listeners;
    ls.erase(std::remove_if(ls.begin(), ls.end(),
                            [&](const chat_listener_actor& l) {
                              return l.address() == dm.source;
                            }),
             ls.end());
  });
  return {
    [=](send_atom, outgoing_message& out) -> caf::result<chat_message> {
      if (out.id.empty())
        out.id = random_id("m-");
      if (!valid_id(out.id))
        return invalid("id", "1-128 characters of [A-Za-z0-9_.:-]");
      if (out.id.rfind("bot-", 0) == 0)
        return invalid("id", "ids starting with 'bot-' are reserved");
      if (out.content.empty())
        return invalid("content", "must not be empty");
      if (out.content.size() > 4 * 4000)
        return invalid("content", "at most 4000 characters");
      if (out.conversation_id == "current")
        out.conversation_id.clear();
      if (!out.conversation_id.empty() && !valid_id(out.conversation_id))
        return invalid("conversation_id",
                       "1-128 characters of [A-Za-z0-9_.:-]");
      chat_message m;
      m.id = out.id;
      m.conversation_id = out.conversation_id;
      m.content = out.content;
      m.type = out.type.empty() ? "text" : out.type;
      m.metadata = out.metadata.empty() ? "{}" : out.metadata;
      m.status = message_status::queued;
      queued_command cmd;
      cmd.idempotency_key = m.id;
      cmd.kind = command_kind::send_message;
      cmd.lane = m.conversation_id.empty() ? "current" : m.conversation_id;
      cmd.method = "POST";
      cmd.path = "/conversations/messages";
      cmd.body = encode_send_message_body(m);
      // one deadline for the whole send, carried down to the queue file
      cmd.timeout = out.timeout > caf::timespan{0}
                      ? out.timeout
                      : self->state.deps.request_timeout;
      auto rp = self->make_response_promise<chat_message>();
      self->request(self->state.deps.queue, cmd.timeout + answer_grace,
                    enqueue_atom_v, cmd)
        .then(
          [=](const queue_entry&) mutable {
            auto& st = self->state;
            auto i = st.tracked.find(m.id);
            if (i == st.tracked.end())
              upsert(self, m);
            // reply with what the stream shows now (the queue may already
            // have moved it to sending)
            auto j = st.tracked.find(m.id);
            rp.deliver(j != st.tracked.end() ? j->second : m);
          },
          [=](caf::error& err) mutable {
            rp.deliver(enqueue_error(std::move(err), m.id));
          });
      return rp;
    },
    [=](history_atom, history_query& q) -> caf::result<history_result> {
      auto conv = q.conversation_id.empty() ? std::string{"current"}
                                            : q.conversation_id;
      if (!valid_id(conv))
        return invalid("conversation_id",
                       "1-128 characters of [A-Za-z0-9_.:-]");
      if (q.limit < 1 || q.limit > 500)
        return invalid("limit", "must be 1-500");
      // The latest page (no `since`) is fetched in one of two sizes and cut
      // to the requested limit here, so the cache holds one entry per size
      // class: after a `limit 10` read, an offline `limit 3` read is served
      // from it instead of missing because the key differed.
      const bool latest = q.since == 0;
      const int want = q.limit;
      const int fetch = latest ? (want <= 50 ? 50 : 500) : want;
      auto path = "/conversations/" + conv
                  + "/messages?limit=" + std::to_string(fetch);
      if (!latest)
        path += "&since=" + std::to_string(q.since);
      auto rp = self->make_response_promise<history_result>();
      auto& deps = self->state.deps;
      auto ro = q.read;
      with_user(self, deps.tokens, rp, [=](const std::string& user) mutable {
        cache_read r;
        r.user = user;
        r.call = api_call{random_id("r-"), "GET", path, "", ""};
        r.max_age = ro.max_age;
        r.force_refresh = ro.force_refresh;
        r.allow_stale = ro.allow_stale;
        r.expect = cached_body::history_page;
        self
          ->request(self->state.deps.cache,
                    self->state.deps.request_timeout + std::chrono::seconds(2),
                    read_atom_v, r)
          .then(
            [=](const cached_reply& cr) mutable {
              auto page = decode_reply<history_page>(cr.reply.status,
                                                     cr.reply.body);
              if (!page) {
                rp.deliver(std::move(page.error()));
                return;
              }
              // the tail of a latest page is itself the latest page: the
              // newest message, and so has_more/next_since, are unchanged
              if (latest && page->messages.size() > static_cast<size_t>(want))
                page->messages.erase(page->messages.begin(),
                                     page->messages.end() - want);
              // show our local status for messages we know better
              auto& st = self->state;
              for (auto& m : page->messages) {
                auto i = st.tracked.find(m.id);
                if (i != st.tracked.end()
                    && rank(i->second.status) > rank(message_status::sent))
                  m.status = i->second.status;
                else if (m.status == message_status::sent)
                  m.status = message_status::delivered; // stored = delivered
              }
              rp.deliver(history_result{std::move(*page), origin_of(cr)});
            },
            [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      });
      return rp;
    },
    [=](mark_read_atom, const std::string& conv,
        const std::string& id) -> caf::result<queue_entry> {
      if (!valid_id(id))
        return invalid("id", "1-128 characters of [A-Za-z0-9_.:-]");
      queued_command cmd;
      cmd.idempotency_key = "read-" + id;
      cmd.kind = command_kind::mark_read;
      cmd.lane = conv.empty() ? "current" : conv;
      cmd.method = "POST";
      cmd.path = "/conversations/messages/" + id + "/read";
      cmd.timeout = self->state.deps.request_timeout;
      auto rp = self->make_response_promise<queue_entry>();
      self->request(self->state.deps.queue, cmd.timeout + answer_grace,
                    enqueue_atom_v, cmd)
        .then([=](const queue_entry& e) mutable { rp.deliver(e); },
              [=](caf::error& err) mutable {
                rp.deliver(enqueue_error(std::move(err), cmd.idempotency_key));
              });
      return rp;
    },
    [=](watch_atom, chat_listener_actor l) {
      self->monitor(l);
      self->state.listeners.push_back(l);
      // messages still on their way (or failed) are shown at once
      for (auto& id : self->state.order) {
        auto i = self->state.tracked.find(id);
        if (i != self->state.tracked.end()
            && rank(i->second.status) < rank(message_status::delivered))
          self->send(l, message_atom_v, i->second);
      }
    },
    [=](state_atom, const connection_state&) {
      // the queue drains on reconnect; nothing to do here
    },
    [=](event_atom, const server_event& ev) {
      try {
        on_server_event(self, ev);
      } catch (...) {
        // never let a bad event take the repository down
      }
    },
    [=](queue_atom, const queue_update& u) {
      try {
        on_queue_update(self, u);
      } catch (...) {
      }
    },
  };
}

// -- user ----------------------------------------------------------------------------

struct user_state {
  static constexpr const char* name = "aico.user_repository";
  repository_deps deps;
};

using user_impl = user_repository_actor::stateful_pointer<user_state>;

user_repository_actor::behavior_type user_fun(user_impl self,
                                              repository_deps deps) {
  self->state.deps = std::move(deps);
  return {
    [=](me_atom, read_options ro) -> caf::result<user_result> {
      return cached_get<user, user_result>(self, self->state.deps,
                                           "/users/me", ro);
    },
    [=](prefs_atom, const user_preferences& p) -> caf::result<queue_entry> {
      if (p.values.empty())
        return invalid("preferences", "nothing to update");
      if (p.values.size() > 64)
        return invalid("preferences", "at most 64 keys");
      for (auto& [k, v] : p.values)
        if (k.empty() || k.size() > 128)
          return invalid("preferences", "keys are 1-128 characters");
        else if (v.kind == pref_kind::number && !std::isfinite(v.number))
          return invalid("preferences",
                         "numbers must be finite (no infinity or NaN)");
      queued_command cmd;
      cmd.kind = command_kind::update_preferences;
      cmd.lane = "user";
      cmd.method = "PUT";
      cmd.path = "/users/me/preferences";
      cmd.body = encode_preferences_update_body(p);
      cmd.timeout = self->state.deps.request_timeout;
      auto rp = self->make_response_promise<queue_entry>();
      self->request(self->state.deps.queue, cmd.timeout + answer_grace,
                    enqueue_atom_v, cmd)
        .then([=](const queue_entry& e) mutable { rp.deliver(e); },
              [=](caf::error& err) mutable {
                rp.deliver(enqueue_error(std::move(err), "the preferences"));
              });
      return rp;
    },
    [=](family_atom, read_options ro) -> caf::result<family_result> {
      return cached_get<family, family_result>(self, self->state.deps,
                                               "/users/me/family", ro);
    },
    [=](queue_atom, const queue_update& u) {
      if (u.entry.kind != command_kind::update_preferences
          || u.status != queue_status::sent)
        return;
      // the cached user is out of date now
      self->request(self->state.deps.tokens, std::chrono::seconds(5),
                    session_atom_v)
        .then(
          [=](const session_info& s) {
            self
              ->request(self->state.deps.cache, std::chrono::seconds(5),
                        invalidate_atom_v, s.user_id,
                        std::string{"GET /users/me"})
              .then([](size_t) {}, [](caf::error&) {});
          },
          [=](caf::error&) {});
    },
  };
}

// -- system --------------------------------------------------------------------------

struct system_state {
  static constexpr const char* name = "aico.system_repository";
  repository_deps deps;
  system_repository_config cfg;
  std::vector<system_listener_actor> listeners;
  connection_state conn;
  bool have_conn = false;
  bool have_status = false;
  system_status last;
  uint64_t poll_gen = 0;
  bool polling = false;
};

using system_impl = system_repository_actor::stateful_pointer<system_state>;

bool is_up(const connection_state& cs) {
  return cs.state == link_state::connected || cs.state == link_state::degraded;
}

void poll_status(system_impl self) {
  auto& st = self->state;
  if (st.listeners.empty() || !is_up(st.conn) || st.polling)
    return;
  st.polling = true;
  auto gen = ++st.poll_gen;
  api_call c{random_id("s-"), "GET", "/system/status", "", ""};
  self
    ->request(st.deps.api, st.deps.request_timeout + std::chrono::seconds(2),
              request_atom_v, c, st.deps.request_timeout, true)
    .then(
      [=](const api_reply& r) {
        auto& st = self->state;
        st.polling = false;
        auto s = decode_reply<system_status>(r.status, r.body);
        if (s) {
          // timestamp and uptime change on every poll: publish real changes
          bool changed = !st.have_status || s->is_healthy != st.last.is_healthy
                         || s->services != st.last.services
                         || s->version != st.last.version;
          st.last = *s;
          st.have_status = true;
          if (changed)
            for (auto& l : st.listeners)
              self->send(l, status_atom_v, *s);
        }
        self->delayed_send(self, st.cfg.status_interval, tick_atom_v, gen);
      },
      [=](caf::error&) {
        auto& st = self->state;
        st.polling = false;
        self->delayed_send(self, st.cfg.status_interval, tick_atom_v, gen);
      });
}

system_repository_actor::behavior_type
system_fun(system_impl self, repository_deps deps,
           system_repository_config cfg) {
  self->state.deps = std::move(deps);
  self->state.cfg = cfg;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& ls = self->state.listeners;
    ls.erase(std::remove_if(ls.begin(), ls.end(),
                            [&](const system_listener_actor& l) {
                              return l.address() == dm.source;
                            }),
             ls.end());
  });
  return {
    [=](health_atom, read_options ro) -> caf::result<health_result> {
      return cached_get<system_health, health_result>(
        self, self->state.deps, "/health", ro, false);
    },
    [=](status_atom) -> caf::result<system_status> {
      return direct_call<system_status>(self, self->state.deps, "GET",
                                        "/system/status", "");
    },
    [=](update_atom) -> caf::result<update_ticket> {
      return direct_call<update_ticket>(self, self->state.deps, "POST",
                                        "/system/update", "");
    },
    [=](watch_atom, system_listener_actor l) {
      auto& st = self->state;
      self->monitor(l);
      st.listeners.push_back(l);
      if (st.have_conn)
        self->send(l, state_atom_v, st.conn);
      if (st.have_status)
        self->send(l, status_atom_v, st.last);
      poll_status(self);
    },
    [=](state_atom, const connection_state& cs) {
      auto& st = self->state;
      bool was_up = st.have_conn && is_up(st.conn);
      st.conn = cs;
      st.have_conn = true;
      for (auto& l : st.listeners)
        self->send(l, state_atom_v, cs);
      if (!was_up && is_up(cs))
        poll_status(self);
    },
    [=](event_atom, const server_event& ev) {
      if (ev.topic != "system.update")
        return;
      auto u = decode_system_update_event(ev.data);
      if (!u)
        return;
      for (auto& l : self->state.listeners)
        self->send(l, update_atom_v, *u);
    },
    [=](tick_atom, uint64_t gen) {
      if (gen == self->state.poll_gen)
        poll_status(self);
    },
  };
}

} // namespace

chat_repository_actor spawn_chat_repository(caf::actor_system& sys,
                                            repository_deps deps) {
  return sys.spawn(chat_fun, std::move(deps));
}

user_repository_actor spawn_user_repository(caf::actor_system& sys,
                                            repository_deps deps) {
  return sys.spawn(user_fun, std::move(deps));
}

system_repository_actor
spawn_system_repository(caf::actor_system& sys, repository_deps deps,
                        system_repository_config cfg) {
  return sys.spawn(system_fun, std::move(deps), cfg);
}

} // namespace aico
