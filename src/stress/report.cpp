#include "src/stress/report.hpp"

#include <cstdio>
#include <sstream>

namespace json = boost::json;

namespace aico::stress {

latency_histogram op_stats::total() const {
  latency_histogram h;
  for (auto& kv : by_transport)
    h.merge(kv.second);
  return h;
}

void op_stats::merge(const op_stats& o) {
  ok += o.ok;
  errors += o.errors;
  for (auto& [k, v] : o.by_transport)
    by_transport[k].merge(v);
}

void report::merge(const report& o) {
  elapsed_s = std::max(elapsed_s, o.elapsed_s);
  drain_s = std::max(drain_s, o.drain_s);
  for (auto& [k, v] : o.operations)
    operations[k].merge(v);
  for (auto& [k, v] : o.errors)
    errors[k] += v;
  failovers += o.failovers;
  refreshes += o.refreshes;
  logins += o.logins;
  login_failures += o.login_failures;
  undrained += o.undrained;
  fault_actions += o.fault_actions;
  gateway_kills += o.gateway_kills;
  rss_before_kb += o.rss_before_kb;
  rss_after_kb += o.rss_after_kb;
  sessions += o.sessions;
  integrity.merge(o.integrity);
  integrity_checked = integrity_checked || o.integrity_checked;
}

double report::per_session_kb() const {
  if (sessions == 0)
    return 0;
  return static_cast<double>(rss_after_kb - rss_before_kb)
         / static_cast<double>(sessions);
}

namespace {

double ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

double round3(double x) {
  return static_cast<double>(static_cast<int64_t>(x * 1000 + (x >= 0 ? 0.5 : -0.5)))
         / 1000.0;
}

json::object counts_json(const integrity_counts& c) {
  return {{"sent", c.sent},
          {"stored", c.stored},
          {"lost", c.lost},
          {"duplicated", c.duplicated},
          {"out_of_order", c.out_of_order},
          {"unexpected", c.unexpected},
          {"outcome_unknown", c.outcome_unknown},
          {"outcome_unknown_stored", c.outcome_unknown_stored}};
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string latency_line(const latency_histogram& h) {
  std::ostringstream out;
  out << "n=" << h.count() << "  p50 " << fmt("%.2f", ms(h.percentile(50)))
      << "  p90 " << fmt("%.2f", ms(h.percentile(90))) << "  p99 "
      << fmt("%.2f", ms(h.percentile(99))) << "  p99.9 "
      << fmt("%.2f", ms(h.percentile(99.9))) << "  max "
      << fmt("%.2f", ms(h.max())) << " ms";
  return out.str();
}

} // namespace

json::object latency_json(const latency_histogram& h) {
  return {{"count", h.count()},
          {"mean_ms", round3(h.mean() / 1e6)},
          {"p50_ms", round3(ms(h.percentile(50)))},
          {"p90_ms", round3(ms(h.percentile(90)))},
          {"p99_ms", round3(ms(h.percentile(99)))},
          {"p999_ms", round3(ms(h.percentile(99.9)))},
          {"max_ms", round3(ms(h.max()))}};
}

json::object report::to_json() const {
  json::object cfg{{"users", users},       {"rate", rate},
                   {"duration_s", duration_s}, {"transports", transports},
                   {"mix", mix},           {"faults", faults},
                   {"seed", seed}};
  json::object ops;
  uint64_t total_ok = 0;
  std::map<std::string, latency_histogram> by_transport;
  for (auto& [name, s] : operations) {
    json::object bt;
    for (auto& [t, h] : s.by_transport) {
      bt[t] = latency_json(h);
      by_transport[t].merge(h);
    }
    json::object o{{"ok", s.ok}, {"errors", s.errors}};
    o["latency"] = latency_json(s.total());
    o["by_transport"] = std::move(bt);
    o["per_s"] = elapsed_s > 0 ? round3(s.ok / elapsed_s) : 0.0;
    ops[name] = std::move(o);
    total_ok += s.ok;
  }
  json::object tr;
  for (auto& [t, h] : by_transport)
    tr[t] = latency_json(h);
  json::object errs;
  for (auto& [k, v] : errors)
    errs[k] = v;
  uint64_t sends = 0;
  if (auto i = operations.find("send"); i != operations.end())
    sends = i->second.ok;
  json::object integ = counts_json(integrity.total);
  integ["checked"] = integrity_checked;
  integ["exact"] = exact();
  integ["conversations"] = integrity.conversations;
  json::object bad;
  for (auto& [k, v] : integrity.bad_conversations)
    bad[k] = counts_json(v);
  integ["bad_conversations"] = std::move(bad);
  json::object res{
    {"config", std::move(cfg)},
    {"elapsed_s", round3(elapsed_s)},
    {"drain_s", round3(drain_s)},
    {"throughput",
     json::object{{"ops_per_s", elapsed_s > 0 ? round3(total_ok / elapsed_s) : 0.0},
                  {"messages_per_s",
                   elapsed_s > 0 ? round3(sends / elapsed_s) : 0.0}}},
    {"operations", std::move(ops)},
    {"transports", std::move(tr)},
    {"errors", std::move(errs)},
    {"failovers", failovers},
    {"refreshes", refreshes},
    {"logins", logins},
    {"login_failures", login_failures},
    {"undrained", undrained},
    {"faults", json::object{{"schedule", faults},
                            {"actions", fault_actions},
                            {"gateway_kills", gateway_kills}}},
    {"memory", json::object{{"sessions", sessions},
                            {"rss_before_kb", rss_before_kb},
                            {"rss_after_kb", rss_after_kb},
                            {"per_session_kb", round3(per_session_kb())}}},
  };
  res["integrity"] = std::move(integ);
  if (workers > 0)
    res["workers"] = workers;
  return res;
}

std::string report::to_text() const {
  std::ostringstream out;
  out << "aico-stress: " << users << " users, rate " << rate
      << " msg/s, transports " << transports << ", mix " << mix << "\n";
  out << "faults: " << faults << " (" << fault_actions << " actions, "
      << gateway_kills << " gateway kills)\n";
  if (workers > 0)
    out << "workers: " << workers
        << " processes (distributed; memory is their sum)\n";
  out << "load " << fmt("%.1f", elapsed_s) << " s, drain "
      << fmt("%.1f", drain_s) << " s\n\n";
  uint64_t sends = 0;
  std::map<std::string, latency_histogram> by_transport;
  out << "operation   ok       errors  per_s    latency\n";
  for (auto& [name, s] : operations) {
    char head[96];
    std::snprintf(head, sizeof head, "%-10s  %-7llu  %-6llu  %-7.1f  ",
                  name.c_str(), static_cast<unsigned long long>(s.ok),
                  static_cast<unsigned long long>(s.errors),
                  elapsed_s > 0 ? s.ok / elapsed_s : 0.0);
    out << head << latency_line(s.total()) << "\n";
    for (auto& [t, h] : s.by_transport) {
      out << "    via " << t << ": " << latency_line(h) << "\n";
      by_transport[t].merge(h);
    }
    if (name == "send")
      sends = s.ok;
  }
  out << "\nby transport (all operations):\n";
  for (auto& [t, h] : by_transport)
    out << "  " << t << ": " << latency_line(h) << "\n";
  out << "\nthroughput: " << fmt("%.1f", elapsed_s > 0 ? sends / elapsed_s : 0)
      << " messages/s sent\n";
  out << "errors:";
  if (errors.empty())
    out << " none";
  for (auto& [k, v] : errors)
    out << " " << k << "=" << v;
  out << "\nfailovers: " << failovers << ", refreshes: " << refreshes
      << ", logins: " << logins << " (" << login_failures << " failed)\n";
  out << "memory: " << sessions << " sessions, RSS " << rss_before_kb
      << " -> " << rss_after_kb << " kB, " << fmt("%.0f", per_session_kb())
      << " kB per session\n";
  auto& t = integrity.total;
  out << "\nintegrity (" << integrity.conversations << " conversations): sent "
      << t.sent << ", stored " << t.stored << ", lost " << t.lost
      << ", duplicated " << t.duplicated << ", out of order "
      << t.out_of_order;
  if (t.outcome_unknown > 0)
    out << "; outcome unknown " << t.outcome_unknown << " (stored "
        << t.outcome_unknown_stored << ", not stored "
        << t.outcome_unknown - t.outcome_unknown_stored << ")";
  if (undrained > 0)
    out << " (" << undrained << " still queued at the end)";
  out << "\n";
  for (auto& [k, v] : integrity.bad_conversations)
    out << "  " << k << ": sent " << v.sent << ", stored " << v.stored
        << ", lost " << v.lost << ", duplicated " << v.duplicated
        << ", out of order " << v.out_of_order << "\n";
  out << "result: "
      << (!integrity_checked ? "NOT CHECKED"
                             : exact() ? "EXACT" : "INTEGRITY VIOLATED")
      << "\n";
  return out.str();
}

} // namespace aico::stress
