// aico-stress: an SVG latency plot, written by the tool itself (no external
// program): the percentile distribution of each operation, HDR-histogram
// style. x = percentile on a log axis of 1/(1-p) from 0 to 99.99 %, so the
// tail (99 %, 99.9 %, 99.99 %) gets as much room as the median; y = latency
// in ms (linear). One polyline per operation with samples.
#pragma once

#include <map>
#include <string>

#include "src/stress/histogram.hpp"
#include "src/stress/report.hpp"

namespace aico::stress {

/// The SVG document; `series` maps a name (operation) to its histogram.
/// Empty histograms get a legend entry ("no samples") and no line.
std::string latency_svg(const std::map<std::string, latency_histogram>& series,
                        const std::string& title);

/// Plots every operation of the report (all transports together) into
/// `path`; false + `err` if the file cannot be written.
bool write_latency_plot(const report& r, const std::string& path,
                        std::string& err);

} // namespace aico::stress
