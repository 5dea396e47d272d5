// Integration tests of the gateway's security features (docs/security.md):
// private files whatever the umask, secrets refused when not private, the
// users file, TLS and mutual TLS on the HTTP/WebSocket/SSE port, the
// plaintext-off-loopback refusal, CurveZMQ on the IPC door, failed-login
// throttling, non-finite numbers, and bounded output per WebSocket/SSE
// connection (the slow-consumer probe of issue 12).
//
// Everything runs on 127.0.0.1 (one test connects *from* 127.0.0.2, also
// loopback) and ipc:// paths in temp dirs; certificates are made at test
// time (support/test_pki.hpp).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "integration.hpp"
#include "support/test_pki.hpp"

namespace aico::test {
namespace {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text,
                mode_t mode) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                  mode);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, text.data(), text.size()),
            static_cast<ssize_t>(text.size()));
  ::fchmod(fd, mode);
  ::close(fd);
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    return 0;
  return st.st_mode;
}

/// The peak resident set size (VmHWM) of a process in KiB, 0 if unknown.
long peak_rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0)
      return std::stol(line.substr(6));
  return 0;
}

/// Waits (bounded) until the gateway's log contains `text`.
bool wait_for_log(const gateway_process& gw, const std::string& text,
                  ms timeout = ms(10000)) {
  auto deadline = clock::now() + timeout;
  while (clock::now() < deadline) {
    if (read_text(gw.log_path()).find(text) != std::string::npos)
      return true;
    std::this_thread::sleep_for(ms(20));
  }
  return false;
}

/// Runs the gateway binary with `args` and no other: its exit code and
/// stderr if it exits within `timeout` (a refused start), or code 1000 if
/// it was still running (then it is killed).
struct run_result {
  int code = -1;
  std::string err;
};

run_result run_gateway(const std::vector<std::string>& args,
                       ms timeout = ms(5000)) {
  run_result r;
  int errp[2];
  if (pipe2(errp, O_CLOEXEC) != 0)
    return r;
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(errp[1], STDERR_FILENO);
    int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, STDOUT_FILENO);
    std::vector<std::string> all{gateway_binary()};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(errp[1]);
  auto deadline = clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<ms>(deadline - clock::now());
    if (left.count() <= 0)
      break;
    pollfd pfd{errp[0], POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
      break;
    char buf[1024];
    auto n = ::read(errp[0], buf, sizeof buf);
    if (n <= 0)
      break; // closed: exited
    r.err.append(buf, static_cast<std::size_t>(n));
  }
  ::close(errp[0]);
  int status = 0;
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      return r;
    }
    std::this_thread::sleep_for(ms(10));
  }
  ::kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  r.code = 1000;
  return r;
}

bool start_with_umask(gateway_process& gw, mode_t mask) {
  mode_t old = ::umask(mask);
  bool ok = gw.start();
  ::umask(old);
  return ok;
}

tls_client_options trust(const std::string& ca) {
  tls_client_options t;
  t.enabled = true;
  t.ca_file = ca;
  return t;
}

} // namespace

// -- files ---------------------------------------------------------------------

TEST(SecurityFiles, DataDirSecretsAndSocketArePrivateWhateverTheUmask) {
  temp_dir tmp("aico-sec");
  std::string data = tmp.path() + "/data";
  ASSERT_EQ(::mkdir(data.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(data.c_str(), 0777), 0); // as a umask of 000 made it
  gateway_options o = fast_options();
  o.data_dir = data;
  gateway_process gw(o);
  ASSERT_TRUE(start_with_umask(gw, 0)) << gw.last_error();
  EXPECT_EQ(mode_of(data) & 07777, 0700u);
  EXPECT_EQ(mode_of(data + "/jwt.secret") & 07777, 0600u);
  EXPECT_EQ(mode_of(data + "/gateway.db") & 07777, 0600u);
  auto sock = mode_of(data + "/gateway.ipc");
  EXPECT_TRUE(S_ISSOCK(sock));
  EXPECT_EQ(sock & 07777, 0600u);
  struct stat st {};
  ASSERT_EQ(::stat((data + "/gateway.ipc").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::geteuid());
  // Still serving.
  EXPECT_EQ(http_client("127.0.0.1", gw.port()).get("/api/v1/health").status,
            200);
}

TEST(SecurityFiles, JwtSecretReadableByOthersIsRefusedWithTheFix) {
  gateway_process gw(fast_options());
  ASSERT_TRUE(gw.start()) << gw.last_error();
  gw.stop();
  std::string secret = gw.data_dir() + "/jwt.secret";
  ASSERT_EQ(::chmod(secret.c_str(), 0644), 0);
  EXPECT_FALSE(gw.start(ms(5000)));
  auto log = read_text(gw.log_path());
  EXPECT_NE(log.find("refusing to use the JWT secret " + secret),
            std::string::npos)
    << log;
  EXPECT_NE(log.find("chmod 600 " + secret), std::string::npos) << log;
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  EXPECT_TRUE(gw.start()) << gw.last_error();
}

TEST(SecurityFiles, JwtSecretOfAnotherUserOrSymlinkIsRefused) {
  gateway_process gw(fast_options());
  ASSERT_TRUE(gw.start()) << gw.last_error();
  gw.stop();
  std::string secret = gw.data_dir() + "/jwt.secret";
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(secret.c_str(), 65534, 65534), 0);
    EXPECT_FALSE(gw.start(ms(5000)));
    EXPECT_NE(read_text(gw.log_path()).find("belongs to uid 65534"),
              std::string::npos)
      << read_text(gw.log_path());
    ASSERT_EQ(::chown(secret.c_str(), 0, 0), 0);
  }
  // A symbolic link to a private file is refused as well (it could point
  // anywhere the attacker likes).
  std::string real = gw.data_dir() + "/elsewhere";
  ASSERT_EQ(::rename(secret.c_str(), real.c_str()), 0);
  ASSERT_EQ(::symlink(real.c_str(), secret.c_str()), 0);
  EXPECT_FALSE(gw.start(ms(5000)));
  EXPECT_NE(read_text(gw.log_path()).find("symbolic link"), std::string::npos)
    << read_text(gw.log_path());
}

// -- users ---------------------------------------------------------------------

TEST(SecurityUsers, UsersFileGivesLoginsAndMustBePrivate) {
  temp_dir tmp("aico-sec");
  std::string users = tmp.path() + "/users.txt";
  write_text(users,
             "# family accounts\n"
             "carol:carol pw #1:admin\n"
             "\n"
             "dave:dave-pw\r\n",
             0600);
  gateway_options o = fast_options();
  o.users.clear();
  o.extra_args.insert(o.extra_args.end(), {"--users-file", users});
  gateway_process gw(o);
  ASSERT_TRUE(gw.start()) << gw.last_error();
  http_client c("127.0.0.1", gw.port());
  auto r = c.post("/api/v1/users/authenticate",
                  {{"username", "carol"}, {"password", "carol pw #1"}});
  EXPECT_OK(r, 200);
  EXPECT_EQ(jstr(r.body, "/data/user/role"), "admin");
  r = c.post("/api/v1/users/authenticate",
             {{"username", "dave"}, {"password", "dave-pw"}});
  EXPECT_OK(r, 200);
  // No warning about argv: no password was given there.
  EXPECT_EQ(read_text(gw.log_path()).find("--user puts passwords"),
            std::string::npos);
  gw.stop();
  ASSERT_EQ(::chmod(users.c_str(), 0640), 0);
  EXPECT_FALSE(gw.start(ms(5000)));
  EXPECT_NE(read_text(gw.log_path()).find("chmod 600 " + users),
            std::string::npos)
    << read_text(gw.log_path());
}

TEST(SecurityUsers, UserOnTheCommandLineWarns) {
  gateway_process gw(fast_options());
  ASSERT_TRUE(gw.start()) << gw.last_error();
  EXPECT_NE(read_text(gw.log_path()).find("warning: --user puts passwords on "
                                          "the command line"),
            std::string::npos);
}

// -- plaintext off loopback ------------------------------------------------------

TEST(SecurityListen, PlaintextOnANonLoopbackAddressIsRefused) {
  temp_dir tmp("aico-sec");
  auto r = run_gateway({"--data-dir", tmp.path() + "/d", "--listen",
                        "0.0.0.0:0", "--ipc", "none"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("refusing to serve plaintext HTTP on 0.0.0.0:0"),
            std::string::npos)
    << r.err;
  EXPECT_NE(r.err.find("--insecure-plaintext"), std::string::npos) << r.err;
  // Told explicitly: it warns and goes on (192.0.2.1 is a documentation
  // address this host does not have, so the bind itself fails: no socket
  // is opened beyond loopback by this test).
  r = run_gateway({"--data-dir", tmp.path() + "/d", "--listen",
                   "192.0.2.1:0", "--ipc", "none", "--insecure-plaintext"});
  EXPECT_NE(r.err.find("WARNING: serving plaintext HTTP on 192.0.2.1:0"),
            std::string::npos)
    << r.err;
  EXPECT_EQ(r.err.find("refusing to serve plaintext"), std::string::npos)
    << r.err;
  EXPECT_NE(r.err.find("cannot listen on 192.0.2.1:0"), std::string::npos)
    << r.err;
}

TEST(SecurityListen, TcpIpcWithoutCurveIsRefused) {
  temp_dir tmp("aico-sec");
  auto r = run_gateway({"--data-dir", tmp.path() + "/d", "--listen",
                        "127.0.0.1:0", "--ipc", "tcp://127.0.0.1:0"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("without CurveZMQ"), std::string::npos) << r.err;
}

// -- TLS -------------------------------------------------------------------------

class Tls : public GatewayTest {
protected:
  void SetUp() override {
    pki_dir_ = std::make_unique<temp_dir>("aico-pki");
    pki_ = make_test_pki(pki_dir_->path());
    GatewayTest::SetUp();
  }

  gateway_options options() override {
    auto o = fast_options();
    o.extra_args.insert(o.extra_args.end(),
                        {"--tls-cert", pki_.server_cert, "--tls-key",
                         pki_.server_key});
    return o;
  }

  http_client https(tls_client_options t) const {
    http_client c("127.0.0.1", gw_->port());
    c.set_tls(std::move(t));
    return c;
  }

  std::string login_tls(const tls_client_options& t) const {
    auto r = https(t).post("/api/v1/users/authenticate",
                           {{"username", "alice"}, {"password", "alice-pw"}});
    EXPECT_EQ(r.status, 200) << r.raw << r.error;
    return jstr(r.body, "/data/access_token");
  }

  std::unique_ptr<temp_dir> pki_dir_;
  test_pki pki_;
};

TEST_F(Tls, RestWebSocketAndSseOverTlsOnOnePort) {
  auto port = std::to_string(gw_->port());
  EXPECT_EQ(gw_->ready_line().substr(0, 40),
            ("ready http=https://127.0.0.1:" + port + " ws=wss://")
              .substr(0, 40));
  auto t = trust(pki_.ca_cert);
  EXPECT_OK(https(t).get("/api/v1/health"), 200);
  auto token = login_tls(t);
  ASSERT_FALSE(token.empty());

  ws_client ws("127.0.0.1", gw_->port());
  ws.set_tls(t);
  ASSERT_TRUE(ws.connect(token)) << ws.error();
  auto me = ws.request("GET", "/users/me");
  ASSERT_TRUE(me);
  EXPECT_EQ(jint(*me, "/status"), 200);
  EXPECT_EQ(jstr(*me, "/body/data/username"), "alice");

  sse_client sse("127.0.0.1", gw_->port());
  sse.set_tls(t);
  ASSERT_EQ(sse.connect(token), 200) << sse.error();
  auto id = uid("tls");
  auto sent = https(t).post("/api/v1/conversations/messages",
                            {{"id", id}, {"content", "over TLS"}}, token);
  EXPECT_OK(sent, 201);
  auto ev = sse.receive("message", [&](const sse_event& e) {
    return jstr(e.json, "/id") == id;
  });
  EXPECT_TRUE(ev) << "no SSE event over TLS";
  auto wev = ws.receive_event("message", [&](const json::value& v) {
    return jstr(v, "/data/id") == id;
  });
  EXPECT_TRUE(wev) << "no WS event over TLS";
  ws.close();
  sse.close();
}

TEST_F(Tls, ClientsVerifyTheGatewayCertificate) {
  // Trusting another CA: the handshake fails on verification.
  auto r = https(trust(pki_.rogue_ca_cert)).get("/api/v1/health");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("certificate verify failed"), std::string::npos)
    << r.error;
  // Plaintext to the TLS port gets no HTTP answer.
  auto plain = http(ms(3000)).get("/api/v1/health");
  EXPECT_EQ(plain.status, 0) << plain.raw;
  EXPECT_NE(read_text(gw_->log_path()).find("tls handshake with 127.0.0.1"),
            std::string::npos);
}

TEST(SecurityTls, KeyFileMustBePrivateAndMatchTheCertificate) {
  temp_dir tmp("aico-pki");
  auto pki = make_test_pki(tmp.path());
  ASSERT_EQ(::chmod(pki.server_key.c_str(), 0644), 0);
  auto r = run_gateway({"--data-dir", tmp.path() + "/d", "--listen",
                        "127.0.0.1:0", "--ipc", "none", "--tls-cert",
                        pki.server_cert, "--tls-key", pki.server_key});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("refusing to use the TLS private key"),
            std::string::npos)
    << r.err;
  EXPECT_NE(r.err.find("chmod 600 " + pki.server_key), std::string::npos)
    << r.err;
  ASSERT_EQ(::chmod(pki.server_key.c_str(), 0600), 0);
  r = run_gateway({"--data-dir", tmp.path() + "/d", "--listen", "127.0.0.1:0",
                   "--ipc", "none", "--tls-cert", pki.server_cert,
                   "--tls-key", pki.self_signed_key});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("does not belong to the certificate"),
            std::string::npos)
    << r.err;
  r = run_gateway({"--data-dir", tmp.path() + "/d", "--listen", "127.0.0.1:0",
                   "--ipc", "none", "--tls-cert", pki.server_cert});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--tls-cert and --tls-key go together"),
            std::string::npos)
    << r.err;
}

class MutualTls : public Tls {
protected:
  gateway_options options() override {
    auto o = Tls::options();
    o.extra_args.insert(o.extra_args.end(),
                        {"--client-ca", pki_.device_ca_cert});
    return o;
  }

  tls_client_options device() const {
    auto t = trust(pki_.ca_cert);
    t.client_cert = pki_.device_cert;
    t.client_key = pki_.device_key;
    return t;
  }
};

TEST_F(MutualTls, ClientCertificateRequiredVerifiedAndLoggedAsDevice) {
  // No client certificate: refused in the handshake.
  auto r = https(trust(pki_.ca_cert)).get("/api/v1/health");
  EXPECT_EQ(r.status, 0) << r.raw;
  // A certificate from a CA the gateway does not trust: refused.
  auto rogue = trust(pki_.ca_cert);
  rogue.client_cert = pki_.rogue_device_cert;
  rogue.client_key = pki_.rogue_device_key;
  r = https(rogue).get("/api/v1/health");
  EXPECT_EQ(r.status, 0) << r.raw;
  // The device's certificate: served, and its subject is in the log.
  EXPECT_OK(https(device()).get("/api/v1/health"), 200);
  EXPECT_TRUE(wait_for_log(*gw_, "device \"CN=kitchen-tablet,O=aico family\""))
    << log_tail();
  // WebSocket and SSE too.
  auto token = login_tls(device());
  ws_client ws("127.0.0.1", gw_->port());
  ws.set_tls(device());
  ASSERT_TRUE(ws.connect(token)) << ws.error();
  auto me = ws.request("GET", "/users/me");
  ASSERT_TRUE(me);
  EXPECT_EQ(jint(*me, "/status"), 200);
  ws_client bare("127.0.0.1", gw_->port());
  bare.set_tls(trust(pki_.ca_cert));
  EXPECT_FALSE(bare.connect(token));
  sse_client sse("127.0.0.1", gw_->port());
  sse.set_tls(device());
  EXPECT_EQ(sse.connect(token), 200) << sse.error();
  ws.close();
  sse.close();
}

// -- CurveZMQ ----------------------------------------------------------------------

class Curve : public GatewayTest {
protected:
  void SetUp() override {
    allow_dir_ = std::make_unique<temp_dir>("aico-allow");
    allow_file_ = allow_dir_->path() + "/ipc-allow";
    client_ = curve_keypair();
    stranger_ = curve_keypair();
    write_text(allow_file_,
               "# devices allowed on the IPC door\n" + client_.first
                 + "  # the test client\n",
               0644);
    GatewayTest::SetUp();
    auto line = gw_->ready_line();
    auto at = line.find(" ipc_key=");
    ASSERT_NE(at, std::string::npos) << line;
    server_key_ = line.substr(at + 9, 40);
  }

  gateway_options options() override {
    auto o = fast_options();
    o.ipc = ipc_endpoint();
    o.extra_args.insert(o.extra_args.end(), {"--ipc-allow", allow_file_});
    return o;
  }

  virtual std::string ipc_endpoint() const { return ""; }

  std::unique_ptr<ipc_client>
  curve_client(const std::pair<std::string, std::string>& keys,
               const std::string& server_key) const {
    curve_client_options c;
    c.server_key = server_key;
    c.public_key = keys.first;
    c.secret_key = keys.second;
    return std::make_unique<ipc_client>(gw_->reported_ipc(), c);
  }

  std::unique_ptr<temp_dir> allow_dir_;
  std::string allow_file_;
  std::pair<std::string, std::string> client_;
  std::pair<std::string, std::string> stranger_;
  std::string server_key_;
};

TEST_F(Curve, KeyPairKeptInTheDataDirAndPublished) {
  EXPECT_EQ(read_text(gw_->data_dir() + "/ipc-curve.pub"), server_key_ + "\n");
  EXPECT_EQ(mode_of(gw_->data_dir() + "/ipc-curve.key") & 07777, 0600u);
  EXPECT_NE(read_text(gw_->log_path()).find("server public key " + server_key_),
            std::string::npos);
  // The same pair after a restart.
  gw_->stop();
  ASSERT_TRUE(gw_->start()) << gw_->last_error();
  EXPECT_NE(gw_->ready_line().find(" ipc_key=" + server_key_),
            std::string::npos);
  // A secret key file others may read is refused.
  gw_->stop();
  ASSERT_EQ(::chmod((gw_->data_dir() + "/ipc-curve.key").c_str(), 0640), 0);
  EXPECT_FALSE(gw_->start(ms(5000)));
  EXPECT_NE(read_text(gw_->log_path())
              .find("refusing to use the IPC CURVE secret key"),
            std::string::npos);
}

TEST_F(Curve, AllowListedClientWithTheRightServerKeyIsServed) {
  auto c = curve_client(client_, server_key_);
  auto r = c->request("GET", "/health", "", "", ms(3000));
  ASSERT_TRUE(r) << "no answer over CURVE";
  EXPECT_EQ(r->status(), 200);
  auto login = c->request("POST", "/users/authenticate",
                          R"({"username":"alice","password":"alice-pw"})");
  ASSERT_TRUE(login);
  EXPECT_EQ(login->status(), 200);
}

TEST_F(Curve, OthersGetNoAnswer) {
  // Not in the allow-list: the ZAP handler refuses the handshake.
  auto stranger = curve_client(stranger_, server_key_);
  EXPECT_FALSE(stranger->request("GET", "/health", "", "", ms(1000)));
  EXPECT_TRUE(wait_for_log(*gw_, "refused CURVE client key " + stranger_.first))
    << log_tail();
  // The right client, but pinning another server key.
  auto impostor = curve_keypair();
  auto wrong_server = curve_client(client_, impostor.first);
  EXPECT_FALSE(wrong_server->request("GET", "/health", "", "", ms(1000)));
  // No CURVE at all.
  ipc_client plain(gw_->reported_ipc());
  EXPECT_FALSE(plain.request("GET", "/health", "", "", ms(1000)));
  // The allowed client still works.
  EXPECT_TRUE(curve_client(client_, server_key_)
                ->request("GET", "/health", "", "", ms(3000)));
}

TEST_F(Curve, AllowListChangesApplyWithoutRestart) {
  write_text(allow_file_, client_.first + "\n" + stranger_.first + "\n",
             0644);
  auto stranger = curve_client(stranger_, server_key_);
  // libzmq reconnects by itself; the next handshake sees the new list.
  auto r = stranger->request("GET", "/health", "", "", ms(5000));
  ASSERT_TRUE(r) << log_tail();
  EXPECT_EQ(r->status(), 200);
}

class CurveTcp : public Curve {
protected:
  std::string ipc_endpoint() const override { return "tcp://127.0.0.1:0"; }
};

TEST_F(CurveTcp, TcpEndpointServedWithCurve) {
  EXPECT_EQ(gw_->reported_ipc().rfind("tcp://127.0.0.1:", 0), 0u);
  auto r = curve_client(client_, server_key_)
             ->request("GET", "/health", "", "", ms(3000));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status(), 200);
  ipc_client plain(gw_->reported_ipc());
  EXPECT_FALSE(plain.request("GET", "/health", "", "", ms(1000)));
}

// -- login throttling ---------------------------------------------------------------

class LoginThrottle : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.extra_args.insert(o.extra_args.end(),
                        {"--login-attempts-user", "3", "--login-attempts-peer",
                         "8", "--login-backoff-ms", "1500",
                         "--login-backoff-max-ms", "3000", "--login-decay-ms",
                         "500"});
    return o;
  }

  http_response login_from(const std::string& local, const std::string& user,
                           const std::string& password) const {
    http_client c("127.0.0.1", gw_->port());
    if (!local.empty())
      c.set_local_address(local);
    return c.post("/api/v1/users/authenticate",
                  {{"username", user}, {"password", password}});
  }
};

TEST_F(LoginThrottle, WrongPasswordsOfOneUserGet429ThenTheLockEnds) {
  int attempts = 0;
  http_response r;
  for (; attempts < 10; ++attempts) {
    r = login_from("", "alice", "guess-" + std::to_string(attempts));
    if (r.status == 429)
      break;
    EXPECT_ERROR(r, 401, "invalid_credentials");
  }
  // Three free failures, the fourth locks: the fifth attempt is refused.
  EXPECT_EQ(attempts, 4);
  EXPECT_ERROR(r, 429, "rate_limited");
  auto retry = r.header("retry-after");
  ASSERT_FALSE(retry.empty());
  EXPECT_GE(std::stoi(retry), 1);
  // Locked means locked, even with the right password...
  EXPECT_ERROR(login_from("", "alice", "alice-pw"), 429, "rate_limited");
  // ...but only for alice: another user from another peer logs in.
  EXPECT_OK(login_from("127.0.0.2", "bob", "bob-pw"), 200);
  // The lock ends (bounded wait).
  auto started = clock::now();
  bool in = false;
  while (!in && clock::now() - started < ms(8000)) {
    in = login_from("", "alice", "alice-pw").status == 200;
    if (!in)
      std::this_thread::sleep_for(ms(100));
  }
  EXPECT_TRUE(in);
  EXPECT_GE(clock::now() - started, ms(500));
}

TEST_F(LoginThrottle, OnePeerGuessingManyUsersIsThrottledOthersAreNot) {
  int attempts = 0;
  http_response r;
  for (; attempts < 20; ++attempts) {
    r = login_from("", "nobody" + std::to_string(attempts), "x");
    if (r.status == 429)
      break;
  }
  EXPECT_EQ(attempts, 9); // eight free failures, the ninth locks the peer
  EXPECT_ERROR(r, 429, "rate_limited");
  // The peer is locked for everyone, bob included...
  EXPECT_ERROR(login_from("", "bob", "bob-pw"), 429, "rate_limited");
  // ...but bob from elsewhere is not.
  EXPECT_OK(login_from("127.0.0.2", "bob", "bob-pw"), 200);
  // The throttle decays: the peer is let in again.
  auto started = clock::now();
  bool in = false;
  while (!in && clock::now() - started < ms(10000)) {
    in = login_from("", "bob", "bob-pw").status == 200;
    if (!in)
      std::this_thread::sleep_for(ms(100));
  }
  EXPECT_TRUE(in);
}

// -- numbers -------------------------------------------------------------------------

class Numbers : public GatewayTest {};

TEST_F(Numbers, NonFiniteNumbersAreRejectedAndNeverStored) {
  auto s = alice();
  auto ok = http().put("/api/v1/users/me/preferences", json::object{{"theme",
                                                                     "dark"}},
                       s.access);
  EXPECT_OK(ok, 200);
  auto r = http().request("PUT", "/api/v1/users/me/preferences",
                          R"({"big":1e400})", s.access);
  EXPECT_ERROR(r, 400, "validation_error");
  EXPECT_EQ(jstr(r.body, "/details/field"), "big") << r.raw;
  r = http().request("PUT", "/api/v1/users/me/preferences",
                     R"({"small":-1e999,"theme":"light"})", s.access);
  EXPECT_ERROR(r, 400, "validation_error");
  // Nothing was stored, nothing was lost.
  auto me = http().get("/api/v1/users/me", s.access);
  EXPECT_OK(me, 200);
  EXPECT_EQ(jstr(me.body, "/data/preferences/theme"), "dark") << me.raw;
  EXPECT_EQ(jptr(me.body, "/data/preferences/big"), nullptr);
  // Anywhere in a body: nested in message metadata.
  r = http().request("POST", "/api/v1/conversations/messages",
                     R"({"id":"nf-1","content":"x","metadata":{"a":[1,1e308,)"
                     R"(3e308]}})",
                     s.access);
  EXPECT_ERROR(r, 400, "validation_error");
  EXPECT_EQ(jstr(r.body, "/details/field"), "metadata.a[2]") << r.raw;
  // Over the WebSocket: an error frame, no Infinity anywhere.
  auto ws = this->ws(s.access);
  ASSERT_TRUE(ws->send_text(
    R"({"type":"request","id":"w1","method":"PUT",)"
    R"("path":"/users/me/preferences","body":{"big":1e400}})"));
  auto err = ws->receive_type("error");
  ASSERT_TRUE(err);
  EXPECT_EQ(jint(*err, "/status"), 400);
  EXPECT_EQ(jstr(*err, "/code"), "validation_error");
  EXPECT_EQ(jstr(*err, "/id"), "w1");
  // Over IPC.
  auto ipc = this->ipc();
  auto ir = ipc->request("PUT", "/users/me/preferences", R"({"big":1e400})",
                         s.access);
  ASSERT_TRUE(ir);
  EXPECT_EQ(ir->status(), 400);
  me = http().get("/api/v1/users/me", s.access);
  EXPECT_EQ(jstr(me.body, "/data/preferences/theme"), "dark") << me.raw;
}

// -- bounded output per connection ------------------------------------------------------

class SlowConsumer : public GatewayTest {
protected:
  gateway_options options() override {
    auto o = fast_options();
    o.bot = false;
    return o;
  }

  /// Fills alice's conversation with `n` messages of 4000 characters.
  void fill(const session& s, int n) {
    http_connection conn("127.0.0.1", gw_->port(), ms(10000));
    ASSERT_TRUE(conn.connect());
    std::string content(4000, 'x');
    for (int i = 0; i < n; ++i) {
      json::object b{{"id", uid("big")}, {"content", content}};
      auto r = conn.request("POST", "/api/v1/conversations/messages",
                            to_text(b), s.access);
      ASSERT_EQ(r.status, 201) << r.raw << r.error;
    }
  }
};

// The probe of issue 12: an authenticated client asks for ~2 MB history
// pages over a WebSocket and never reads. Before byte limits the gateway
// read on and queued every answer (counted in frames): its memory grew by
// the size of every page asked for. Now reading pauses once half the limit
// (32 MiB) is queued and the connection is closed with 1008.
TEST_F(SlowConsumer, WebSocketThatNeverReadsIsClosedAndMemoryStaysBounded) {
#if defined(__SANITIZE_ADDRESS__)
  // An ASan build's gateway keeps freed memory in quarantine (256 MiB by
  // default) and starts at ~300 MiB: its RSS says nothing about the output
  // limit (measured: 314 MiB before, 359 MiB after). The plain suite checks
  // the bound.
  GTEST_SKIP() << "RSS bound not meaningful under AddressSanitizer";
#endif
#if defined(__SANITIZE_THREAD__)
  // TSan keeps shadow memory and a history per access (measured: 120 MiB
  // before, 310 MiB after, against the plain build's bound of 300 MiB):
  // the plain suite checks the bound.
  GTEST_SKIP() << "RSS bound not meaningful under ThreadSanitizer";
#endif
  auto s = alice();
  fill(s, 500);
  namespace net = boost::asio;
  namespace beast = boost::beast;
  namespace websocket = beast::websocket;
  net::io_context ioc;
  websocket::stream<net::ip::tcp::socket> ws(ioc);
  auto& sock = ws.next_layer();
  sock.open(net::ip::tcp::v4());
  sock.set_option(net::socket_base::receive_buffer_size(4096));
  timeval tv{10, 0}; // no blocking call can hang the test
  ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sock.connect({net::ip::make_address("127.0.0.1"), gw_->port()});
  ws.set_option(websocket::stream_base::decorator(
    [&](websocket::request_type& req) {
      req.set(beast::http::field::authorization, "Bearer " + s.access);
    }));
  ws.handshake("127.0.0.1", "/api/v1/ws");
  ws.read_message_max(64 * 1024 * 1024);
  long before = peak_rss_kib(gw_->pid());
  const int pages = 300; // ~650 MB of answers if they were all queued
  int sent = 0;
  for (; sent < pages; ++sent) {
    boost::system::error_code ec;
    ws.write(net::buffer(
               R"({"type":"request","id":"p)" + std::to_string(sent)
               + R"(","method":"GET","path":"/conversations/current/messages?limit=500"})"),
             ec);
    if (ec)
      break; // the gateway stopped reading and our buffers are full
  }
  EXPECT_GT(sent, 100);
  // Until the gateway gives up on us -- or its memory passes the bound.
  const long bound_kib = 300 * 1024;
  bool closed = false;
  long peak = 0;
  for (auto deadline = clock::now() + ms(30000);
       !closed && clock::now() < deadline;) {
    closed = wait_for_log(*gw_, "closed: slow consumer", ms(100));
    peak = peak_rss_kib(gw_->pid());
    if (peak > bound_kib)
      break;
  }
  EXPECT_TRUE(closed) << log_tail();
  peak = peak_rss_kib(gw_->pid());
  std::cerr << "gateway peak RSS " << before / 1024 << " MiB before, "
            << peak / 1024 << " MiB after asking for " << sent
            << " pages of ~2.1 MB without reading\n";
  EXPECT_LT(peak, bound_kib) << "gateway memory grew with the unread output";
  if (!closed)
    return;
  // Now read: some answers, then the close frame with 1008.
  int answers = 0;
  boost::system::error_code ec;
  for (;;) {
    beast::flat_buffer buf;
    ws.read(buf, ec);
    if (ec)
      break;
    ++answers;
  }
  EXPECT_EQ(ec, websocket::error::closed) << ec.message();
  EXPECT_EQ(ws.reason().code, websocket::close_code::policy_error);
  EXPECT_LT(answers, sent) << "reading should have paused";
  // The gateway is fine.
  EXPECT_OK(http().get("/api/v1/health"), 200);
}

class SlowSse : public SlowConsumer {
protected:
  gateway_options options() override {
    auto o = SlowConsumer::options();
    o.extra_args.insert(o.extra_args.end(), {"--sse-max-out-bytes", "65536"});
    return o;
  }
};

TEST_F(SlowSse, EventStreamThatNeverReadsIsEnded) {
  auto s = alice();
  namespace net = boost::asio;
  net::io_context ioc;
  net::ip::tcp::socket sock(ioc);
  sock.open(net::ip::tcp::v4());
  sock.set_option(net::socket_base::receive_buffer_size(4096));
  timeval tv{10, 0};
  ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sock.connect({net::ip::make_address("127.0.0.1"), gw_->port()});
  std::string req = "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Authorization: Bearer "
                    + s.access + "\r\nAccept: text/event-stream\r\n\r\n";
  net::write(sock, net::buffer(req));
  // Events nobody reads: 64 KiB allowed in the gateway, plus what the
  // kernel buffers hold.
  http_connection conn("127.0.0.1", gw_->port(), ms(10000));
  ASSERT_TRUE(conn.connect());
  std::string content(4000, 'y');
  bool ended = false;
  for (int i = 0; i < 3000 && !ended; ++i) {
    json::object b{{"id", uid("ev")}, {"content", content}};
    auto r = conn.request("POST", "/api/v1/conversations/messages",
                          to_text(b), s.access);
    ASSERT_EQ(r.status, 201) << r.raw << r.error;
    if (i % 50 == 49)
      ended = wait_for_log(*gw_, "ended: slow consumer", ms(200));
  }
  EXPECT_TRUE(ended || wait_for_log(*gw_, "ended: slow consumer", ms(5000)))
    << log_tail();
  // The stream really ended: reading reaches the end (bounded).
  boost::system::error_code ec;
  std::array<char, 65536> buf{};
  for (int i = 0; i < 100000; ++i) {
    sock.read_some(net::buffer(buf), ec);
    if (ec)
      break;
  }
  EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset)
    << ec.message();
}

} // namespace aico::test
