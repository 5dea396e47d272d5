// aico-stress, distributed mode on loopback: a controller and worker
// processes (CAF io middleman). The merged run must be as exact as a
// single-process one; a worker killed mid-run must fail the run (exit 1,
// a message naming it), never hang it.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/aico-dist-" + std::to_string(getpid()) + "-"
         + name;
}

/// Starts AICO_STRESS_BIN with `args`, stdout and stderr to files.
pid_t spawn(const std::vector<std::string>& args, const std::string& out,
            const std::string& err) {
  std::vector<std::string> all{AICO_STRESS_BIN};
  all.insert(all.end(), args.begin(), args.end());
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0)
      _exit(127);
    dup2(o, 1);
    dup2(e, 2);
    int n = open("/dev/null", O_RDONLY);
    if (n >= 0)
      dup2(n, 0);
    std::vector<char*> argv;
    for (auto& a : all)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

/// Waits up to `limit` for `pid`; its exit code, or -1 (then it is killed).
int wait_for(pid_t pid, std::chrono::seconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int st = 0;
    auto r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (r < 0)
      return -1;
    if (std::chrono::steady_clock::now() >= until) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    std::this_thread::sleep_for(50ms);
  }
}

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

/// The controller's port from --port-file (0 if not there within limit).
int wait_port(const std::string& path, pid_t controller,
              std::chrono::seconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    auto text = slurp(path);
    if (!text.empty() && text.back() == '\n')
      return std::atoi(text.c_str());
    int st = 0;
    if (waitpid(controller, &st, WNOHANG) == controller)
      return 0; // ended before publishing
    std::this_thread::sleep_for(50ms);
  }
  return 0;
}

/// True once `needle` shows up in the file (bounded).
bool wait_text(const std::string& path, const std::string& needle,
               std::chrono::seconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (slurp(path).find(needle) != std::string::npos)
      return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

uint64_t get(const json::object& o, const char* key) {
  return o.at(key).to_number<uint64_t>();
}

struct run_files {
  std::string name;
  std::string out, err;
  explicit run_files(const std::string& n)
    : name(n), out(temp_path(n + ".out")), err(temp_path(n + ".err")) {
  }
  ~run_files() {
    std::remove(out.c_str());
    std::remove(err.c_str());
  }
};

} // namespace

TEST(StressDistributed, ThreeWorkersOnLoopbackAreExact) {
  auto port_file = temp_path("port");
  std::remove(port_file.c_str());
  run_files ctl{"controller"};
  auto plot = temp_path("plot.svg");
  auto cpid = spawn({"--controller", "--workers", "3", "--port-file",
                     port_file, "--worker-timeout", "30", "--users", "60",
                     "--rate", "60", "--duration", "12", "--ramp", "2",
                     // the gRPC door: opened by the controller's gateway,
                     // its endpoint handed to the workers with the job
                     "--transports", "grpc,ws,http",
                     "--faults",
                     "every 4s: grpc down 2s; every 5s: ws down 2s; 5% 503",
                     "--drain-timeout", "40", "--json", "--plot", plot},
                    ctl.out, ctl.err);
  ASSERT_GT(cpid, 0);
  auto port = wait_port(port_file, cpid, 30s);
  ASSERT_GT(port, 0) << slurp(ctl.err);
  EXPECT_NE(slurp(ctl.err).find("controller listening on 127.0.0.1:"
                                + std::to_string(port)),
            std::string::npos);
  auto target = "127.0.0.1:" + std::to_string(port);
  std::vector<pid_t> workers;
  std::vector<std::unique_ptr<run_files>> wf;
  for (int i = 0; i < 3; ++i) {
    wf.push_back(std::make_unique<run_files>("worker" + std::to_string(i)));
    workers.push_back(spawn({"--worker", "--connect", target, "--threads", "2"},
                            wf.back()->out, wf.back()->err));
  }
  auto rc = wait_for(cpid, 150s);
  std::vector<int> wrc;
  for (auto pid : workers)
    wrc.push_back(wait_for(pid, 20s));
  auto out = slurp(ctl.out);
  auto err = slurp(ctl.err);
  std::fprintf(stderr, "%s\n%s\n", err.c_str(), out.c_str());
  EXPECT_EQ(rc, 0);
  for (size_t i = 0; i < wrc.size(); ++i)
    EXPECT_EQ(wrc[i], 0) << "worker " << i << ": " << slurp(wf[i]->err);
  std::remove(port_file.c_str());
  boost::system::error_code ec;
  auto jv = json::parse(out, ec);
  ASSERT_FALSE(ec) << "not JSON: " << out;
  auto& o = jv.as_object();
  EXPECT_EQ(get(o, "workers"), 3u);
  EXPECT_EQ(get(o.at("config").as_object(), "users"), 60u);
  EXPECT_EQ(get(o.at("memory").as_object(), "sessions"), 60u);
  auto& integ = o.at("integrity").as_object();
  EXPECT_TRUE(integ.at("checked").as_bool());
  EXPECT_TRUE(integ.at("exact").as_bool());
  EXPECT_EQ(get(integ, "lost"), 0u);
  EXPECT_EQ(get(integ, "duplicated"), 0u);
  EXPECT_EQ(get(integ, "out_of_order"), 0u);
  EXPECT_GT(get(integ, "sent"), 0u);
  EXPECT_EQ(get(integ, "sent"), get(integ, "stored"));
  EXPECT_EQ(get(integ, "conversations"), 60u); // every user's, merged
  EXPECT_GT(get(o.at("faults").as_object(), "actions"), 0u);
  // the workers' users were on gRPC (the door's endpoint reached them)
  EXPECT_TRUE(o.at("transports").as_object().contains("grpc")) << out;
  // merged histograms: the send count is every worker's
  auto& send = o.at("operations").as_object().at("send").as_object();
  EXPECT_EQ(get(send, "ok"),
            get(send.at("latency").as_object(), "count"));
  EXPECT_GT(get(send, "ok"), 0u);
  EXPECT_LE(get(send, "ok"), get(integ, "sent")); // each ok is a sent id
  // the plot
  auto svg = slurp(plot);
  std::remove(plot.c_str());
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("data-series=\"send\""), std::string::npos);
  // each worker got a distinct slice
  for (auto& f : wf)
    EXPECT_NE(slurp(f->err).find("result delivered (20 sessions)"),
              std::string::npos)
      << slurp(f->err);
}

TEST(StressDistributed, KilledWorkerFailsTheRunWithoutHanging) {
  auto port_file = temp_path("port2");
  std::remove(port_file.c_str());
  run_files ctl{"controller2"};
  auto cpid = spawn({"--controller", "--workers", "2", "--port-file",
                     port_file, "--worker-timeout", "30", "--users", "10",
                     "--rate", "20", "--duration", "30", "--json"},
                    ctl.out, ctl.err);
  ASSERT_GT(cpid, 0);
  auto port = wait_port(port_file, cpid, 30s);
  ASSERT_GT(port, 0) << slurp(ctl.err);
  auto target = "127.0.0.1:" + std::to_string(port);
  run_files w1{"w1"}, w2{"w2"};
  auto p1 = spawn({"--worker", "--connect", target, "--threads", "1"}, w1.out,
                  w1.err);
  auto p2 = spawn({"--worker", "--connect", target, "--threads", "1"}, w2.out,
                  w2.err);
  // both run their slice: then one dies without a word
  ASSERT_TRUE(wait_text(w1.err, "msg/s for 30 s", 30s)) << slurp(w1.err);
  ASSERT_TRUE(wait_text(w2.err, "msg/s for 30 s", 30s)) << slurp(w2.err);
  std::this_thread::sleep_for(2s);
  kill(p1, SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  auto rc = wait_for(cpid, 60s);
  auto took = std::chrono::steady_clock::now() - t0;
  auto r1 = wait_for(p1, 5s);
  auto r2 = wait_for(p2, 30s);
  auto err = slurp(ctl.err);
  std::fprintf(stderr, "%s\n", err.c_str());
  std::remove(port_file.c_str());
  EXPECT_EQ(rc, 1); // not -1: it ended by itself
  EXPECT_LT(took, 25s); // well before the 30 s load would have ended
  EXPECT_EQ(r1, 128 + SIGKILL);
  auto pid1 = ":" + std::to_string(p1) + ")";
  EXPECT_NE(err.find("disappeared before its result"), std::string::npos)
    << err;
  EXPECT_NE(err.find(pid1), std::string::npos) << err; // names the worker
  // the other worker stops and says why (aborted, or the controller gone)
  EXPECT_EQ(r2, 1) << slurp(w2.err);
  auto e2 = slurp(w2.err);
  EXPECT_TRUE(e2.find("aborted the run") != std::string::npos
              || e2.find("lost the controller") != std::string::npos)
    << e2;
  EXPECT_EQ(slurp(ctl.out), ""); // no report for a failed run
}

TEST(StressDistributed, BadOptionsAreUsageErrors) {
  auto rc_of = [](const std::vector<std::string>& args, std::string& err) {
    run_files f{"usage"};
    auto pid = spawn(args, f.out, f.err);
    auto rc = wait_for(pid, 20s);
    err = slurp(f.err);
    return rc;
  };
  std::string err;
  EXPECT_EQ(rc_of({"--worker"}, err), 2);
  EXPECT_NE(err.find("--worker needs --connect"), std::string::npos) << err;
  EXPECT_EQ(rc_of({"--controller", "--workers", "0"}, err), 2);
  EXPECT_NE(err.find("--workers N (N >= 1)"), std::string::npos) << err;
  EXPECT_EQ(rc_of({"--controller"}, err), 2);
  EXPECT_EQ(rc_of({"--worker", "--connect", "127.0.0.1:1", "--users", "5"},
                  err),
            2);
  EXPECT_NE(err.find("--users belongs on the controller"), std::string::npos)
    << err;
  EXPECT_EQ(rc_of({"--worker", "--connect", "127.0.0.1:1", "--grpc",
                   "127.0.0.1:5"},
                  err),
            2);
  EXPECT_NE(err.find("--grpc belongs on the controller"), std::string::npos)
    << err;
  EXPECT_EQ(rc_of({"--worker", "--connect", "nohostport"}, err), 2);
  EXPECT_EQ(rc_of({"--workers", "2"}, err), 2);
  EXPECT_NE(err.find("--workers needs --controller"), std::string::npos);
  EXPECT_EQ(rc_of({"--controller", "--workers", "5", "--users", "3"}, err), 2);
  EXPECT_EQ(rc_of({"--plot", "x.png"}, err), 2);
  EXPECT_NE(err.find("only SVG"), std::string::npos) << err;
  // a worker with nobody to connect to gives up after --connect-timeout
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(rc_of({"--worker", "--connect", "127.0.0.1:1",
                   "--connect-timeout", "1"},
                  err),
            1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
  EXPECT_NE(err.find("cannot reach the controller"), std::string::npos)
    << err;
}
