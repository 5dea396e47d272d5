// aico engine: aico::client_config -> engine_config (the explicit fields
// become the AICO_* variables of the same meaning, so they go through the
// one loader, src/config/load_config.cpp, and its validation).
#include "src/facade/public_config.hpp"

#include "aico/client.hpp" // library_version

#include <string>

#include "src/config/load_config.hpp"

namespace aico {

namespace {

std::string join(const std::vector<std::string>& xs) {
  std::string res;
  for (auto& x : xs) {
    if (!res.empty())
      res += ',';
    res += x;
  }
  return res;
}

/// "config: AICO_URL: ..." -> "config: url: ..." for a key the host set as
/// a field.
caf::error rename_key(const caf::error& err, const char* env_key,
                      const char* field) {
  auto c = classify(err);
  auto key = std::string{env_key} + ":";
  auto pos = c.message.find(key);
  if (pos == std::string::npos)
    return err;
  auto msg = c.message;
  msg.replace(pos, key.size(), std::string{field} + ":");
  return make_engine_error(c.cls, std::move(msg), c.status, c.code,
                           c.retry_after_ms);
}

} // namespace

caf::expected<engine_config> to_engine_config(const client_config& cc) {
  struct field {
    const char* env_key;
    const char* name;
    std::string value;
  };
  std::vector<field> fields;
  auto ms = [](std::chrono::milliseconds x) {
    return std::to_string(x.count());
  };
  if (!cc.url.empty())
    fields.push_back({"AICO_URL", "url", cc.url});
  if (!cc.ipc.empty())
    fields.push_back({"AICO_IPC", "ipc", cc.ipc});
  if (!cc.transports.empty())
    fields.push_back({"AICO_TRANSPORTS", "transports", join(cc.transports)});
  if (!cc.state_dir.empty())
    fields.push_back({"AICO_STATE_DIR", "state_dir", cc.state_dir});
  if (cc.request_timeout.count() != 0)
    fields.push_back({"AICO_REQUEST_TIMEOUT_MS", "request_timeout",
                      ms(cc.request_timeout)});
  if (cc.shutdown_timeout.count() != 0)
    fields.push_back({"AICO_SHUTDOWN_TIMEOUT_MS", "shutdown_timeout",
                      ms(cc.shutdown_timeout)});
  // an explicit field replaces the variable of the same meaning (and an
  // error about it names the field)
  auto env = cc.env;
  for (auto& f : fields)
    env[f.env_key] = f.value;
  auto res = load_config(cc.file, env);
  if (!res) {
    auto err = res.error();
    for (auto& f : fields)
      err = rename_key(err, f.env_key, f.name);
    return err;
  }
  return res;
}

client_error to_client_error(const caf::error& err) {
  return client_error{classify(err), describe(err)};
}

engine_config engine_config_or_throw(const client_config& cfg) {
  auto res = to_engine_config(cfg);
  if (!res)
    throw to_client_error(res.error());
  return std::move(*res);
}

const char* library_version() noexcept {
  return AICO_CLIENT_VERSION;
}

// -- client_config ----------------------------------------------------------------

client_config client_config::load(const std::string& file) {
  return load(file, process_environment());
}

client_config client_config::load(const std::string& file,
                                  std::map<std::string, std::string> env) {
  client_config res;
  res.file = file;
  res.env = std::move(env);
  res.check();
  return res;
}

std::map<std::string, std::string> client_config::process_environment() {
  return ::aico::process_environment();
}

void client_config::check() const {
  engine_config_or_throw(*this);
}

} // namespace aico
