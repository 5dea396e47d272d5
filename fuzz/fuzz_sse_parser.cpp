// libFuzzer harness: the engine's SSE parser
// (src/transport/curl/sse_parser.hpp). The input is split into chunks at
// positions taken from its first bytes; the result must not depend on the
// split, and the memory held stays within the configured caps.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "src/transport/curl/sse_parser.hpp"

namespace {

constexpr std::size_t max_line = 256;
constexpr std::size_t max_event = 512;

struct outcome {
  std::vector<aico::http::sse_event> events;
  bool failed = false;
  uint64_t dropped = 0;
};

outcome run(std::string_view text, std::size_t step) {
  aico::http::sse_parser p{max_line, max_event};
  outcome o;
  while (!text.empty()) {
    auto n = std::min(step, text.size());
    for (auto& ev : p.feed(text.substr(0, n)))
      o.events.push_back(std::move(ev));
    if (p.buffered_bytes() > max_line + max_event + max_line)
      std::abort(); // unbounded buffering
    text.remove_prefix(n);
  }
  for (auto& ev : o.events)
    if (ev.data.size() > max_event)
      std::abort();
  o.failed = p.failed();
  o.dropped = p.dropped_events();
  (void) aico::http::parse_seq(p.last_event_id());
  return o;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  std::size_t step = 1 + data[0] % 17;
  std::string_view text{reinterpret_cast<const char*>(data) + 1, size - 1};
  auto whole = run(text, text.size() + 1);
  auto split = run(text, step);
  if (whole.failed != split.failed)
    std::abort();
  if (whole.failed)
    return 0; // events before the failure may differ in count: fine
  if (whole.dropped != split.dropped
      || whole.events.size() != split.events.size())
    std::abort();
  for (std::size_t i = 0; i < whole.events.size(); ++i)
    if (whole.events[i].data != split.events[i].data
        || whole.events[i].id != split.events[i].id
        || whole.events[i].event != split.events[i].event)
      std::abort();
  return 0;
}
