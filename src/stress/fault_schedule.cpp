#include "src/stress/fault_schedule.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "aico/models.hpp" // transport_mode: the door names
#include "src/core/transport_modes.hpp"

namespace aico::stress {

std::string to_string(const periodic_fault& f) {
  switch (f.kind) {
    case fault_kind::door_down:
      return f.door + " down";
    case fault_kind::drop_ws:
      return "drop ws";
    default:
      return "kill";
  }
}

bool fault_schedule::has_kill() const {
  for (auto& p : periodic)
    if (p.kind == fault_kind::kill)
      return true;
  return false;
}

bool fault_schedule::switches_door(const std::string& name) const {
  for (auto& p : periodic)
    if (p.kind == fault_kind::door_down && p.door == name)
      return true;
  return false;
}

namespace {

/// The doors a schedule may take down: every transport but HTTP, e.g.
/// "ipc, ws, grpc".
std::string doors() {
  std::string res;
  for (auto m : transport_modes()) {
    if (m == transport_mode::http)
      continue;
    if (!res.empty())
      res += ", ";
    res += to_string(m);
  }
  return res;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b])))
    ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1])))
    --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in{s};
  std::string w;
  while (in >> w)
    out.push_back(w);
  return out;
}

bool parse_number(const std::string& s, double& out) {
  if (s.empty())
    return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(out);
}

} // namespace

bool parse_duration(const std::string& text, std::chrono::milliseconds& out) {
  auto t = lower(trim(text));
  double scale = 1000;
  std::string num = t;
  if (t.size() > 2 && t.compare(t.size() - 2, 2, "ms") == 0) {
    scale = 1;
    num = t.substr(0, t.size() - 2);
  } else if (!t.empty() && t.back() == 's') {
    num = t.substr(0, t.size() - 1);
  } else if (!t.empty() && t.back() == 'm') {
    scale = 60000;
    num = t.substr(0, t.size() - 1);
  }
  double v = 0;
  if (!parse_number(num, v) || v < 0)
    return false;
  out = std::chrono::milliseconds{static_cast<int64_t>(std::llround(v * scale))};
  return true;
}

bool parse_fault_schedule(const std::string& text, fault_schedule& out,
                          std::string& err) {
  out = fault_schedule{};
  // split into clauses: ';' and new lines; strip comments
  std::vector<std::string> clauses;
  std::istringstream lines{text};
  std::string line;
  while (std::getline(lines, line)) {
    if (auto h = line.find('#'); h != std::string::npos)
      line.erase(h);
    std::string cur;
    for (char c : line) {
      if (c == ';') {
        clauses.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    clauses.push_back(cur);
  }
  int n = 0;
  bool seen_ratio = false;
  for (auto& raw : clauses) {
    auto clause = trim(raw);
    if (clause.empty())
      continue;
    ++n;
    auto bad = [&](const std::string& why) {
      err = "fault clause " + std::to_string(n) + " ('" + clause + "'): " + why;
      return false;
    };
    auto c = lower(clause);
    auto w = words(c);
    // kill every P
    if (w.size() == 3 && w[0] == "kill" && w[1] == "every") {
      periodic_fault f;
      f.kind = fault_kind::kill;
      if (!parse_duration(w[2], f.period) || f.period.count() <= 0)
        return bad("bad period '" + w[2] + "' (use e.g. 30s)");
      out.periodic.push_back(f);
      continue;
    }
    if (!w.empty() && w[0] == "every") {
      auto colon = c.find(':');
      if (colon == std::string::npos)
        return bad("expected 'every PERIOD: ACTION'");
      auto head = words(c.substr(0, colon));
      auto act = words(c.substr(colon + 1));
      if (head.size() != 2)
        return bad("expected 'every PERIOD:'");
      periodic_fault f;
      if (!parse_duration(head[1], f.period) || f.period.count() <= 0)
        return bad("bad period '" + head[1] + "' (use e.g. 5s)");
      if (act.size() == 1 && act[0] == "kill") {
        f.kind = fault_kind::kill;
      } else if (act.size() == 2 && act[0] == "drop" && act[1] == "ws") {
        f.kind = fault_kind::drop_ws;
      } else if (act.size() == 3 && act[1] == "down") {
        transport_mode door{};
        if (!from_string(act[0], door) || door == transport_mode::http)
          return bad("no door '" + act[0] + "' to take down (use a "
                     "transport name other than http: " + doors() + ")");
        f.kind = fault_kind::door_down;
        f.door = act[0];
        if (!parse_duration(act[2], f.duration) || f.duration.count() <= 0)
          return bad("bad down time '" + act[2] + "' (use e.g. 2s)");
        if (f.duration >= f.period)
          return bad("down time must be shorter than the period");
      } else {
        return bad("unknown action (use 'DOOR down D' with DOOR one of "
                   + doors() + ", 'drop ws' or 'kill')");
      }
      out.periodic.push_back(f);
      continue;
    }
    if (!w.empty() && w[0] == "latency") {
      std::chrono::milliseconds d{0};
      if (w.size() != 2 || !parse_duration(w[1], d) || d.count() > 60000)
        return bad("expected 'latency D' with D up to 60s");
      out.latency_ms = static_cast<int>(d.count());
      continue;
    }
    if (!w.empty() && w[0].back() == '%') {
      double pct = 0;
      if (!parse_number(w[0].substr(0, w[0].size() - 1), pct) || pct < 0
          || pct > 100)
        return bad("percentage must be 0..100");
      if (w.size() > 2)
        return bad("expected 'N% [STATUS]'");
      int status = 503;
      if (w.size() == 2) {
        double s = 0;
        if (!parse_number(w[1], s) || s < 500 || s > 599
            || s != std::floor(s))
          return bad("status must be 500..599");
        status = static_cast<int>(s);
      }
      if (seen_ratio)
        return bad("only one failure ratio allowed");
      seen_ratio = true;
      out.fail_ratio = pct / 100.0;
      out.fail_status = status;
      continue;
    }
    return bad("not understood (expected 'every P: ...', 'kill every P', "
               "'N% 503' or 'latency D')");
  }
  err.clear();
  return true;
}

std::string describe(const fault_schedule& s) {
  std::ostringstream out;
  bool first = true;
  auto sep = [&] {
    if (!first)
      out << "; ";
    first = false;
  };
  for (auto& p : s.periodic) {
    sep();
    out << "every " << p.period.count() << "ms: " << to_string(p);
    if (p.kind == fault_kind::door_down)
      out << " " << p.duration.count() << "ms";
  }
  if (s.fail_ratio > 0) {
    sep();
    out << s.fail_ratio * 100 << "% " << s.fail_status;
  }
  if (s.latency_ms > 0) {
    sep();
    out << "latency " << s.latency_ms << "ms";
  }
  if (first)
    out << "none";
  return out.str();
}

} // namespace aico::stress
