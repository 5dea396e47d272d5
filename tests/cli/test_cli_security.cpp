// The client side of issue 12, as a user meets it: `aico` against the real
// gateway serving TLS, mutual TLS and CurveZMQ on 127.0.0.1 (certificates
// made at test time), and the password kept off the command line (stdin, a
// file, a prompt on a pseudo-terminal).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utmp.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/gateway_process.hpp"
#include "support/test_pki.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using aico::test::gateway_options;
using aico::test::gateway_process;
using aico::test::read_text_file;
using aico::test::temp_dir;
using aico::test::test_pki;

struct run_result {
  int rc = -100;
  std::string out;
  std::string err;
};

void write_file(const std::string& path, const std::string& text,
                mode_t mode) {
  ::unlink(path.c_str());
  std::ofstream{path} << text;
  ::chmod(path.c_str(), mode);
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

class cli_security : public ::testing::Test {
protected:
  temp_dir work_{"aico-cli-sec"};
  std::unique_ptr<temp_dir> pki_dir_;
  test_pki pki_;
  std::unique_ptr<gateway_process> gw_;

  std::string state() const { return work_.path() + "/state"; }

  void make_pki() {
    pki_dir_ = std::make_unique<temp_dir>("aico-pki");
    pki_ = aico::test::make_test_pki(pki_dir_->path());
  }

  /// Starts the gateway with TLS (and mutual TLS with `mutual`).
  void start_tls(bool mutual) {
    make_pki();
    gateway_options o;
    o.bot = false;
    o.extra_args = aico::test::gateway_tls_args(pki_, mutual);
    gw_ = std::make_unique<gateway_process>(o);
    ASSERT_TRUE(gw_->start()) << gw_->last_error();
  }

  std::string https_url() const {
    return "https://127.0.0.1:" + std::to_string(gw_->port());
  }

  std::vector<std::string> base(const std::string& url,
                                const std::string& transports) const {
    return {AICO_CLI_BIN, "--url",       url,          "--state-dir",
            state(),      "--transports", transports, "--timeout",
            "5"};
  }

  static std::vector<std::string> with(std::vector<std::string> args,
                                       std::vector<std::string> more) {
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }

  /// Runs the CLI with stdin from `stdin_text` (empty: /dev/null).
  run_result run(std::vector<std::string> args,
                 const std::string& stdin_text = {}) {
    static int n = 0;
    auto prefix = work_.path() + "/run-" + std::to_string(++n);
    write_file(prefix + ".in", stdin_text, 0600);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    ::posix_spawn_file_actions_init(&fa);
    ::posix_spawn_file_actions_addopen(&fa, STDIN_FILENO,
                                       (prefix + ".in").c_str(), O_RDONLY, 0);
    ::posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO,
                                       (prefix + ".out").c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::posix_spawn_file_actions_addopen(&fa, STDERR_FILENO,
                                       (prefix + ".err").c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0600);
    // no controlling terminal: a prompt cannot be answered by accident
    posix_spawnattr_t at;
    ::posix_spawnattr_init(&at);
    ::posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID);
    pid_t pid = -1;
    run_result res;
    if (::posix_spawn(&pid, argv[0], &fa, &at, argv.data(), environ) != 0)
      pid = -1;
    ::posix_spawn_file_actions_destroy(&fa);
    ::posix_spawnattr_destroy(&at);
    if (pid <= 0)
      return res;
    auto until = std::chrono::steady_clock::now() + 30s;
    int st = 0;
    while (::waitpid(pid, &st, WNOHANG) != pid) {
      if (std::chrono::steady_clock::now() > until) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        res.rc = -1;
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    if (res.rc != -1)
      res.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    res.out = read_text_file(prefix + ".out");
    res.err = read_text_file(prefix + ".err");
    return res;
  }
};

/// A message for people: no raw caf::error rendering.
void expect_sentence(const std::string& text) {
  EXPECT_EQ(text.find("error("), std::string::npos) << text;
}

// -- TLS -------------------------------------------------------------------------------

TEST_F(cli_security, https_and_wss_with_a_trusted_ca) {
  start_tls(false);
  for (auto t : {"http", "ws"}) {
    auto r = run(with(base(https_url(), t),
                      {"--tls-ca-file", pki_.ca_cert, "login", "alice",
                       "--password-stdin"}),
                 "alice-pw\n");
    EXPECT_EQ(r.rc, 0) << t << ": " << r.out << r.err;
    EXPECT_NE(r.out.find("logged in as alice"), std::string::npos) << r.out;
    EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
    auto s = run(with(base(https_url(), t),
                      {"--tls-ca-file", pki_.ca_cert, "--json", "status"}));
    EXPECT_NE(s.out.find("\"mode\":\"" + std::string{t} + "\""),
              std::string::npos)
      << s.out << s.err;
  }
  // the same from the environment and from a config file
  ::setenv("AICO_TLS_CA_FILE", pki_.ca_cert.c_str(), 1);
  auto r = run(with(base(https_url(), "ws"), {"health"}));
  ::unsetenv("AICO_TLS_CA_FILE");
  EXPECT_EQ(r.rc, 0) << r.err;
  auto cfg = work_.path() + "/aico.json";
  write_file(cfg,
             "{\"url\": \"" + https_url() + "\", \"tls\": {\"ca_file\": \""
               + pki_.ca_cert + "\", \"pin\": \"" + pki_.server_pin + "\"}}",
             0600);
  r = run({AICO_CLI_BIN, "--config", cfg, "--state-dir", state(),
           "--transports", "http", "health"});
  EXPECT_EQ(r.rc, 0) << r.err;
}

TEST_F(cli_security, untrusted_certificate_and_pin_mismatch_fail_with_a_sentence) {
  start_tls(false);
  for (auto t : {"http", "ws"}) {
    // the system store does not know the test CA; nor does another CA
    for (auto ca : {std::string{}, pki_.rogue_ca_cert}) {
      auto args = base(https_url(), t);
      if (!ca.empty())
        args = with(args, {"--tls-ca-file", ca});
      auto r = run(with(args, {"health"}));
      EXPECT_EQ(r.rc, 4) << t << ": " << r.out << r.err;
      EXPECT_NE(r.err.find("the gateway's certificate is not trusted"),
                std::string::npos)
        << t << ": " << r.err;
      expect_sentence(r.err);
    }
    auto r = run(with(base(https_url(), t),
                      {"--tls-ca-file", pki_.ca_cert, "--tls-pin",
                       pki_.wrong_pin, "health"}));
    EXPECT_EQ(r.rc, 4) << t << ": " << r.err;
    EXPECT_NE(r.err.find("does not match the pinned key"), std::string::npos)
      << t << ": " << r.err;
    // the right pin passes
    r = run(with(base(https_url(), t),
                 {"--tls-ca-file", pki_.ca_cert, "--tls-pin", pki_.server_pin,
                  "health"}));
    EXPECT_EQ(r.rc, 0) << t << ": " << r.err;
  }
}

TEST_F(cli_security, development_switch_works_and_warns_every_run) {
  start_tls(false);
  for (int i = 0; i < 2; ++i) {
    auto r = run(with(base(https_url(), "http"),
                      {"--tls-insecure-dev-only", "health"}));
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.err.find("aico: warning: TLS certificate verification is "
                         "OFF"),
              std::string::npos)
      << r.err;
  }
}

TEST_F(cli_security, mutual_tls_accepted_and_refused) {
  start_tls(true);
  for (auto t : {"http", "ws"}) {
    auto device = with(base(https_url(), t),
                       {"--tls-ca-file", pki_.ca_cert, "--tls-client-cert",
                        pki_.device_cert, "--tls-client-key",
                        pki_.device_key});
    auto r = run(with(device, {"health"}));
    EXPECT_EQ(r.rc, 0) << t << ": " << r.err;
    // no client certificate, or one from a CA the gateway does not trust
    auto none = run(with(base(https_url(), t),
                         {"--tls-ca-file", pki_.ca_cert, "health"}));
    EXPECT_EQ(none.rc, 4) << t << ": " << none.err;
    EXPECT_NE(none.err.find("refused this client's certificate"),
              std::string::npos)
      << t << ": " << none.err;
    auto rogue = run(with(base(https_url(), t),
                          {"--tls-ca-file", pki_.ca_cert, "--tls-client-cert",
                           pki_.rogue_device_cert, "--tls-client-key",
                           pki_.rogue_device_key, "health"}));
    EXPECT_EQ(rogue.rc, 4) << t << ": " << rogue.err;
    EXPECT_NE(rogue.err.find("refused this client's certificate"),
              std::string::npos)
      << t << ": " << rogue.err;
  }
}

TEST_F(cli_security, bad_tls_options_are_usage_errors) {
  auto r = run({AICO_CLI_BIN, "--url", "https://127.0.0.1:1", "--tls-pin",
                "md5//abc", "health"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--tls-pin: expected sha256//BASE64"),
            std::string::npos)
    << r.err;
  r = run({AICO_CLI_BIN, "--url", "https://127.0.0.1:1", "--tls-ca-file",
           work_.path() + "/none.pem", "health"});
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--tls-ca-file: cannot use '"), std::string::npos)
    << r.err;
  r = run({AICO_CLI_BIN, "--url", "http://192.0.2.1:1", "--state-dir",
           state(), "--timeout", "0.3", "status"});
  EXPECT_NE(r.err.find("aico: warning: the connection to http://192.0.2.1:1 "
                       "is not encrypted"),
            std::string::npos)
    << r.err;
}

// -- CurveZMQ ----------------------------------------------------------------------------

TEST_F(cli_security, curve_over_tcp_with_the_pinned_key) {
  // this client's key: made on first use, private, the same afterwards
  auto key = run({AICO_CLI_BIN, "--state-dir", state(), "ipc-key"});
  ASSERT_EQ(key.rc, 0) << key.err;
  auto pub = key.out.substr(0, 40);
  ASSERT_EQ(key.out, pub + "\n");
  EXPECT_EQ(mode_of(state() + "/ipc-client.key"), 0600u);
  EXPECT_EQ(run({AICO_CLI_BIN, "--state-dir", state(), "ipc-key"}).out,
            key.out);
  auto stranger_state = work_.path() + "/stranger";
  auto stranger = run({AICO_CLI_BIN, "--state-dir", stranger_state,
                       "ipc-key"});
  ASSERT_EQ(stranger.rc, 0);
  auto allow = work_.path() + "/ipc-allow";
  write_file(allow, pub + "\n", 0600);
  gateway_options o;
  o.bot = false;
  o.ipc = "tcp://127.0.0.1:0";
  o.extra_args = {"--ipc-allow", allow};
  gw_ = std::make_unique<gateway_process>(o);
  ASSERT_TRUE(gw_->start()) << gw_->last_error();
  auto line = gw_->ready_line();
  auto at = line.find(" ipc_key=");
  ASSERT_NE(at, std::string::npos) << line;
  auto server_key = line.substr(at + 9, 40);
  auto endpoint = gw_->reported_ipc();
  ASSERT_EQ(endpoint.rfind("tcp://127.0.0.1:", 0), 0u) << endpoint;
  auto ipc_args = [&](const std::string& dir, const std::string& k) {
    return std::vector<std::string>{
      AICO_CLI_BIN, "--url",    "http://127.0.0.1:1", "--ipc", endpoint,
      "--state-dir", dir,       "--transports",       "ipc",   "--timeout",
      "3",          "--ipc-server-key", k};
  };
  auto r = run(with(ipc_args(state(), server_key), {"--json", "health"}));
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  // the key from the gateway's public key file works the same
  r = run({AICO_CLI_BIN, "--ipc", endpoint, "--state-dir", state(),
           "--transports", "ipc", "--ipc-server-key-file",
           gw_->data_dir() + "/ipc-curve.pub", "health"});
  EXPECT_EQ(r.rc, 0) << r.err;
  // pinning another key: the handshake fails, said clearly
  auto wrong = run(with(ipc_args(state(), stranger.out.substr(0, 40)),
                        {"health"}));
  EXPECT_EQ(wrong.rc, 4) << wrong.err;
  EXPECT_NE(wrong.err.find("CURVE"), std::string::npos) << wrong.err;
  expect_sentence(wrong.err);
  // a client the gateway does not allow
  auto refused = run(with(ipc_args(stranger_state, server_key), {"health"}));
  EXPECT_EQ(refused.rc, 4) << refused.err;
  EXPECT_NE(refused.err.find("the gateway refused this client's"),
            std::string::npos)
    << refused.err;
  // tcp:// without a key: refused before anything is sent
  auto no_key = run({AICO_CLI_BIN, "--ipc", endpoint, "--state-dir", state(),
                     "--transports", "ipc", "health"});
  EXPECT_EQ(no_key.rc, 2);
  EXPECT_NE(no_key.err.find("is reached over TCP, which needs CurveZMQ"),
            std::string::npos)
    << no_key.err;
  // a key file others can read is refused
  ASSERT_EQ(::chmod((state() + "/ipc-client.key").c_str(), 0644), 0);
  auto loose = run(with(ipc_args(state(), server_key), {"health"}));
  EXPECT_NE(loose.rc, 0);
  EXPECT_NE(loose.err.find("can be read or written by others"),
            std::string::npos)
    << loose.err;
}

// -- aico-stress over TLS -----------------------------------------------------------------

TEST_F(cli_security, stress_over_https_and_wss_with_the_password_from_a_file) {
  make_pki();
  gateway_options o;
  o.bot = false;
  o.users = {"stress-0001:stress-secret", "stress-0002:stress-secret"};
  o.extra_args = {"--tls-cert", pki_.server_cert, "--tls-key",
                  pki_.server_key};
  gw_ = std::make_unique<gateway_process>(o);
  ASSERT_TRUE(gw_->start()) << gw_->last_error();
  auto pw = work_.path() + "/stress-pw";
  write_file(pw, "stress-secret\n", 0600);
  std::vector<std::string> args{AICO_STRESS_BIN, "--url", https_url(),
                                "--users",       "2",    "--rate",
                                "4",             "--duration", "2",
                                "--transports",  "ws,http", "--password-file",
                                pw,              "--drain-timeout", "20",
                                "--json"};
  auto r = run(with(args, {"--tls-ca-file", pki_.ca_cert}));
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("\"lost\":0"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\"sent\":0,"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  // without the CA the gateway is not trusted: nothing gets through
  auto untrusted = run(args);
  EXPECT_NE(untrusted.rc, 0) << untrusted.out;
  EXPECT_NE(untrusted.err.find("not trusted"), std::string::npos)
    << untrusted.err;
  // the TLS options are checked before the run starts
  auto bad = run(with(args, {"--tls-pin", "sha256//nope"}));
  EXPECT_EQ(bad.rc, 2);
  EXPECT_NE(bad.err.find("--tls-pin: expected sha256//BASE64"),
            std::string::npos)
    << bad.err;
}

// -- passwords off argv ------------------------------------------------------------------

class cli_password : public cli_security {
protected:
  void SetUp() override {
    gateway_options o;
    o.bot = false;
    gw_ = std::make_unique<gateway_process>(o);
    ASSERT_TRUE(gw_->start()) << gw_->last_error();
  }
  std::vector<std::string> login_args() const {
    return {AICO_CLI_BIN,  "--url",       gw_->http_url(), "--state-dir",
            state(),       "--transports", "http",         "login",
            "alice"};
  }
};

TEST_F(cli_password, from_stdin_and_from_a_file) {
  auto r = run(with(login_args(), {"--password-stdin"}), "alice-pw\n");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  r = run(with(login_args(), {"--password-stdin"}), "wrong\n");
  EXPECT_EQ(r.rc, 3) << r.err;
  auto pw = work_.path() + "/pw";
  write_file(pw, "alice-pw\n", 0600);
  r = run(with(login_args(), {"--password-file", pw}));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  ::chmod(pw.c_str(), 0644);
  r = run(with(login_args(), {"--password-file", pw}));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("can be read by other users"), std::string::npos)
    << r.err;
  r = run(with(login_args(), {"--password-file", work_.path() + "/none"}));
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("--password-file: cannot read"), std::string::npos);
  // two sources at once
  r = run(with(login_args(), {"alice-pw", "--password-file", pw}));
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("one way only"), std::string::npos) << r.err;
}

TEST_F(cli_password, on_the_command_line_works_with_a_warning) {
  auto r = run(with(login_args(), {"alice-pw"}));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("aico: warning: a password on the command line can be "
                       "read by other users"),
            std::string::npos)
    << r.err;
}

TEST_F(cli_password, without_a_terminal_and_without_a_source_is_refused) {
  auto r = run(login_args());
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("no terminal to ask on"), std::string::npos) << r.err;
}

TEST_F(cli_password, prompt_on_a_terminal_without_echo) {
  int master = -1;
  auto args = login_args();
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  std::string seen;
  auto read_until = [&](const std::string& text, std::chrono::seconds t) {
    auto until = std::chrono::steady_clock::now() + t;
    while (seen.find(text) == std::string::npos
           && std::chrono::steady_clock::now() < until) {
      pollfd p{master, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      char buf[512];
      auto n = ::read(master, buf, sizeof buf);
      if (n <= 0)
        break;
      seen.append(buf, static_cast<std::size_t>(n));
    }
    return seen.find(text) != std::string::npos;
  };
  ASSERT_TRUE(read_until("password for alice: ", 15s)) << seen;
  std::string typed = "alice-pw\n";
  ASSERT_EQ(::write(master, typed.data(), typed.size()),
            static_cast<ssize_t>(typed.size()));
  EXPECT_TRUE(read_until("logged in as alice", 20s)) << seen;
  int st = 0;
  auto until = std::chrono::steady_clock::now() + 20s;
  while (::waitpid(pid, &st, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      break;
    }
    char buf[256];
    [[maybe_unused]] auto n = ::read(master, buf, sizeof buf);
    std::this_thread::sleep_for(10ms);
  }
  ::close(master);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << seen;
  // not echoed
  EXPECT_EQ(seen.find("alice-pw"), std::string::npos) << seen;
}

} // namespace
