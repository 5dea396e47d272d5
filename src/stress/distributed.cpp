#include "src/stress/distributed.hpp"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

#include "messages/errors.hpp"

#include "src/stress/http_client.hpp"
#include "src/stress/load.hpp"
#include "src/stress/slice.hpp"
#include "src/stress/wire.hpp"

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace aico::stress {

namespace {

double seconds_since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

void configure(caf::actor_system_config& cfg, int threads) {
  cfg.load<caf::io::middleman>();
  add_wire_types(cfg);
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads", threads);
}

// -- controller ----------------------------------------------------------------------

struct worker_slot {
  std::string name;
  caf::actor agent;
  bool down = false;
  std::string down_reason;
  bool has_progress = false;
  wire_progress progress;
  bool has_result = false;
  wire_result result;
};

/// Shared between the controller actor and the main thread (mx).
struct controller_shared {
  std::mutex mx;
  std::condition_variable cv;
  size_t expected = 0;
  std::vector<worker_slot> workers;

  worker_slot* find(const caf::strong_actor_ptr& p) {
    if (!p)
      return nullptr;
    for (auto& w : workers)
      if (w.agent.address() == p->address())
        return &w;
    return nullptr;
  }
};

std::string worker_label(const controller_shared& sh, size_t i) {
  return "worker " + std::to_string(i + 1) + " (" + sh.workers[i].name + ")";
}

caf::behavior controller_actor(caf::event_based_actor* self,
                               controller_shared* sh) {
  self->set_down_handler([=](caf::down_msg& dm) {
    try {
      std::lock_guard<std::mutex> g{sh->mx};
      for (auto& w : sh->workers)
        if (w.agent.address() == dm.source && !w.down) {
          w.down = true;
          w.down_reason = to_string(dm.reason);
        }
      sh->cv.notify_all();
    } catch (const std::exception& e) {
      std::cerr << "aico-stress: controller: " << e.what() << std::endl;
    }
  });
  return {
    [=](reg_atom, const std::string& name, const caf::actor& agent) {
      try {
        std::lock_guard<std::mutex> g{sh->mx};
        if (!agent)
          return;
        if (sh->workers.size() >= sh->expected) {
          self->send(agent, reject_atom::value,
                     "the controller already has its "
                       + std::to_string(sh->expected) + " workers");
          return;
        }
        self->monitor(agent);
        worker_slot w;
        w.name = name;
        w.agent = agent;
        sh->workers.push_back(std::move(w));
        std::cerr << "aico-stress: worker " << sh->workers.size() << "/"
                  << sh->expected << " connected: " << name << std::endl;
        sh->cv.notify_all();
      } catch (const std::exception& e) {
        std::cerr << "aico-stress: controller: " << e.what() << std::endl;
      }
    },
    [=](const wire_progress& p) {
      try {
        std::lock_guard<std::mutex> g{sh->mx};
        if (auto w = sh->find(self->current_sender())) {
          w->progress = p;
          w->has_progress = true;
        }
        sh->cv.notify_all();
      } catch (const std::exception& e) {
        std::cerr << "aico-stress: controller: " << e.what() << std::endl;
      }
    },
    [=](const wire_result& r) -> caf::result<caf::ok_atom> {
      try {
        std::lock_guard<std::mutex> g{sh->mx};
        auto w = sh->find(self->current_sender());
        if (!w)
          return caf::make_error(caf::sec::invalid_argument,
                                 "result from an unknown worker");
        w->result = r;
        w->has_result = true;
        sh->cv.notify_all();
        return caf::ok_atom::value;
      } catch (const std::exception& e) {
        return caf::make_error(caf::sec::runtime_error, e.what());
      }
    },
  };
}

bool write_port_file(const std::string& path, uint16_t port) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::trunc};
    if (!out)
      return false;
    out << port << "\n";
    if (!out.flush())
      return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// -- worker ------------------------------------------------------------------------------

/// Shared between the worker's agent actor and its main thread (mx).
struct worker_shared {
  std::mutex mx;
  std::condition_variable cv;
  bool have_job = false;
  wire_job job;
  std::string rejected;
  std::string aborted;
  bool lost = false;
  std::string lost_reason;
  bool delivered = false;
  std::string deliver_error;
  std::atomic<bool> stop{false};
};

caf::behavior worker_agent(caf::event_based_actor* self, worker_shared* ws,
                           caf::actor ctl, std::string name) {
  self->monitor(ctl);
  self->set_down_handler([=](caf::down_msg& dm) {
    if (dm.source != ctl.address())
      return;
    try {
      std::lock_guard<std::mutex> g{ws->mx};
      ws->lost = true;
      ws->lost_reason = to_string(dm.reason);
      ws->stop = true;
      ws->cv.notify_all();
    } catch (...) {
      ws->stop = true;
    }
  });
  self->send(ctl, reg_atom::value, name,
             caf::actor_cast<caf::actor>(self));
  return {
    [=](const wire_job& j) {
      try {
        std::lock_guard<std::mutex> g{ws->mx};
        ws->job = j;
        ws->have_job = true;
        ws->cv.notify_all();
      } catch (...) {
        ws->stop = true;
      }
    },
    [=](reject_atom, const std::string& why) {
      try {
        std::lock_guard<std::mutex> g{ws->mx};
        ws->rejected = why.empty() ? "rejected" : why;
        ws->stop = true;
        ws->cv.notify_all();
      } catch (...) {
        ws->stop = true;
      }
    },
    [=](abort_atom, const std::string& why) {
      try {
        std::lock_guard<std::mutex> g{ws->mx};
        ws->aborted = why.empty() ? "aborted" : why;
        ws->stop = true;
        ws->cv.notify_all();
      } catch (...) {
        ws->stop = true;
      }
    },
    // from the worker's main thread: forwarded, so the controller sees the
    // agent as the sender
    [=](const wire_progress& p) { self->send(ctl, p); },
    [=](const wire_result& r) {
      self->request(ctl, std::chrono::seconds(120), r)
        .then(
          [=](caf::ok_atom) {
            std::lock_guard<std::mutex> g{ws->mx};
            ws->delivered = true;
            ws->cv.notify_all();
          },
          [=](const caf::error& e) {
            std::lock_guard<std::mutex> g{ws->mx};
            ws->deliver_error = aico::describe(e);
            ws->cv.notify_all();
          });
    },
  };
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0)
    return "worker";
  return buf;
}

} // namespace

// -- controller ------------------------------------------------------------------------------

int run_controller(options& o) {
  std::string err;
  std::string host;
  uint16_t port = 0;
  if (!parse_host_port(o.listen, host, port)) {
    std::cerr << "aico-stress: --listen: expected HOST:PORT, got '"
              << o.listen << "'" << std::endl;
    return 2;
  }
  temp_root root;
  gateway_setup g;
  if (auto rc = prepare_run(o, root, g))
    return rc;
  auto slices = split_users(o.users, o.rate, o.messages, o.workers);
  int rc = 1;
  std::unique_ptr<fault_driver> fd;
  controller_shared sh;
  sh.expected = static_cast<size_t>(o.workers);
  {
    caf::actor_system_config cfg;
    configure(cfg, 2); // the controller runs no users
    caf::actor_system sys{cfg};
    auto ctl = sys.spawn(controller_actor, &sh);
    // on failure: tell the workers that are still there, and end
    auto fail = [&](const std::string& why) {
      std::cerr << "aico-stress: run failed: " << why << std::endl;
      {
        std::lock_guard<std::mutex> lk{sh.mx};
        for (auto& w : sh.workers)
          if (!w.down && !w.has_result)
            caf::anon_send(w.agent, abort_atom::value, why);
      }
      std::this_thread::sleep_for(300ms); // let BASP write the aborts
      caf::anon_send_exit(ctl, caf::exit_reason::user_shutdown);
      return 1;
    };
    auto published = sys.middleman().publish(ctl, port, host.c_str());
    if (!published) {
      std::cerr << "aico-stress: --listen " << o.listen
                << ": cannot listen: " << aico::describe(published.error())
                << std::endl;
      caf::anon_send_exit(ctl, caf::exit_reason::user_shutdown);
      return 1;
    }
    std::cerr << "aico-stress: controller listening on " << host << ":"
              << *published << std::endl;
    if (!o.port_file.empty() && !write_port_file(o.port_file, *published)) {
      std::cerr << "aico-stress: --port-file: cannot write " << o.port_file
                << std::endl;
      caf::anon_send_exit(ctl, caf::exit_reason::user_shutdown);
      return 1;
    }
    std::cerr << "aico-stress: waiting up to " << o.worker_timeout
              << " s for " << o.workers << " workers (aico-stress --worker "
              << "--connect " << host << ":" << *published << ")"
              << std::endl;
    // -- wait for the workers -----------------------------------------------------------
    {
      auto until = steady::now()
                   + std::chrono::duration_cast<steady::duration>(
                     std::chrono::duration<double>(o.worker_timeout));
      std::unique_lock<std::mutex> lk{sh.mx};
      while (sh.workers.size() < sh.expected && !interrupted()
             && steady::now() < until)
        sh.cv.wait_for(lk, 100ms);
      for (size_t i = 0; i < sh.workers.size(); ++i)
        if (sh.workers[i].down) {
          auto why = worker_label(sh, i) + " disconnected before the start ("
                     + sh.workers[i].down_reason + ")";
          lk.unlock();
          return fail(why);
        }
      if (sh.workers.size() < sh.expected) {
        auto why = interrupted()
                     ? std::string{"interrupted while waiting for workers"}
                     : "only " + std::to_string(sh.workers.size()) + " of "
                         + std::to_string(sh.expected)
                         + " workers connected within "
                         + std::to_string(static_cast<int>(o.worker_timeout))
                         + " s";
        lk.unlock();
        return fail(why);
      }
    }
    // -- faults, jobs ---------------------------------------------------------------------
    if (!g.faults.empty()) {
      fd = std::make_unique<fault_driver>(g.faults, g.url, g.admin_user,
                                          g.admin_pw, g.gw.get());
      if (!fd->start(err))
        return fail(err);
    }
    {
      std::lock_guard<std::mutex> lk{sh.mx};
      for (size_t i = 0; i < sh.workers.size(); ++i) {
        wire_job j;
        j.index = static_cast<uint32_t>(i);
        j.workers = static_cast<uint32_t>(sh.workers.size());
        j.first = slices[i].first;
        j.count = slices[i].count;
        j.rate = slices[i].rate;
        j.limited = o.messages > 0;
        j.messages = slices[i].messages;
        j.duration = o.duration;
        j.ramp = o.ramp;
        j.drain_timeout = o.drain_timeout;
        j.url = g.url;
        j.endpoints = g.endpoints;
        j.password = o.password;
        j.transports = o.transports;
        j.mix = o.mix;
        j.conversations = o.conversations;
        j.seed = o.seed;
        caf::anon_send(sh.workers[i].agent, j);
        std::cerr << "aico-stress: " << worker_label(sh, i) << ": users "
                  << user_name(j.first) << ".."
                  << user_name(j.first + j.count - 1) << ", " << j.rate
                  << " msg/s" << std::endl;
      }
    }
    // -- progress until every result is in -----------------------------------------------
    auto t0 = steady::now();
    // every worker is bounded by duration + drain; a margin for the start
    // (logins), the fault reset and the result's transfer
    auto limit = o.duration + o.drain_timeout + 60;
    progress_printer pp{o.duration, o.messages};
    bool faults_stopped = false;
    uint64_t fault_actions = 0, kills = 0;
    std::string failure;
    while (failure.empty()) {
      progress_counters sum;
      size_t draining = 0, results = 0;
      uint64_t queued = 0;
      double load_s = 0;
      {
        std::unique_lock<std::mutex> lk{sh.mx};
        sh.cv.wait_for(lk, 50ms);
        for (size_t i = 0; i < sh.workers.size() && failure.empty(); ++i) {
          auto& w = sh.workers[i];
          if (w.has_result && !w.result.error.empty())
            failure = worker_label(sh, i) + " failed: " + w.result.error;
          else if (w.down && !w.has_result)
            failure = worker_label(sh, i) + " disappeared before its result ("
                      + w.down_reason + ")";
          if (w.has_progress) {
            sum.add(w.progress.counters);
            if (w.progress.phase >= static_cast<uint8_t>(load_phase::draining)) {
              ++draining;
              queued += w.progress.counters.outstanding;
              load_s = std::max(load_s, w.progress.elapsed_s);
            }
          } else {
            sum.users += static_cast<uint64_t>(slices[i].count);
          }
          if (w.has_result) {
            ++results;
            if (!w.has_progress || w.progress.phase
                                     < static_cast<uint8_t>(load_phase::draining))
              ++draining;
          }
        }
      }
      if (!failure.empty())
        break;
      auto e = seconds_since(t0);
      if (!faults_stopped)
        pp.update(e, sum);
      if (!faults_stopped && draining == sh.expected) {
        // every worker stopped its load: restore the gateway for the drain
        faults_stopped = true;
        if (fd) {
          fd->stop();
          fault_actions = fd->actions();
          kills = fd->kills();
        }
        pp.end_line();
        std::cerr << "aico-stress: load stopped after " << load_s
                  << " s on all workers, draining " << queued << " queued"
                  << std::endl;
      }
      if (results == sh.expected)
        break;
      if (interrupted())
        failure = "interrupted";
      else if (e > limit)
        failure = "no result from every worker within "
                  + std::to_string(static_cast<int>(limit)) + " s";
    }
    if (!failure.empty()) {
      if (!faults_stopped)
        pp.end_line();
      if (fd)
        fd->stop();
      rc = fail(failure);
    } else {
      // -- merge, integrity, report --------------------------------------------------
      report rep;
      rep.users = static_cast<uint64_t>(o.users);
      rep.rate = o.rate;
      rep.duration_s = o.duration;
      rep.transports = o.transports;
      rep.mix = o.mix;
      rep.faults = o.faults.empty() ? "none" : describe(g.faults);
      rep.seed = o.seed;
      rep.workers = sh.workers.size();
      std::map<std::string, std::vector<std::string>> sent;
      std::vector<int> users;
      {
        std::lock_guard<std::mutex> lk{sh.mx};
        for (size_t i = 0; i < sh.workers.size(); ++i) {
          auto& r = sh.workers[i].result;
          rep.merge(r.rep);
          for (auto& [conv, ids] : r.sent) {
            auto& v = sent[conv];
            v.insert(v.end(), ids.begin(), ids.end());
          }
          for (uint64_t k = 0; k < r.rep.sessions; ++k)
            users.push_back(slices[i].first + static_cast<int>(k));
        }
      }
      rep.fault_actions = fault_actions;
      rep.gateway_kills = kills;
      std::string ierr;
      rep.integrity_checked = check_store(g.url, o.password, o.conversations,
                                          users, sent, rep.integrity, ierr);
      if (!rep.integrity_checked)
        std::cerr << "aico-stress: integrity check failed: " << ierr
                  << std::endl;
      rc = emit_report(rep, o);
      caf::anon_send_exit(ctl, caf::exit_reason::user_shutdown);
    }
  }
  if (g.gw)
    g.gw->stop();
  if (fd)
    fd->finish();
  return rc;
}

// -- worker ------------------------------------------------------------------------------------

int run_worker(const options& o) {
  std::string host;
  uint16_t port = 0;
  if (!parse_host_port(o.connect, host, port) || port == 0) {
    std::cerr << "aico-stress: --connect: expected HOST:PORT, got '"
              << o.connect << "'" << std::endl;
    return 2;
  }
  auto name = host_name() + ":" + std::to_string(getpid());
  worker_shared ws; // outlives the actor system (the agent points to it)
  caf::actor_system_config cfg;
  configure(cfg, scheduler_threads(o));
  caf::actor_system sys{cfg};
  // -- connect (retried until --connect-timeout) -----------------------------------------
  caf::actor ctl;
  {
    auto until = steady::now()
                 + std::chrono::duration_cast<steady::duration>(
                   std::chrono::duration<double>(o.connect_timeout));
    std::string last = "timeout";
    for (;;) {
      auto r = sys.middleman().remote_actor(host, port);
      if (r) {
        ctl = *r;
        break;
      }
      last = aico::describe(r.error());
      if (interrupted() || steady::now() >= until) {
        std::cerr << "aico-stress: worker: cannot reach the controller at "
                  << o.connect << " within " << o.connect_timeout << " s ("
                  << last << ")" << std::endl;
        return 1;
      }
      std::this_thread::sleep_for(250ms);
    }
  }
  auto agent = sys.spawn(worker_agent, &ws, ctl, name);
  auto end_agent = [&] {
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
  };
  auto lost_line = [&] {
    std::lock_guard<std::mutex> lk{ws.mx};
    if (!ws.aborted.empty())
      return "the controller aborted the run: " + ws.aborted;
    if (!ws.rejected.empty())
      return "the controller rejected this worker: " + ws.rejected;
    if (ws.lost)
      return "lost the controller at " + o.connect + " (" + ws.lost_reason
             + ")";
    return std::string{"interrupted"};
  };
  std::cerr << "aico-stress: worker " << name << ": connected to "
            << o.connect << ", waiting for a job" << std::endl;
  // -- the job (the controller waits for all its workers first; it is
  //    bounded by its --worker-timeout, then aborts or goes away) ------------------
  wire_job job;
  {
    std::unique_lock<std::mutex> lk{ws.mx};
    while (!ws.have_job && !ws.stop && !interrupted())
      ws.cv.wait_for(lk, 100ms);
    if (!ws.have_job) {
      lk.unlock();
      std::cerr << "aico-stress: worker: " << lost_line() << std::endl;
      end_agent();
      return 1;
    }
    job = ws.job;
  }
  auto tag = "aico-stress: worker " + std::to_string(job.index + 1) + "/"
             + std::to_string(job.workers) + ": ";
  auto send_error = [&](const std::string& why) {
    std::cerr << tag << why << std::endl;
    wire_result res;
    res.index = job.index;
    res.error = name + ": " + why;
    caf::anon_send(agent, res);
    std::unique_lock<std::mutex> lk{ws.mx};
    ws.cv.wait_for(lk, 5s, [&] {
      return ws.delivered || !ws.deliver_error.empty() || ws.lost;
    });
  };
  if (!is_loopback_url(job.url)) {
    send_error("the gateway URL " + job.url + " is not loopback");
    end_agent();
    return 1;
  }
  if (job.count <= 0) {
    send_error("empty slice");
    end_agent();
    return 1;
  }
  temp_root root;
  root.keep = o.keep;
  if (!root.create()) {
    send_error("mkdtemp failed");
    end_agent();
    return 1;
  }
  std::cerr << tag << "users " << user_name(job.first) << ".."
            << user_name(job.first + job.count - 1) << ", " << job.rate
            << " msg/s for " << job.duration << " s" << std::endl;
  load_params p;
  p.url = job.url;
  p.endpoints = job.endpoints;
  p.flags = o.client; // the worker's own TLS / CURVE options
  p.password = job.password;
  p.transports = job.transports;
  p.mix = job.mix;
  p.first = job.first;
  p.count = job.count;
  p.rate = job.rate;
  p.limited = job.limited;
  p.messages = job.messages;
  p.duration = job.duration;
  p.ramp = job.ramp;
  p.drain_timeout = job.drain_timeout;
  p.conversations = job.conversations;
  p.seed = job.seed;
  p.state_root = root.path;
  int rc = 1;
  try {
    load_runner lr{sys, p};
    auto last = steady::now() - 1s;
    auto progress = [&](load_phase ph, double e, const progress_counters& c) {
      wire_progress wp;
      wp.index = job.index;
      wp.phase = static_cast<uint8_t>(ph);
      wp.elapsed_s = e;
      wp.counters = c;
      caf::anon_send(agent, wp);
    };
    load_hooks hooks;
    hooks.tick = [&](double e, const progress_counters& c) {
      auto now = steady::now();
      if (now - last >= 1s) {
        progress(load_phase::loading, e, c);
        last = now;
      }
    };
    hooks.load_stopped = [&](double s, uint64_t queued) {
      if (ws.stop || interrupted())
        return; // no drain either: said below
      progress(load_phase::draining, s, lr.counters());
      std::cerr << tag << "load stopped after " << s << " s, draining "
                << queued << " queued" << std::endl;
    };
    hooks.stop = [&] { return ws.stop.load() || interrupted(); };
    lr.run(hooks);
    if (ws.stop || interrupted()) {
      std::cerr << tag << lost_line() << "; load stopped after "
                << lr.measurements().elapsed_s << " s, no result sent"
                << std::endl;
    } else {
      wire_result res;
      res.index = job.index;
      res.rep = lr.measurements();
      res.sent = lr.sent_ids();
      progress(load_phase::done, res.rep.elapsed_s, lr.counters());
      caf::anon_send(agent, res);
      std::unique_lock<std::mutex> lk{ws.mx};
      ws.cv.wait_for(lk, 130s, [&] {
        return ws.delivered || !ws.deliver_error.empty() || ws.stop;
      });
      if (ws.delivered) {
        rc = 0;
        std::cerr << tag << "result delivered (" << res.rep.sessions
                  << " sessions)" << std::endl;
      } else {
        auto why = !ws.deliver_error.empty()
                     ? "result not delivered: " + ws.deliver_error
                     : std::string{};
        lk.unlock();
        std::cerr << tag << (why.empty() ? lost_line() : why) << std::endl;
      }
    }
    lr.shutdown();
  } catch (const std::exception& e) {
    send_error(e.what());
    rc = 1;
  }
  end_agent();
  return rc;
}

} // namespace aico::stress
