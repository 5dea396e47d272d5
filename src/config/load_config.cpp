// aico engine: engine_config from JSON and the environment (see
// load_config.hpp and docs/configuration.md).
#include "src/config/load_config.hpp"

#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>

#include <boost/json.hpp>

#include "messages/errors.hpp"

extern char** environ;

namespace aico {

namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

caf::error bad(const std::string& key, const std::string& what) {
  return make_engine_error(error_class::validation,
                           "config: " + key + ": " + what, 0, "bad_config");
}

using setter = std::function<caf::error(const json::value&, const std::string&)>;
using table = std::vector<std::pair<std::string, setter>>;

caf::error walk(const json::value& v, const std::string& prefix,
                const table& t) {
  if (!v.is_object())
    return bad(prefix.empty() ? "<top>" : prefix, "expected an object");
  for (auto& kv : v.as_object()) {
    std::string key{kv.key()};
    auto full = prefix.empty() ? key : prefix + "." + key;
    auto i = std::find_if(t.begin(), t.end(),
                          [&](auto& p) { return p.first == key; });
    if (i == t.end())
      return bad(full, "unknown key");
    if (auto err = i->second(kv.value(), full))
      return err;
  }
  return {};
}

// -- typed setters -------------------------------------------------------------

setter str(std::string& out) {
  return [&out](const json::value& v, const std::string& k) -> caf::error {
    if (!v.is_string())
      return bad(k, "expected a string");
    out = std::string{v.as_string()};
    return {};
  };
}

template <class Int>
setter integer(Int& out, int64_t min, int64_t max) {
  return [&out, min, max](const json::value& v,
                          const std::string& k) -> caf::error {
    int64_t x = 0;
    if (v.is_int64())
      x = v.as_int64();
    else if (v.is_uint64() && v.as_uint64() <= uint64_t(INT64_MAX))
      x = static_cast<int64_t>(v.as_uint64());
    else
      return bad(k, "expected an integer");
    if (x < min || x > max)
      return bad(k, "expected an integer in [" + std::to_string(min) + ", "
                      + std::to_string(max) + "], got " + std::to_string(x));
    out = static_cast<Int>(x);
    return {};
  };
}

setter number(double& out, double min, double max) {
  return [&out, min, max](const json::value& v,
                          const std::string& k) -> caf::error {
    if (!v.is_number())
      return bad(k, "expected a number");
    auto x = v.to_number<double>();
    if (x < min || x > max)
      return bad(k, "expected a number in [" + std::to_string(min) + ", "
                      + std::to_string(max) + "]");
    out = x;
    return {};
  };
}

setter boolean(bool& out) {
  return [&out](const json::value& v, const std::string& k) -> caf::error {
    if (!v.is_bool())
      return bad(k, "expected true or false");
    out = v.as_bool();
    return {};
  };
}

constexpr int64_t max_ms = 24LL * 3600 * 1000; // one day

template <class Duration>
setter millis(Duration& out, int64_t min = 1) {
  return [&out, min](const json::value& v,
                     const std::string& k) -> caf::error {
    int64_t ms = 0;
    if (auto err = integer(ms, min, max_ms)(v, k))
      return err;
    out = std::chrono::duration_cast<Duration>(std::chrono::milliseconds{ms});
    return {};
  };
}

setter backoff_of(backoff_options& b) {
  return [&b](const json::value& v, const std::string& k) {
    return walk(v, k,
                {{"initial_ms", millis(b.initial)},
                 {"multiplier", number(b.multiplier, 1.0, 100.0)},
                 {"jitter", number(b.jitter, 0.0, 1.0)},
                 {"max_ms", millis(b.max)}});
  };
}

caf::error parse_transports(const std::vector<std::string>& names,
                            const std::string& k,
                            std::vector<transport_mode>& out) {
  std::vector<transport_mode> res;
  for (auto& n : names) {
    transport_mode m;
    if (!from_string(n, m))
      return bad(k, "unknown transport '" + n + "' (use ipc, ws, http)");
    if (std::find(res.begin(), res.end(), m) == res.end())
      res.push_back(m);
  }
  if (res.empty())
    return bad(k, "expected at least one transport");
  out = std::move(res);
  return {};
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> res;
  std::stringstream ss{s};
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty())
      res.push_back(item);
  }
  return res;
}

setter transports(std::vector<transport_mode>& out) {
  return [&out](const json::value& v, const std::string& k) -> caf::error {
    std::vector<std::string> names;
    if (v.is_string()) {
      names = split_list(std::string{v.as_string()});
    } else if (v.is_array()) {
      for (auto& x : v.as_array()) {
        if (!x.is_string())
          return bad(k, "expected an array of strings");
        names.emplace_back(x.as_string());
      }
    } else {
      return bad(k, "expected an array like [\"ipc\", \"ws\", \"http\"]");
    }
    return parse_transports(names, k, out);
  };
}

caf::error check_url(const std::string& url, const std::string& k) {
  if (url.rfind("http://", 0) != 0 || url.size() <= 7)
    return bad(k, "expected an http:// URL, got '" + url + "'");
  return {};
}

std::string trim_slashes(std::string url) {
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  return url;
}

// Top-level keys that feed several sub-configs.
struct top_level {
  std::string url;
  std::string ws_url;
};

caf::error set_url(engine_config& cfg, const std::string& raw,
                   const std::string& k) {
  auto url = trim_slashes(raw);
  if (auto err = check_url(url, k))
    return err;
  cfg.connection.http.base_url = url;
  cfg.connection.ws.url = "ws://" + url.substr(7) + "/api/v1/ws";
  return {};
}

} // namespace

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> res;
  for (char** e = environ; e && *e; ++e) {
    std::string kv{*e};
    auto eq = kv.find('=');
    if (eq != std::string::npos && kv.compare(0, 5, "AICO_") == 0)
      res.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return res;
}

engine_config default_client_config() {
  engine_config cfg;
  auto& c = cfg.connection;
  c.http.connect_timeout = c.ws.connect_timeout = c.ipc.connect_timeout = 3s;
  c.ws.ping_interval = c.ipc.ping_interval = 5s;
  c.ws.dead_peer_timeout = c.ipc.dead_peer_timeout = 15s;
  c.health_interval = 10s;
  c.backoff = {std::chrono::milliseconds{250}, 1.6, 0.2,
               std::chrono::milliseconds{5000}};
  cfg.shutdown_timeout = 3s;
  return cfg;
}

caf::error apply_config_json(const std::string& text, engine_config& cfg) {
  boost::system::error_code ec;
  json::parse_options po;
  po.allow_comments = true;
  po.allow_trailing_commas = true;
  auto v = json::parse(text, ec, {}, po);
  if (ec)
    return bad("<file>", "not valid JSON: " + ec.message());
  auto& c = cfg.connection;
  std::string url;
  bool have_url = false;
  std::string ws_url;
  setter url_setter = [&](const json::value& x, const std::string& k) {
    if (auto err = str(url)(x, k))
      return err;
    have_url = true;
    return check_url(trim_slashes(url), k);
  };
  // every transport shares these unless given per transport
  caf::timespan connect_timeout{0}, ping_interval{0}, dead_peer{0};
  table conn{
    {"connect_timeout_ms", millis(connect_timeout)},
    {"ping_interval_ms", millis(ping_interval)},
    {"dead_peer_timeout_ms", millis(dead_peer)},
    {"ws_url", str(ws_url)},
    {"http_max_connections", integer(c.http.max_connections, 1, 1024)},
    {"health_interval_ms", millis(c.health_interval)},
    {"health_timeout_ms", millis(c.health_timeout)},
    {"failback_probes", integer(c.failback_probes, 1, 1000)},
    {"max_restarts_per_minute", integer(c.max_restarts_per_minute, 1, 10000)},
    {"backoff", backoff_of(c.backoff)},
  };
  table tokens{
    {"refresh_at_fraction", number(cfg.tokens.refresh_at_fraction, 0.0, 1.0)},
    {"refresh_margin_min_ms", millis(cfg.tokens.refresh_margin_min, 0)},
    {"request_timeout_ms", millis(cfg.tokens.request_timeout)},
  };
  table queue{
    {"limit", integer(cfg.queue.limit, 1, 10'000'000)},
    {"max_in_flight", integer(cfg.queue.max_in_flight, 1, 1024)},
    {"file_name", str(cfg.queue.file_name)},
    {"backoff", backoff_of(cfg.queue.backoff)},
  };
  table cache{
    {"max_entries", integer(cfg.cache.max_entries, 1, 10'000'000)},
    {"file_name", str(cfg.cache.file_name)},
    {"reset_damaged", boolean(cfg.cache.reset_damaged)},
    {"fallback_timeout_ms", millis(cfg.cache.fallback_timeout)},
  };
  auto& br = cfg.resilience.breaker;
  table resilience{
    {"failure_rate_threshold", number(br.failure_rate_threshold, 0.0, 1.0)},
    {"minimum_calls", integer(br.minimum_calls, 1, 100000)},
    {"window_ms", millis(br.window)},
    {"open_wait", backoff_of(br.open_wait)},
    {"health_check_on_open", boolean(cfg.resilience.health_check_on_open)},
  };
  table system{
    {"status_interval_ms", millis(cfg.system.status_interval)},
  };
  auto section = [](const table& t) -> setter {
    return [&t](const json::value& x, const std::string& k) {
      return walk(x, k, t);
    };
  };
  table top{
    {"url", url_setter},
    {"ipc", str(c.ipc.endpoint)},
    {"transports", transports(c.order)},
    {"state_dir", str(cfg.state_dir)},
    {"request_timeout_ms", millis(cfg.request_timeout)},
    {"shutdown_timeout_ms", millis(cfg.shutdown_timeout)},
    {"connection", section(conn)},
    {"tokens", section(tokens)},
    {"queue", section(queue)},
    {"cache", section(cache)},
    {"resilience", section(resilience)},
    {"system", section(system)},
  };
  if (auto err = walk(v, "", top))
    return err;
  if (have_url)
    if (auto err = set_url(cfg, url, "url"))
      return err;
  if (!ws_url.empty()) {
    if (ws_url.rfind("ws://", 0) != 0)
      return bad("connection.ws_url", "expected a ws:// URL");
    c.ws.url = ws_url;
  }
  if (connect_timeout.count() > 0)
    c.http.connect_timeout = c.ws.connect_timeout = c.ipc.connect_timeout
      = connect_timeout;
  if (ping_interval.count() > 0)
    c.ws.ping_interval = c.ipc.ping_interval = ping_interval;
  if (dead_peer.count() > 0)
    c.ws.dead_peer_timeout = c.ipc.dead_peer_timeout = dead_peer;
  return {};
}

caf::error apply_config_env(const std::map<std::string, std::string>& env,
                            engine_config& cfg) {
  auto get = [&](const char* k) -> const std::string* {
    auto i = env.find(k);
    return i == env.end() ? nullptr : &i->second;
  };
  auto ms = [&](const char* k, caf::timespan& out) -> caf::error {
    auto s = get(k);
    if (!s)
      return {};
    int64_t x = 0;
    size_t pos = 0;
    try {
      x = std::stoll(*s, &pos);
    } catch (...) {
      pos = 0;
    }
    if (pos == 0 || pos != s->size() || x < 1 || x > max_ms)
      return bad(k, "expected milliseconds in [1, " + std::to_string(max_ms)
                      + "], got '" + *s + "'");
    out = std::chrono::milliseconds{x};
    return {};
  };
  if (auto s = get("AICO_URL"))
    if (auto err = set_url(cfg, *s, "AICO_URL"))
      return err;
  if (auto s = get("AICO_IPC"))
    cfg.connection.ipc.endpoint = *s;
  if (auto s = get("AICO_TRANSPORTS"))
    if (auto err = parse_transports(split_list(*s), "AICO_TRANSPORTS",
                                    cfg.connection.order))
      return err;
  if (auto s = get("AICO_STATE_DIR"))
    cfg.state_dir = *s;
  if (auto err = ms("AICO_REQUEST_TIMEOUT_MS", cfg.request_timeout))
    return err;
  if (auto err = ms("AICO_SHUTDOWN_TIMEOUT_MS", cfg.shutdown_timeout))
    return err;
  return {};
}

caf::expected<engine_config>
load_config(const std::string& file,
            const std::map<std::string, std::string>& env) {
  auto cfg = default_client_config();
  if (!file.empty()) {
    std::ifstream in{file};
    if (!in)
      return bad("<file>", "cannot read '" + file + "'");
    std::stringstream buf;
    buf << in.rdbuf();
    if (auto err = apply_config_json(buf.str(), cfg)) {
      auto c = classify(err);
      return make_engine_error(error_class::validation,
                               file + ": " + c.message, 0, "bad_config");
    }
  }
  if (auto err = apply_config_env(env, cfg))
    return err;
  // derived values
  auto& order = cfg.connection.order;
  if (cfg.connection.ipc.endpoint.empty()) {
    auto only_ipc = order.size() == 1 && order.front() == transport_mode::ipc;
    if (only_ipc)
      return bad("transports",
                 "only ipc is selected but no ipc endpoint is set");
    order.erase(std::remove(order.begin(), order.end(), transport_mode::ipc),
                order.end());
  }
  if (!cfg.state_dir.empty()) {
    cfg.tokens.state_dir = cfg.state_dir;
    cfg.queue.state_dir = cfg.state_dir;
    cfg.cache.state_dir = cfg.state_dir;
  }
  cfg.tokens.request_timeout
    = std::min(cfg.tokens.request_timeout, cfg.request_timeout);
  return cfg;
}

} // namespace aico
