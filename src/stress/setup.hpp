// aico-stress: what the single-process mode and the controller of the
// distributed mode share: the options, the gateway (self-started or --url),
// the fault driver, the integrity check against the gateway's store, the
// progress output and the final report.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <thread>
#include <mutex>
#include <condition_variable>
#include <vector>

#include <boost/json.hpp>

#include "src/config/load_config.hpp"
#include "src/stress/fault_schedule.hpp"
#include "src/stress/gateway_launcher.hpp"
#include "src/stress/integrity.hpp"
#include "src/stress/progress.hpp"
#include "src/stress/report.hpp"

namespace aico::stress {

struct options {
  std::string url;
  bool start_gateway = false;
  bool bot = false;
  int users = 10;
  double rate = 50;
  double duration = 20;
  int64_t messages = 0;
  double ramp = 0;
  std::string transports = "ipc,ws,http";
  std::string mix = "send=70,history=20,read=5,health=5";
  std::string faults;
  /// --peer-fault JSON (aico profile): rules posted to the peer's
  /// /_peer/faults before the load (docs/profiles.md, test-only routes).
  std::vector<std::string> peer_faults;
  /// --peer-ws-flap S (aico profile): the peer's WebSocket is switched off
  /// for S seconds every 2*S seconds during the load (failover WS <-> HTTP).
  double peer_ws_flap = 0;
  bool json_out = false;
  uint64_t seed = 1;
  int conversations = 1;
  std::string password = "stress-pw";
  std::string admin; ///< USER:PASSWORD for /admin/faults (external gateway)
  std::string password_file; ///< --password-file (instead of --password)
  std::string admin_file;    ///< --admin-file (instead of --admin)
  /// TLS and CURVE options of the engines and of the REST calls, and the
  /// endpoints (--ipc, --grpc) of a gateway given with --url.
  client_flags client;
  double drain_timeout = 60;
  int threads = 0;
  int access_ttl = 0;
  std::string gateway_bin;
  bool keep = false;
  std::string plot; ///< --plot FILE.svg
  // -- distributed mode -------------------------------------------------------------
  bool controller = false;
  int workers = 0;
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  double worker_timeout = 60;
  bool worker = false;
  std::string connect;
  double connect_timeout = 30;
};

/// The run uses the `aico` wire profile (--profile aico or AICO_PROFILE):
/// the users' engines talk to a self-started aico-backend-peer.
bool aico_profile(const options& o);

/// SIGINT/SIGTERM seen (handlers installed by install_signal_handlers()).
bool interrupted();
void install_signal_handlers();

/// Scheduler threads: --threads, or max(2, cores).
int scheduler_threads(const options& o);

/// Splits "HOST:PORT" (PORT 0..65535); false if malformed.
bool parse_host_port(const std::string& text, std::string& host,
                     uint16_t& port);

/// A temporary directory, removed on destruction unless `keep`.
struct temp_root {
  std::string path;
  bool keep = false;
  ~temp_root();
  /// mkdtemp under $TMPDIR (if short) or /tmp; false on failure.
  bool create();
};

/// The gateway of a run and its fault schedule.
struct gateway_setup {
  fault_schedule faults;
  std::string url;
  /// The doors' endpoints by transport name ("ipc": ipc://PATH, "grpc":
  /// HOST:PORT); absent = no such door.
  std::map<std::string, std::string> endpoints;
  std::string ws_url; ///< the aico peer's WebSocket ("" for the gateway)
  std::string admin_user = "stress-admin";
  std::string admin_pw;
  std::unique_ptr<gateway_launcher> gw;
};

/// Checks --faults, --url, --admin (prints one line; 0 or 2).
int validate_gateway_options(options& o, gateway_setup& g);

/// Starts the gateway with the users stress-0001..N (unless --url): 0 or 1.
int start_gateway(const options& o, const temp_root& root, gateway_setup& g);

/// What every run that drives a gateway does first: checks --mix and the
/// gateway options, creates the temporary root and starts the gateway
/// (unless --url). 0, or the exit code (2 usage, 1 failure; one line said).
int prepare_run(options& o, temp_root& root, gateway_setup& g);

/// Drives POST /admin/faults from a thread (see fault_schedule.hpp).
class fault_driver {
public:
  fault_driver(fault_schedule s, std::string base, std::string admin_user,
               std::string admin_pw, gateway_launcher* gw);
  ~fault_driver();

  bool start(std::string& err);
  /// Stops the schedule and restores the gateway (reset). The thread stays
  /// until finish(): a gateway it restarted dies with it (PDEATHSIG is
  /// bound to the forking thread).
  void stop();
  /// Ends the thread; call after the gateway was stopped.
  void finish();

  uint64_t actions() const { return actions_; }
  uint64_t kills() const { return kills_; }

private:
  boost::json::object base_settings() const;
  bool post(const boost::json::object& body);
  void run();

  fault_schedule s_;
  std::string base_, user_, pw_, token_;
  gateway_launcher* gw_;
  std::thread thread_;
  std::atomic<bool> done_{false}, exit_{false}, quiesced_{false};
  std::atomic<uint64_t> actions_{0}, kills_{0};
};

/// Reads the conversations of `users` (indices) back from the store by REST
/// with each user's token and checks them against `sent`; false + err if
/// the store could not be read.
bool check_store(const std::string& url, const std::string& password,
                 int conversations, const std::vector<int>& users,
                 const std::map<std::string, std::vector<std::string>>& sent,
                 integrity_result& out, std::string& err);

/// The aico profile's integrity check: every message the peer stored
/// (GET /_peer/messages, insertion order) whose content is a stress
/// message, per conversation of its id, against `sent`; sends in `unknown`
/// had an unknown outcome (counted separately). False + err if the peer
/// could not be read.
bool check_peer_store(const std::string& url,
                      const std::map<std::string, std::vector<std::string>>& sent,
                      const std::set<std::string>& unknown,
                      integrity_result& out, std::string& err);

/// --peer-ws-flap: switches the aico peer's WebSocket off and on from a
/// thread (POST /_peer/ws/down, /_peer/ws/up) until stop(), which leaves it
/// on.
class ws_flapper {
public:
  ws_flapper(std::string base, double seconds);
  ~ws_flapper(); ///< stop()
  void start();
  void stop();
  uint64_t actions() const { return actions_; }

private:
  void run();
  std::string base_;
  double seconds_;
  std::thread thread_;
  std::mutex m_;
  std::condition_variable cv_;
  bool done_ = false;
  std::atomic<uint64_t> actions_{0};
};

/// The live progress on stderr: an updating bar on a terminal (every
/// 250 ms), otherwise a plain line every 5 s.
class progress_printer {
public:
  progress_printer(double duration_s, int64_t messages);
  /// Prints if due; `prefix` goes before a plain line.
  void update(double elapsed_s, const progress_counters& c,
              const std::string& prefix = "");
  /// Ends the updating line (terminal only).
  void end_line();
  bool tty() const { return tty_; }

private:
  double duration_s_;
  int64_t messages_;
  bool tty_;
  bool open_ = false;
  double last_t_ = 0;
  uint64_t last_ops_ = 0;
};

/// Prints the report (text or --json) on stdout and writes --plot; the exit
/// code: 0 integrity exact, 1 otherwise (or the plot could not be written).
int emit_report(const report& rep, const options& o);

} // namespace aico::stress
