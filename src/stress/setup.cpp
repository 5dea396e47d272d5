#include "src/stress/setup.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <unordered_map>

#include "actors/transport_registry.hpp"
#include "messages/errors.hpp"
#include "src/stress/http_client.hpp"
#include "src/stress/load.hpp"
#include "src/stress/plot.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace aico::stress {

namespace {

volatile std::sig_atomic_t interrupted_flag = 0;

void on_signal(int) {
  interrupted_flag = 1;
}

/// Every stored message id of a conversation (ascending seq), by REST with
/// the user's token; false on failure.
bool fetch_conversation(const std::string& base, const std::string& token,
                        const std::string& conv, const std::string& sender,
                        std::vector<std::string>& ids, std::string& err) {
  uint64_t since = 0;
  for (int page = 0; page < 10000; ++page) {
    http_result r;
    for (int attempt = 0; attempt < 5; ++attempt) {
      r = http_call("GET",
                    base + "/api/v1/conversations/" + conv
                      + "/messages?since=" + std::to_string(since)
                      + "&limit=500",
                    "", token, 10s);
      if (r.status == 200)
        break;
      std::this_thread::sleep_for(300ms);
    }
    if (r.status != 200 || !r.body.is_object()) {
      err = conv + ": HTTP " + std::to_string(r.status) + " " + r.error;
      return false;
    }
    auto d = r.body.get_object().if_contains("data");
    if (!d || !d->is_object()) {
      err = conv + ": no data";
      return false;
    }
    auto& data = d->get_object();
    if (auto ms = data.if_contains("messages"); ms && ms->is_array())
      for (auto& m : ms->get_array()) {
        if (!m.is_object())
          continue;
        auto& mo = m.get_object();
        auto s = mo.if_contains("sender");
        if (s && s->is_string() && s->get_string() != sender)
          continue; // the bot's replies
        if (auto id = mo.if_contains("id"); id && id->is_string())
          ids.emplace_back(id->get_string());
      }
    bool more = false;
    if (auto hm = data.if_contains("has_more"); hm && hm->is_bool())
      more = hm->get_bool();
    if (auto ns = data.if_contains("next_since"); ns && ns->is_number())
      since = ns->to_number<uint64_t>();
    if (!more)
      return true;
  }
  err = conv + ": too many pages";
  return false;
}

} // namespace

bool interrupted() {
  return interrupted_flag != 0;
}

void install_signal_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
}

int scheduler_threads(const options& o) {
  return o.threads > 0 ? o.threads
                       : static_cast<int>(
                         std::max(2u, std::thread::hardware_concurrency()));
}

bool parse_host_port(const std::string& text, std::string& host,
                     uint16_t& port) {
  auto c = text.rfind(':');
  if (c == std::string::npos || c == 0 || c + 1 == text.size())
    return false;
  auto h = text.substr(0, c);
  auto p = text.substr(c + 1);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return false;
  auto v = std::stoul(p);
  if (v > 65535)
    return false;
  host = h;
  port = static_cast<uint16_t>(v);
  return true;
}

temp_root::~temp_root() {
  if (!path.empty() && !keep) {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
}

bool temp_root::create() {
  std::string base = "/tmp";
  if (auto env = std::getenv("TMPDIR"); env && std::strlen(env) < 40)
    base = env;
  std::string tmpl = base + "/aico-stress-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data()))
    return false;
  path = buf.data();
  return true;
}

namespace {

/// The doors on a port of their own (grpc) a self-started gateway opens
/// with `--NAME 127.0.0.1:0`: those of the transports configured by an
/// endpoint, except ipc (the gateway's IPC path is always open), that
/// --transports or --faults name.
std::vector<std::string> port_doors(const options& o, const gateway_setup& g) {
  std::vector<std::string> res;
  auto names = split_list(o.transports);
  for (auto& e : transport_registry()) {
    if (!e.endpoint || e.mode == transport_mode::ipc)
      continue;
    if (std::find(names.begin(), names.end(), e.name) != names.end()
        || g.faults.switches_door(e.name))
      res.emplace_back(e.name);
  }
  return res;
}

} // namespace

bool aico_profile(const options& o) {
  if (o.client.profile)
    return *o.client.profile == "aico";
  const char* env = std::getenv("AICO_PROFILE");
  return env && std::string{env} == "aico";
}

int validate_gateway_options(options& o, gateway_setup& g) {
  std::string err;
  if ((!o.peer_faults.empty() || o.peer_ws_flap > 0) && !aico_profile(o)) {
    std::cerr << "aico-stress: --peer-fault and --peer-ws-flap need --profile "
                 "aico (use --faults with the gateway)"
              << std::endl;
    return 2;
  }
  if (aico_profile(o)) {
    // what the aico run supports today (docs/performance.md, Stress)
    const char* why = nullptr;
    if (!o.faults.empty())
      why = "--faults is not supported with the aico profile (the fault "
            "schedule drives the reference gateway's /admin/faults)";
    else if (!o.url.empty())
      why = "--url is not supported with the aico profile: aico-stress "
            "starts its own aico-backend-peer (the integrity check reads its "
            "store)";
    else if (o.controller || o.worker)
      why = "the distributed mode is not supported with the aico profile";
    if (why) {
      std::cerr << "aico-stress: " << why << std::endl;
      return 2;
    }
    if (o.peer_ws_flap < 0) {
      std::cerr << "aico-stress: --peer-ws-flap: seconds must be positive"
                << std::endl;
      return 2;
    }
    for (auto& rule : o.peer_faults) {
      boost::system::error_code ec;
      auto v = boost::json::parse(rule, ec);
      if (ec || !v.is_object() || !v.as_object().contains("fault")) {
        std::cerr << "aico-stress: --peer-fault: expected a JSON object with "
                     "\"fault\" (docs/profiles.md, test-only routes), got '"
                  << rule << "'" << std::endl;
        return 2;
      }
    }
    bool pin = o.password.size() >= 4 && o.password.size() <= 8;
    for (char c : o.password)
      pin = pin && c >= '0' && c <= '9';
    if (!pin) {
      std::cerr << "aico-stress: with the aico profile the password is the "
                   "users' PIN: 4 to 8 digits (--password 1234)"
                << std::endl;
      return 2;
    }
  }
  if (!o.faults.empty()) {
    auto text = o.faults;
    if (text[0] == '@') {
      std::ifstream in{text.substr(1)};
      if (!in) {
        std::cerr << "aico-stress: --faults: cannot read " << text.substr(1)
                  << std::endl;
        return 2;
      }
      std::stringstream buf;
      buf << in.rdbuf();
      text = buf.str();
    }
    if (!parse_fault_schedule(text, g.faults, err)) {
      std::cerr << "aico-stress: --faults: " << err << std::endl;
      return 2;
    }
  }
  if (!o.url.empty())
    while (o.url.size() > 7 && o.url.back() == '/')
      o.url.pop_back();
  bool self_started = o.start_gateway || o.url.empty();
  if (!self_started && !is_loopback_url(o.url)) {
    std::cerr << "aico-stress: --url must be a loopback http:// or https:// "
                 "URL (got '" << o.url << "')"
              << std::endl;
    return 2;
  }
  {
    // The client profile as the engines will get it: TLS/CURVE options are
    // checked here, once, and the REST calls use the same TLS settings.
    client_profile_inputs in;
    in.env = process_environment();
    in.flags = o.client;
    if (!self_started)
      in.flags.url = o.url;
    if (self_started)
      for (auto& door : port_doors(o, g))
        if (in.flags.endpoints.count(door) == 0)
          in.flags.endpoints[door] = "127.0.0.1:1"; // the gateway's, later
    in.flags.transports = o.transports;
    auto prof = build_client_profile(in);
    if (!prof) {
      std::cerr << "aico-stress: " << classify(prof.error()).message
                << std::endl;
      return 2;
    }
    for (auto& w : prof->warnings)
      std::cerr << "aico-stress: warning: " << w << std::endl;
    set_rest_tls(prof->config.connection.http.tls);
  }
  if (g.faults.has_kill() && !self_started) {
    std::cerr << "aico-stress: --faults: 'kill' needs a gateway started by "
                 "aico-stress (no --url)"
              << std::endl;
    return 2;
  }
  if (!g.faults.empty() && !self_started
      && o.admin.find(':') == std::string::npos) {
    std::cerr << "aico-stress: --faults with --url needs --admin USER:PASSWORD"
              << std::endl;
    return 2;
  }
  if (auto c = o.admin.find(':'); c != std::string::npos) {
    g.admin_user = o.admin.substr(0, c);
    g.admin_pw = o.admin.substr(c + 1);
  }
  g.url = o.url;
  g.endpoints = o.client.endpoints;
  return 0;
}

namespace {

/// The aico profile's run: aico-backend-peer with the stress users (UUID,
/// PIN) in a private file, its test-only routes on (the integrity check
/// reads /_peer/messages), a quick fake model without thinking chunks.
int start_aico_peer(const options& o, const temp_root& root,
                    gateway_setup& g) {
  fs::create_directories(root.path + "/peer");
  auto users_file = root.path + "/peer-users";
  {
    ::unlink(users_file.c_str());
    int fd = ::open(users_file.c_str(),
                    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      std::cerr << "aico-stress: cannot write " << users_file << std::endl;
      return 1;
    }
    std::string text;
    for (int i = 0; i < o.users; ++i)
      text += aico_user_uuid(i) + ":" + o.password + ":Stress "
              + std::to_string(i + 1) + "\n";
    auto n = ::write(fd, text.data(), text.size());
    ::close(fd);
    if (n != static_cast<ssize_t>(text.size())) {
      std::cerr << "aico-stress: cannot write " << users_file << std::endl;
      return 1;
    }
  }
  std::vector<std::string> args{"--enable-faults", "--users-file", users_file,
                                "--model-delay-ms", "1", "--thinking-chunks",
                                "0", "--ws-max-connections", "100000"};
  if (o.access_ttl > 0) {
    args.push_back("--access-ttl");
    args.push_back(std::to_string(o.access_ttl));
  }
  auto bin = o.gateway_bin.empty() ? find_peer_binary() : o.gateway_bin;
  g.gw = std::make_unique<gateway_launcher>(bin, root.path + "/peer", args);
  g.gw->set_aico_peer();
  if (!g.gw->start()) {
    std::cerr << "aico-stress: " << g.gw->last_error() << std::endl;
    return 1;
  }
  g.url = g.gw->http_url();
  g.ws_url = g.gw->ws_url();
  for (auto& rule : o.peer_faults) {
    auto r = http_call("POST", g.url + "/_peer/faults", rule, "");
    if (r.status != 200) {
      std::cerr << "aico-stress: --peer-fault " << rule << ": the peer said "
                << (r.status == 0 ? r.error : "HTTP " + std::to_string(r.status))
                << std::endl;
      return 2;
    }
  }
  return 0;
}

} // namespace

int start_gateway(const options& o, const temp_root& root, gateway_setup& g) {
  if (aico_profile(o))
    return start_aico_peer(o, root, g);
  bool self_started = o.start_gateway || o.url.empty();
  if (!self_started)
    return 0;
  if (g.admin_pw.empty()) {
    std::random_device rd;
    g.admin_pw = "adm-" + std::to_string(rd()) + std::to_string(rd());
  }
  // The users go to the gateway in a private file, not on its command line.
  fs::create_directories(root.path + "/gateway");
  auto users_file = root.path + "/gateway-users";
  {
    ::unlink(users_file.c_str());
    int fd = ::open(users_file.c_str(),
                    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      std::cerr << "aico-stress: cannot write " << users_file << std::endl;
      return 1;
    }
    std::string text = g.admin_user + ":" + g.admin_pw + ":admin\n";
    for (int i = 0; i < o.users; ++i)
      text += user_name(i) + ":" + o.password + "\n";
    auto n = ::write(fd, text.data(), text.size());
    ::close(fd);
    if (n != static_cast<ssize_t>(text.size())) {
      std::cerr << "aico-stress: cannot write " << users_file << std::endl;
      return 1;
    }
  }
  std::vector<std::string> args{"--enable-faults", "--users-file",
                                users_file};
  if (!o.bot)
    args.push_back("--no-bot");
  if (o.access_ttl > 0) {
    args.push_back("--access-ttl");
    args.push_back(std::to_string(o.access_ttl));
  }
  for (auto& door : port_doors(o, g)) {
    // its port is kept for restarts ('kill' in --faults)
    args.push_back("--" + door);
    args.push_back("127.0.0.1:0");
  }
  fs::create_directories(root.path + "/gateway");
  auto bin = o.gateway_bin.empty() ? find_gateway_binary() : o.gateway_bin;
  g.gw = std::make_unique<gateway_launcher>(bin, root.path + "/gateway", args);
  if (!g.gw->start()) {
    std::cerr << "aico-stress: " << g.gw->last_error() << std::endl;
    return 1;
  }
  g.url = g.gw->http_url();
  g.endpoints = g.gw->door_endpoints(); // ipc, and grpc when opened
  return 0;
}

int prepare_run(options& o, temp_root& root, gateway_setup& g) {
  std::string err;
  if (!check_mix(o.mix, err)) {
    std::cerr << "aico-stress: " << err << std::endl;
    return 2;
  }
  root.keep = o.keep;
  if (auto rc = validate_gateway_options(o, g))
    return rc;
  if (!root.create()) {
    std::cerr << "aico-stress: mkdtemp failed" << std::endl;
    return 1;
  }
  return start_gateway(o, root, g);
}

// -- fault driver ------------------------------------------------------------------------

fault_driver::fault_driver(fault_schedule s, std::string base,
                           std::string admin_user, std::string admin_pw,
                           gateway_launcher* gw)
  : s_(std::move(s)),
    base_(std::move(base)),
    user_(std::move(admin_user)),
    pw_(std::move(admin_pw)),
    gw_(gw) {
}

fault_driver::~fault_driver() {
  finish();
}

bool fault_driver::start(std::string& err) {
  token_ = rest_login(base_, user_, pw_, err);
  if (token_.empty()) {
    err = "admin login for /admin/faults failed: " + err;
    return false;
  }
  if (!post(base_settings())) {
    err = "POST /admin/faults failed (is the gateway started with "
          "--enable-faults?)";
    return false;
  }
  thread_ = std::thread([this] { run(); });
  return true;
}

void fault_driver::stop() {
  if (!thread_.joinable())
    return;
  done_ = true;
  auto until = steady::now() + 15s;
  while (!quiesced_ && steady::now() < until)
    std::this_thread::sleep_for(10ms);
}

void fault_driver::finish() {
  if (!thread_.joinable())
    return;
  done_ = true;
  exit_ = true;
  thread_.join();
}

json::object fault_driver::base_settings() const {
  json::object o{{"latency_ms", s_.latency_ms}};
  o["fail_ratio"] = s_.fail_ratio;
  o["fail_status"] = s_.fail_status;
  return o;
}

bool fault_driver::post(const json::object& body) {
  auto text = json::serialize(body);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto r = http_call("POST", base_ + "/api/v1/admin/faults", text, token_,
                       3s);
    if (r.status == 200)
      return true;
    if (r.status == 401) {
      std::string err;
      token_ = rest_login(base_, user_, pw_, err);
    } else if (r.status == 0 && attempt == 2) {
      return false;
    }
    std::this_thread::sleep_for(200ms);
  }
  return false;
}

void fault_driver::run() {
  struct timer {
    periodic_fault f;
    steady::time_point next;
  };
  auto t0 = steady::now();
  std::vector<timer> timers;
  for (auto& f : s_.periodic)
    timers.push_back({f, t0 + f.period});
  std::vector<std::pair<steady::time_point, json::object>> restores;
  while (!done_) {
    std::this_thread::sleep_for(20ms);
    auto now = steady::now();
    for (auto i = restores.begin(); i != restores.end();) {
      if (i->first <= now) {
        post(i->second);
        i = restores.erase(i);
      } else {
        ++i;
      }
    }
    for (auto& t : timers) {
      if (t.next > now)
        continue;
      t.next += t.f.period;
      ++actions_;
      switch (t.f.kind) {
        case fault_kind::door_down:
          // the gateway's fault endpoint names its doors as the transports
          post(json::object{{t.f.door, "down"}});
          restores.emplace_back(now + t.f.duration,
                                json::object{{t.f.door, "up"}});
          break;
        case fault_kind::drop_ws:
          post(json::object{{"drop_ws", true}});
          break;
        case fault_kind::kill:
          if (gw_ && !done_) {
            ++kills_;
            gw_->kill9();
            if (!gw_->start())
              std::cerr << "aico-stress: gateway restart failed: "
                        << gw_->last_error() << std::endl;
            std::string err;
            token_ = rest_login(base_, user_, pw_, err);
            post(base_settings());
          }
          break;
      }
    }
  }
  if (!exit_)
    post(json::object{{"reset", true}});
  quiesced_ = true;
  while (!exit_)
    std::this_thread::sleep_for(20ms);
}

// -- integrity ---------------------------------------------------------------------------

bool check_store(const std::string& url, const std::string& password,
                 int conversations, const std::vector<int>& users,
                 const std::map<std::string, std::vector<std::string>>& sent,
                 integrity_result& out, std::string& err) {
  std::map<std::string, std::vector<std::string>> stored;
  for (auto i : users) {
    auto name = user_name(i);
    std::string lerr;
    auto token = rest_login(url, name, password, lerr);
    if (token.empty()) {
      err = name + ": login failed: " + lerr;
      return false;
    }
    for (int k = 1; k <= conversations; ++k) {
      auto conv = name + "-" + std::to_string(k);
      auto& ids = stored[conv];
      if (!fetch_conversation(url, token, conv, name, ids, err))
        return false;
    }
  }
  out = check_integrity(sent, stored);
  return true;
}

bool check_peer_store(const std::string& url,
                      const std::map<std::string, std::vector<std::string>>& sent,
                      const std::set<std::string>& unknown,
                      integrity_result& out, std::string& err) {
  // the conversation of every id sent (the backend mints its own
  // conversation ids; the engine's are in the sent map)
  std::unordered_map<std::string, std::string> conv_of;
  for (auto& [conv, ids] : sent)
    for (auto& id : ids)
      conv_of.emplace(id, conv);
  auto r = http_call("GET", url + "/_peer/messages", "", "",
                     std::chrono::seconds(60));
  if (r.status != 200 || !r.body.is_object()) {
    err = "GET /_peer/messages: "
          + (r.status == 0 ? r.error : "HTTP " + std::to_string(r.status));
    return false;
  }
  auto* msgs = r.body.as_object().if_contains("messages");
  if (!msgs || !msgs->is_array()) {
    err = "GET /_peer/messages: no messages array";
    return false;
  }
  static const std::string prefix = "stress message ";
  std::map<std::string, std::vector<std::string>> stored;
  for (auto& m : msgs->as_array()) {
    if (!m.is_object())
      continue;
    auto& o = m.as_object();
    auto* role = o.if_contains("role");
    auto* content = o.if_contains("content");
    if (!role || !content || !role->is_string() || !content->is_string()
        || role->get_string() != "user")
      continue;
    std::string text{content->get_string()};
    if (text.rfind(prefix, 0) != 0)
      continue;
    auto id = text.substr(prefix.size());
    auto c = conv_of.find(id);
    // an id nobody sent: its own bucket (counted unexpected)
    stored[c == conv_of.end() ? "(unknown)" : c->second].push_back(id);
  }
  out = check_integrity(sent, stored, unknown);
  return true;
}

ws_flapper::ws_flapper(std::string base, double seconds)
  : base_(std::move(base)), seconds_(seconds) {
}

ws_flapper::~ws_flapper() {
  stop();
}

void ws_flapper::start() {
  thread_ = std::thread([this] { run(); });
}

void ws_flapper::stop() {
  {
    std::lock_guard<std::mutex> g{m_};
    done_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void ws_flapper::run() {
  auto period = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::duration<double>(seconds_));
  bool down = false;
  std::unique_lock<std::mutex> g{m_};
  while (!cv_.wait_for(g, period, [this] { return done_; })) {
    g.unlock();
    down = !down;
    auto r = http_call("POST", base_ + (down ? "/_peer/ws/down" : "/_peer/ws/up"),
                       "", "");
    if (r.status == 200)
      actions_++;
    g.lock();
  }
  g.unlock();
  if (down)
    http_call("POST", base_ + "/_peer/ws/up", "", "");
}

// -- progress ------------------------------------------------------------------------------

progress_printer::progress_printer(double duration_s, int64_t messages)
  : duration_s_(duration_s),
    messages_(messages),
    tty_(isatty(STDERR_FILENO) != 0) {
}

void progress_printer::update(double elapsed_s, const progress_counters& c,
                              const std::string& prefix) {
  auto every = tty_ ? 0.25 : 5.0;
  if (elapsed_s - last_t_ < every)
    return;
  auto dt = elapsed_s - last_t_;
  auto rate = dt > 0 ? static_cast<double>(c.ops_ok - std::min(c.ops_ok, last_ops_)) / dt
                     : 0.0;
  if (tty_) {
    size_t cols = 0;
    winsize ws{};
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
      cols = ws.ws_col - 1;
    std::cerr << "\r"
              << format_progress_bar(elapsed_s, duration_s_, messages_, c,
                                     rate, 20, cols)
              << "\x1b[K" << std::flush;
    open_ = true;
  } else {
    std::cerr << prefix << format_progress_line(elapsed_s, c, rate)
              << std::endl;
  }
  last_ops_ = c.ops_ok;
  last_t_ = elapsed_s;
}

void progress_printer::end_line() {
  if (tty_)
    std::cerr << "\n";
  open_ = false;
}

// -- report ----------------------------------------------------------------------------------

int emit_report(const report& rep, const options& o) {
  if (o.json_out)
    std::cout << json::serialize(rep.to_json()) << std::endl;
  else
    std::cout << rep.to_text() << std::flush;
  int rc = rep.exact() ? 0 : 1;
  if (!o.plot.empty()) {
    std::string err;
    if (write_latency_plot(rep, o.plot, err)) {
      std::cerr << "aico-stress: latency plot written to " << o.plot
                << std::endl;
    } else {
      std::cerr << "aico-stress: --plot: " << err << std::endl;
      rc = 1;
    }
  }
  return rc;
}

} // namespace aico::stress
