#include "src/stress/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace aico::stress {

namespace {

constexpr double width = 960, height = 520;
constexpr double left = 80, right = 260, top = 50, bottom = 60;
constexpr double max_nines = 4; // x axis: 1/(1-p) up to 10^4 = 99.99 %

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string num(double v, const char* f = "%.1f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

/// A "nice" axis maximum (1, 2, 5 x 10^k) at or above v.
double nice_ceiling(double v) {
  if (!(v > 0))
    return 1;
  auto e = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * e >= v)
      return m * e;
  return 10 * e;
}

const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};

} // namespace

std::string latency_svg(const std::map<std::string, latency_histogram>& series,
                        const std::string& title) {
  double max_ms = 0;
  for (auto& kv : series)
    max_ms = std::max(max_ms, kv.second.max() / 1e6);
  auto y_max = nice_ceiling(max_ms);
  auto pw = width - left - right, ph = height - top - bottom;
  auto x_of = [&](double nines) { return left + pw * nines / max_nines; };
  auto y_of = [&](double ms) { return top + ph * (1 - ms / y_max); };
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width
    << "\" height=\"" << height << "\" viewBox=\"0 0 " << width << " "
    << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << left << "\" y=\"28\" font-size=\"16\">"
    << escape(title) << "</text>\n";
  // grid and axes
  o << "<g stroke=\"#ddd\" stroke-width=\"1\">\n";
  for (int k = 0; k <= 4; ++k) {
    auto x = x_of(k);
    o << "<line x1=\"" << num(x) << "\" y1=\"" << top << "\" x2=\""
      << num(x) << "\" y2=\"" << top + ph << "\"/>\n";
  }
  for (int k = 0; k <= 5; ++k) {
    auto y = y_of(y_max * k / 5);
    o << "<line x1=\"" << left << "\" y1=\"" << num(y) << "\" x2=\""
      << left + pw << "\" y2=\"" << num(y) << "\"/>\n";
  }
  o << "</g>\n";
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw
    << "\" height=\"" << ph << "\" fill=\"none\" stroke=\"#333\"/>\n";
  const char* xlabels[] = {"0%", "90%", "99%", "99.9%", "99.99%"};
  for (int k = 0; k <= 4; ++k)
    o << "<text x=\"" << num(x_of(k)) << "\" y=\"" << top + ph + 18
      << "\" text-anchor=\"middle\">" << xlabels[k] << "</text>\n";
  for (int k = 0; k <= 5; ++k)
    o << "<text x=\"" << left - 8 << "\" y=\"" << num(y_of(y_max * k / 5) + 4)
      << "\" text-anchor=\"end\">" << num(y_max * k / 5, "%g") << "</text>\n";
  o << "<text x=\"" << num(left + pw / 2) << "\" y=\"" << height - 15
    << "\" text-anchor=\"middle\">percentile (log scale of 1/(1-p))</text>\n"
    << "<text x=\"20\" y=\"" << num(top + ph / 2)
    << "\" text-anchor=\"middle\" transform=\"rotate(-90 20 "
    << num(top + ph / 2) << ")\">latency (ms)</text>\n";
  // one polyline per series
  size_t idx = 0;
  double ly = top + 10;
  for (auto& [name, h] : series) {
    auto color = palette[idx++ % (sizeof palette / sizeof palette[0])];
    std::string stats = "no samples";
    if (h.count() > 0) {
      o << "<polyline fill=\"none\" stroke=\"" << color
        << "\" stroke-width=\"2\" data-series=\"" << escape(name)
        << "\" points=\"";
      for (int step = 0; step <= 200; ++step) {
        double nines = max_nines * step / 200.0;
        double p = 100.0 * (1 - std::pow(10.0, -nines));
        auto ms = h.percentile(p) / 1e6;
        o << (step ? " " : "") << num(x_of(nines)) << ","
          << num(y_of(ms), "%.2f");
      }
      o << "\"/>\n";
      char buf[96];
      std::snprintf(buf, sizeof buf, "n=%llu p50 %.1f p99 %.1f ms",
                    static_cast<unsigned long long>(h.count()),
                    h.percentile(50) / 1e6, h.percentile(99) / 1e6);
      stats = buf;
    }
    // legend: the name, its figures below
    auto lx = left + pw + 12;
    o << "<line x1=\"" << num(lx) << "\" y1=\"" << num(ly) << "\" x2=\""
      << num(lx + 18) << "\" y2=\"" << num(ly) << "\" stroke=\"" << color
      << "\" stroke-width=\"3\"/>\n"
      << "<text x=\"" << num(lx + 24) << "\" y=\"" << num(ly + 4) << "\">"
      << escape(name) << "</text>\n"
      << "<text x=\"" << num(lx + 24) << "\" y=\"" << num(ly + 18)
      << "\" font-size=\"10\" fill=\"#555\">" << stats << "</text>\n";
    ly += 34;
  }
  o << "</svg>\n";
  return o.str();
}

bool write_latency_plot(const report& r, const std::string& path,
                        std::string& err) {
  std::map<std::string, latency_histogram> series;
  for (auto& [name, s] : r.operations)
    series[name] = s.total();
  char title[160];
  std::snprintf(title, sizeof title,
                "aico-stress latency by percentile: %llu users, %.0f msg/s, "
                "%.0f s",
                static_cast<unsigned long long>(r.users), r.rate, r.elapsed_s);
  auto svg = latency_svg(series, title);
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::binary | std::ios::trunc};
    if (!out) {
      err = "cannot write " + path;
      return false;
    }
    out << svg;
    out.flush();
    if (!out) {
      err = "cannot write " + path;
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    err = "cannot write " + path;
    return false;
  }
  return true;
}

} // namespace aico::stress
