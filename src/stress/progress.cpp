#include "src/stress/progress.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "aico/models.hpp" // to_string(transport_mode)
#include "src/core/transport_modes.hpp"

namespace aico::stress {

void progress_counters::add(const progress_counters& o) {
  created += o.created;
  users += o.users;
  logged_in += o.logged_in;
  ops_ok += o.ops_ok;
  ops_err += o.ops_err;
  sends += o.sends;
  outstanding += o.outstanding;
  for (size_t i = 0; i < mix.size(); ++i)
    mix[i] += o.mix[i];
}

namespace {

/// " NAME N" for each transport after ipc, ws and http that some user is
/// on (" grpc 4"; the lines stay as they were without them).
std::string more_part(const progress_counters& c) {
  std::string res;
  for (auto m : transport_modes()) {
    auto i = static_cast<std::size_t>(m);
    if (i < 3 || i >= progress_counters::none || c.mix[i] == 0)
      continue; // ipc, ws and http have their own columns
    res += std::string{" "} + to_string(m) + " " + std::to_string(c.mix[i]);
  }
  return res;
}

unsigned long long ull(uint64_t v) {
  return static_cast<unsigned long long>(v);
}

long long ll(int64_t v) {
  return static_cast<long long>(v);
}

} // namespace

std::string format_progress_line(double elapsed_s, const progress_counters& c,
                                 double ops_rate) {
  char buf[320];
  std::snprintf(
    buf, sizeof buf,
    "[%6.1fs] users %llu/%llu (%llu in)  ops %llu (%.0f/s)  sent %llu  "
    "errors %llu  queued %llu  mix ipc %lld ws %lld http %lld%s none %lld",
    elapsed_s, ull(c.created), ull(c.users), ull(c.logged_in), ull(c.ops_ok),
    ops_rate, ull(c.sends), ull(c.ops_err), ull(c.outstanding), ll(c.mix[0]),
    ll(c.mix[1]), ll(c.mix[2]), more_part(c).c_str(), ll(c.mix[progress_counters::none]));
  return buf;
}

std::string format_progress_bar(double elapsed_s, double duration_s,
                                int64_t messages, const progress_counters& c,
                                double ops_rate, size_t bar_width,
                                size_t max_width) {
  double frac = duration_s > 0 ? elapsed_s / duration_s : 0;
  if (messages > 0)
    frac = std::max(frac, static_cast<double>(c.sends)
                            / static_cast<double>(messages));
  if (!(frac >= 0)) // NaN
    frac = 0;
  frac = std::clamp(frac, 0.0, 1.0);
  auto filled = static_cast<size_t>(std::floor(frac * bar_width));
  std::string out = "[";
  out.append(filled, '#');
  out.append(bar_width - filled, '.');
  out += "]";
  char buf[320];
  std::snprintf(buf, sizeof buf,
                " %3d%%  %.1f/%.0fs  users %llu/%llu  ops %llu (%.0f/s)  "
                "sent %llu  err %llu  queued %llu  ipc %lld ws %lld http %lld%s "
                "none %lld",
                static_cast<int>(std::floor(frac * 100)), elapsed_s,
                duration_s, ull(c.logged_in), ull(c.users), ull(c.ops_ok),
                ops_rate, ull(c.sends), ull(c.ops_err), ull(c.outstanding),
                ll(c.mix[0]), ll(c.mix[1]), ll(c.mix[2]), more_part(c).c_str(),
                ll(c.mix[progress_counters::none]));
  out += buf;
  if (max_width > 0 && out.size() > max_width)
    out.resize(max_width);
  return out;
}

} // namespace aico::stress
