// aico engine: engine_config from JSON and the environment (see
// load_config.hpp and docs/configuration.md).
#include "src/config/load_config.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include <boost/json.hpp>

#include "actors/transport_registry.hpp"
#include "messages/errors.hpp"
#include "src/core/log_line.hpp"
#include "src/transport/tls_options.hpp"

extern char** environ;

namespace aico {

namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

caf::error bad(const std::string& key, const std::string& what) {
  return make_engine_error(error_class::validation,
                           "config: " + key + ": " + what, 0, "bad_config");
}

caf::error invalid(const std::string& sentence) {
  return make_engine_error(error_class::validation, sentence, 0,
                           "bad_config");
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

caf::error parse_profile(const std::string& name, const std::string& k,
                         wire_profile& out) {
  if (!from_string(name, out))
    return bad(k, "unknown profile '" + name
                    + "' (use gateway, the default, or aico)");
  return {};
}

setter profile(wire_profile& out) {
  return [&out](const json::value& v, const std::string& k) -> caf::error {
    if (!v.is_string())
      return bad(k, "expected \"gateway\" or \"aico\"");
    return parse_profile(std::string{v.as_string()}, k, out);
  };
}

caf::error parse_transports(const std::vector<std::string>& names,
                            const std::string& k,
                            std::vector<transport_mode>& out) {
  std::vector<transport_mode> res;
  for (auto& n : names) {
    // the names are the transport registry's (actors/transport_registry)
    auto entry = find_transport(n);
    if (!entry)
      return bad(k, "unknown transport '" + n + "' (known transports: "
                      + known_transport_names() + ")");
    if (std::find(res.begin(), res.end(), entry->mode) == res.end())
      res.push_back(entry->mode);
  }
  if (res.empty())
    return bad(k, "expected at least one transport");
  out = std::move(res);
  return {};
}

} // namespace

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

namespace {

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
  auto scheme_len = url.rfind("https://", 0) == 0   ? 8
                    : url.rfind("http://", 0) == 0 ? 7
                                                    : 0;
  if (scheme_len == 0)
    return bad(k, "expected an http:// or https:// URL (the gateway's base "
                  "URL, e.g. https://gateway.example:8771), got '"
                    + url + "'");
  if (url.size() <= static_cast<std::size_t>(scheme_len)
      || url[static_cast<std::size_t>(scheme_len)] == '/')
    return bad(k, "the URL '" + url + "' has no host");
  return {};
}

std::string trim_slashes(std::string url) {
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  return url;
}

caf::error set_url(engine_config& cfg, const std::string& raw,
                   const std::string& k) {
  auto url = trim_slashes(raw);
  if (auto err = check_url(url, k))
    return err;
  cfg.connection.http.base_url = url;
  if (url.rfind("https://", 0) == 0)
    cfg.connection.ws.url = "wss://" + url.substr(8) + "/api/v1/ws";
  else
    cfg.connection.ws.url = "ws://" + url.substr(7) + "/api/v1/ws";
  return {};
}

// -- TLS and CURVE settings, checked where they are given (the message names
// the key, flag or variable) --------------------------------------------------

std::string errno_text() {
  return std::strerror(errno);
}

caf::error check_readable_file(const std::string& path, const std::string& k,
                               const char* what) {
  if (path.empty())
    return bad(k, std::string{"expected the path of "} + what
                    + ", got an empty string");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return bad(k, "cannot use '" + path + "' as " + what + ": "
                    + errno_text());
  if (!S_ISREG(st.st_mode))
    return bad(k, "'" + path + "' is not a file (expected " + what + ")");
  if (::access(path.c_str(), R_OK) != 0)
    return bad(k, "cannot read '" + path + "' (" + what + "): "
                    + errno_text());
  return {};
}

caf::error check_dir(const std::string& path, const std::string& k) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return bad(k, "'" + path + "' is not a directory (expected a directory "
                  "of CA certificates in OpenSSL's hashed layout)");
  return {};
}

caf::error check_pin(const std::string& pin, const std::string& k) {
  if (!transport::valid_pin_list(pin))
    return bad(k, "expected sha256//BASE64 (the SHA-256 of the gateway's "
                  "public key, 44 base64 characters; several separated by "
                  "';'), got '" + pin + "'");
  return {};
}

caf::error check_server_key(const std::string& key, const std::string& k) {
  if (!valid_z85_key(key))
    return bad(k, "expected the gateway's CURVE public key (40 Z85 "
                  "characters, as in its DATA_DIR/ipc-curve.pub), got '"
                    + key + "'");
  return {};
}

caf::error read_server_key_file(const std::string& path,
                                const std::string& k, std::string& out) {
  if (auto err = check_readable_file(path, k, "the gateway's CURVE public "
                                              "key file"))
    return err;
  std::ifstream in{path};
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
    line.pop_back();
  if (!valid_z85_key(line))
    return bad(k, "'" + path + "' does not hold a CURVE public key (40 Z85 "
                  "characters on the first line)");
  out = line;
  return {};
}

/// One TLS/CURVE value: checked, then stored into both transports.
struct security_setters {
  engine_config& cfg;

  caf::error ca_file(const std::string& v, const std::string& k) {
    if (auto err = check_readable_file(v, k, "a CA certificate file (PEM)"))
      return err;
    for_each_tls(cfg.connection, [&](auto& t) { t.ca_file = v; });
    return {};
  }
  caf::error ca_dir(const std::string& v, const std::string& k) {
    if (auto err = check_dir(v, k))
      return err;
    for_each_tls(cfg.connection, [&](auto& t) { t.ca_dir = v; });
    return {};
  }
  caf::error pin(const std::string& v, const std::string& k) {
    if (auto err = check_pin(v, k))
      return err;
    for_each_tls(cfg.connection, [&](auto& t) { t.pinned_public_key = v; });
    return {};
  }
  caf::error client_cert(const std::string& v, const std::string& k) {
    if (auto err = check_readable_file(v, k, "a client certificate (PEM)"))
      return err;
    for_each_tls(cfg.connection, [&](auto& t) { t.client_cert = v; });
    return {};
  }
  caf::error client_key(const std::string& v, const std::string& k) {
    if (auto err = check_readable_file(v, k, "a client private key (PEM)"))
      return err;
    for_each_tls(cfg.connection, [&](auto& t) { t.client_key = v; });
    return {};
  }
  caf::error insecure(bool v) {
    for_each_tls(cfg.connection,
                 [&](auto& t) { t.insecure_skip_verify = v; });
    return {};
  }
  caf::error server_key(const std::string& v, const std::string& k) {
    if (auto err = check_server_key(v, k))
      return err;
    cfg.connection.ipc.curve_server_key = v;
    return {};
  }
  caf::error server_key_file(const std::string& v, const std::string& k) {
    return read_server_key_file(v, k, cfg.connection.ipc.curve_server_key);
  }
  caf::error client_key_file(const std::string& v, const std::string& k) {
    if (v.empty())
      return bad(k, "expected the path of this client's CURVE key file, got "
                    "an empty string");
    cfg.connection.ipc.curve_key_file = v;
    return {};
  }
};

using string_op
  = caf::error (security_setters::*)(const std::string&, const std::string&);

setter via(security_setters& s, string_op op) {
  return [&s, op](const json::value& v, const std::string& k) -> caf::error {
    if (!v.is_string())
      return bad(k, "expected a string");
    return (s.*op)(std::string{v.as_string()}, k);
  };
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
  for_each_transport(c, [](transport_config& t) {
    t.connect_timeout = 3s;
    t.ping_interval = 5s;
    t.dead_peer_timeout = 15s;
  });
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
  security_setters sec{cfg};
  bool insecure = false;
  bool have_insecure = false;
  table tls{
    {"ca_file", via(sec, &security_setters::ca_file)},
    {"ca_dir", via(sec, &security_setters::ca_dir)},
    {"pin", via(sec, &security_setters::pin)},
    {"client_cert", via(sec, &security_setters::client_cert)},
    {"client_key", via(sec, &security_setters::client_key)},
    {"insecure_dev_only",
     [&](const json::value& x, const std::string& k) {
       have_insecure = true;
       return boolean(insecure)(x, k);
     }},
  };
  table curve{
    {"server_key", via(sec, &security_setters::server_key)},
    {"server_key_file", via(sec, &security_setters::server_key_file)},
    {"client_key_file", via(sec, &security_setters::client_key_file)},
  };
  auto section = [](const table& t) -> setter {
    return [&t](const json::value& x, const std::string& k) {
      return walk(x, k, t);
    };
  };
  table top{
    {"profile", profile(cfg.profile)},
    {"url", url_setter},
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
    {"tls", section(tls)},
    {"curve", section(curve)},
  };
  // "ipc", "grpc": the endpoint of each transport configured by one
  // (actors/transport_registry.hpp)
  for (auto& e : transport_registry())
    if (e.endpoint)
      top.emplace_back(e.name, str(e.endpoint->of(c)));
  if (auto err = walk(v, "", top))
    return err;
  if (have_url)
    if (auto err = set_url(cfg, url, "url"))
      return err;
  if (have_insecure)
    sec.insecure(insecure);
  if (!ws_url.empty()) {
    if (ws_url.rfind("ws://", 0) != 0 && ws_url.rfind("wss://", 0) != 0)
      return bad("connection.ws_url", "expected a ws:// or wss:// URL, got '"
                                        + ws_url + "'");
    c.ws.url = ws_url;
  }
  for_each_transport(c, [&](transport_config& t) {
    if (connect_timeout.count() > 0)
      t.connect_timeout = connect_timeout;
    if (ping_interval.count() > 0)
      t.ping_interval = ping_interval;
    if (dead_peer.count() > 0)
      t.dead_peer_timeout = dead_peer;
  });
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
  if (auto s = get("AICO_PROFILE"))
    if (auto err = parse_profile(*s, "AICO_PROFILE", cfg.profile))
      return err;
  if (auto s = get("AICO_URL"))
    if (auto err = set_url(cfg, *s, "AICO_URL"))
      return err;
  for (auto& e : transport_registry()) // AICO_IPC, AICO_GRPC
    if (e.endpoint)
      if (auto s = get(endpoint_variable(e).c_str()))
        e.endpoint->of(cfg.connection) = *s;
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
  security_setters sec{cfg};
  std::pair<const char*, string_op> vars[] = {
    {"AICO_TLS_CA_FILE", &security_setters::ca_file},
    {"AICO_TLS_CA_DIR", &security_setters::ca_dir},
    {"AICO_TLS_PIN", &security_setters::pin},
    {"AICO_TLS_CLIENT_CERT", &security_setters::client_cert},
    {"AICO_TLS_CLIENT_KEY", &security_setters::client_key},
    {"AICO_IPC_SERVER_KEY", &security_setters::server_key},
    {"AICO_IPC_SERVER_KEY_FILE", &security_setters::server_key_file},
    {"AICO_IPC_CLIENT_KEY_FILE", &security_setters::client_key_file},
  };
  for (auto& [name, op] : vars)
    if (auto s = get(name))
      if (auto err = (sec.*op)(*s, name))
        return err;
  if (auto s = get("AICO_TLS_INSECURE_DEV_ONLY")) {
    if (*s == "1" || *s == "true" || *s == "yes")
      sec.insecure(true);
    else if (*s == "0" || *s == "false" || *s == "no" || s->empty())
      sec.insecure(false);
    else
      return bad("AICO_TLS_INSECURE_DEV_ONLY",
                 "expected 1 or 0, got '" + *s + "'");
  }
  return {};
}

namespace {

caf::error apply_flags(const client_flags& f, engine_config& cfg) {
  auto& c = cfg.connection;
  if (f.profile)
    if (auto err = parse_profile(*f.profile, "--profile", cfg.profile))
      return err;
  if (f.url)
    if (auto err = set_url(cfg, *f.url, "--url"))
      return err;
  for (auto& [name, endpoint] : f.endpoints) { // --ipc, --grpc
    auto e = find_transport(name);
    if (!e || !e->endpoint)
      return bad("--" + name, "no transport named '" + name
                                + "' is configured by an endpoint");
    e->endpoint->of(c) = endpoint;
  }
  if (f.transports)
    if (auto err = parse_transports(split_list(*f.transports), "--transports",
                                    c.order))
      return err;
  if (f.state_dir)
    cfg.state_dir = *f.state_dir;
  if (f.timeout_s) {
    auto s = *f.timeout_s;
    if (!(s >= 0.001 && s <= max_ms / 1000.0))
      return bad("--timeout", "expected seconds in [0.001, "
                                + std::to_string(max_ms / 1000) + "]");
    auto t = std::chrono::duration_cast<caf::timespan>(
      std::chrono::duration<double>(s));
    cfg.request_timeout = t;
    cfg.tokens.request_timeout = t;
  }
  security_setters sec{cfg};
  std::pair<const std::optional<std::string>*, std::pair<const char*, string_op>>
    opts[] = {
      {&f.tls_ca_file, {"--tls-ca-file", &security_setters::ca_file}},
      {&f.tls_ca_dir, {"--tls-ca-dir", &security_setters::ca_dir}},
      {&f.tls_pin, {"--tls-pin", &security_setters::pin}},
      {&f.tls_client_cert,
       {"--tls-client-cert", &security_setters::client_cert}},
      {&f.tls_client_key, {"--tls-client-key", &security_setters::client_key}},
      {&f.ipc_server_key, {"--ipc-server-key", &security_setters::server_key}},
      {&f.ipc_server_key_file,
       {"--ipc-server-key-file", &security_setters::server_key_file}},
      {&f.ipc_client_key_file,
       {"--ipc-client-key-file", &security_setters::client_key_file}},
    };
  for (auto& [value, named] : opts)
    if (*value)
      if (auto err = (sec.*named.second)(**value, named.first))
        return err;
  if (f.tls_insecure_dev_only)
    sec.insecure(true);
  return {};
}

/// The WebSocket URL set_url derives from a base URL.
std::string derived_ws_url(const std::string& base) {
  if (base.rfind("https://", 0) == 0)
    return "wss://" + base.substr(8) + "/api/v1/ws";
  if (base.rfind("http://", 0) == 0)
    return "ws://" + base.substr(7) + "/api/v1/ws";
  return {};
}

/// The wire profile's rules (build_client_profile's comment). `order_given`:
/// the transports came from a layer, not from the defaults.
caf::error apply_profile_rules(engine_config& cfg, bool order_given,
                               const std::vector<transport_mode>& defaults,
                               std::vector<std::string>& warnings) {
  auto& c = cfg.connection;
  if (cfg.profile != wire_profile::aico) {
    if (!order_given)
      c.order = defaults;
    return {};
  }
  // the AICO backend has a WebSocket and an HTTP server, no other door
  auto backend_has = [](const transport_entry& e) {
    return e.mode == transport_mode::ws || e.mode == transport_mode::http;
  };
  if (!order_given)
    c.order = {transport_mode::ws, transport_mode::http};
  for (auto& e : transport_registry()) {
    if (backend_has(e))
      continue;
    if (std::find(c.order.begin(), c.order.end(), e.mode) != c.order.end())
      return invalid(std::string{"config: transports: the aico profile "
                                 "cannot use the "}
                     + e.name + " transport, because the AICO backend has no "
                     + e.door + "; use ws and http (e.g. --transports "
                                "ws,http)");
    if (!e.endpoint)
      continue;
    auto& endpoint = e.endpoint->of(c);
    bool given = !endpoint.empty()
                 || (e.mode == transport_mode::ipc
                     && !c.ipc.curve_server_key.empty());
    if (given)
      warnings.push_back(std::string{"the "} + e.title
                         + " settings are not used with the aico profile "
                           "(the AICO backend has no "
                         + e.door + ")");
    endpoint.clear();
  }
  if (c.ws.url == derived_ws_url(c.http.base_url)) {
    // the backend's WebSocket server listens on its own port, any path
    auto base = c.http.base_url;
    bool tls = base.rfind("https://", 0) == 0;
    auto host = url_host(base);
    if (host.find(':') != std::string::npos)
      host = "[" + host + "]";
    c.ws.url = std::string{tls ? "wss://" : "ws://"} + host + ":8772";
  }
  return {};
}

caf::error finalize(engine_config& cfg, std::vector<std::string>& warnings) {
  auto& c = cfg.connection;
  auto& order = c.order;
  auto uses = [&](transport_mode m) {
    return std::find(order.begin(), order.end(), m) != order.end();
  };
  // -- TLS --------------------------------------------------------------------
  auto& tls = c.http.tls; // the same in c.ws.tls
  if (tls.client_cert.empty() != tls.client_key.empty())
    return invalid("config: tls: a client certificate needs its private key "
                   "and vice versa (--tls-client-cert with --tls-client-key, "
                   "tls.client_cert with tls.client_key, "
                   "AICO_TLS_CLIENT_CERT with AICO_TLS_CLIENT_KEY)");
  if (!tls.client_key.empty()) {
    struct stat st {};
    if (::stat(tls.client_key.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      warnings.push_back("the TLS client key '" + tls.client_key
                         + "' can be read by other users (chmod 600 it)");
  }
  bool https = c.http.base_url.rfind("https://", 0) == 0;
  bool wss = c.ws.url.rfind("wss://", 0) == 0;
  bool tls_used = (https && uses(transport_mode::http))
                  || (wss && uses(transport_mode::ws));
  for (auto& e : transport_registry()) // grpcs://
    if (e.endpoint && e.endpoint->uses_tls && uses(e.mode)
        && e.endpoint->uses_tls(c))
      tls_used = true;
  if (tls.insecure_skip_verify)
    warnings.push_back("TLS certificate verification is OFF "
                       "(--tls-insecure-dev-only): anyone on the path can "
                       "impersonate the gateway; use this for development "
                       "only");
  bool tls_given = !tls.ca_file.empty() || !tls.ca_dir.empty()
                   || !tls.pinned_public_key.empty()
                   || !tls.client_cert.empty();
  if (tls_given && !tls_used)
    warnings.push_back("TLS options are set but no transport in use has an "
                       "https:// or wss:// URL: they are not used");
  if (uses(transport_mode::http) && !https
      && !is_loopback_url(c.http.base_url))
    warnings.push_back("the connection to " + c.http.base_url
                       + " is not encrypted (http://): passwords, tokens "
                         "and messages cross the network in clear text; "
                         "use https://");
  else if (uses(transport_mode::ws) && !wss && !is_loopback_url(c.ws.url))
    warnings.push_back("the connection to " + c.ws.url
                       + " is not encrypted (ws://): passwords, tokens and "
                         "messages cross the network in clear text; use "
                         "wss://");
  // -- endpoints (ipc, grpc: the registry's checks) ----------------------------
  for (auto& e : transport_registry())
    if (e.endpoint && uses(e.mode) && !e.endpoint->of(c).empty())
      if (auto why = e.endpoint->check(c); !why.empty())
        return invalid(std::string{"config: "} + e.name + ": " + why);
  auto& ipc = c.ipc;
  if (!ipc.curve_server_key.empty() && ipc.curve_key_file.empty()
      && ipc.curve_public_key.empty() && !cfg.state_dir.empty())
    ipc.curve_key_file = cfg.state_dir + "/ipc-client.key";
  // a transport without its endpoint is dropped from the order
  for (auto& e : transport_registry()) {
    if (!e.endpoint || !e.endpoint->of(c).empty() || !uses(e.mode))
      continue;
    order.erase(std::remove(order.begin(), order.end(), e.mode), order.end());
    if (order.empty())
      return bad("transports", std::string{"no transport left to use: "}
                                 + e.title + " needs an endpoint (--" + e.name
                                 + ", " + endpoint_variable(e) + " or \""
                                 + e.name + "\" in the config file)");
  }
  if (!cfg.state_dir.empty())
    set_state_dir(cfg, cfg.state_dir);
  auto t = cfg.request_timeout;
  cfg.tokens.request_timeout = std::min(cfg.tokens.request_timeout, t);
  for_each_transport(c, [t](transport_config& x) {
    x.connect_timeout = std::min(x.connect_timeout, t);
  });
  return {};
}

} // namespace

bool valid_z85_key(const std::string& key) {
  static constexpr std::string_view alphabet
    = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
      ".-:+=^!/*?&<>()[]{}@%$#";
  if (key.size() != 40)
    return false;
  for (auto ch : key)
    if (alphabet.find(ch) == std::string_view::npos)
      return false;
  return true;
}

void set_state_dir(engine_config& cfg, const std::string& dir) {
  cfg.state_dir = dir;
  cfg.tokens.state_dir = dir;
  cfg.queue.state_dir = dir;
  cfg.cache.state_dir = dir;
}

caf::expected<client_profile>
build_client_profile(const client_profile_inputs& in) {
  client_profile res;
  auto& cfg = res.config;
  cfg = in.defaults;
  // the transports' default depends on the profile: empty = not given
  auto default_order = cfg.connection.order;
  cfg.connection.order.clear();
  auto file = in.config_file;
  if (file.empty())
    if (auto i = in.env.find("AICO_CONFIG"); i != in.env.end())
      file = i->second;
  if (!file.empty()) {
    std::ifstream in_file{file};
    if (!in_file)
      return bad("<file>", "cannot read the config file '" + file + "'");
    std::stringstream buf;
    buf << in_file.rdbuf();
    if (auto err = apply_config_json(buf.str(), cfg)) {
      auto c = classify(err);
      return invalid(file + ": " + c.message);
    }
  }
  if (auto err = apply_config_env(in.env, cfg))
    return err;
  if (auto err = apply_flags(in.flags, cfg))
    return err;
  if (auto err = apply_profile_rules(cfg, !cfg.connection.order.empty(),
                                     default_order, res.warnings))
    return err;
  if (auto err = finalize(cfg, res.warnings))
    return err;
  return res;
}

caf::expected<engine_config>
load_config(const std::string& file,
            const std::map<std::string, std::string>& env) {
  client_profile_inputs in;
  in.config_file = file;
  in.env = env;
  auto p = build_client_profile(in);
  if (!p)
    return p.error();
  for (auto& w : p->warnings)
    log_line("aico: warning: " + w);
  return std::move(p->config);
}

} // namespace aico
