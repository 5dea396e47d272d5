// aico engine: number checks for untrusted and outgoing JSON (pure logic,
// header only).
//
// Boost.JSON (1.81) parses a number beyond the double range (`1e400`,
// `-1e3096`) as an infinite double and serializes an infinite or NaN double
// as `Infinity` / `NaN`, which is not JSON. The engine therefore never
// serializes a value holding a non-finite number (all_finite) and never
// casts a double to an integer without checking it first (double_to_int64:
// an out-of-range cast is undefined behaviour).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <boost/json/value.hpp>

namespace aico {

/// True if no number in `v` (at any depth) is an infinite or NaN double.
/// Iterative: no recursion whatever the nesting.
inline bool all_finite(const boost::json::value& v) {
  // a small explicit stack of values still to look at
  std::vector<const boost::json::value*> todo{&v};
  while (!todo.empty()) {
    auto* x = todo.back();
    todo.pop_back();
    switch (x->kind()) {
      case boost::json::kind::double_:
        if (!std::isfinite(x->get_double()))
          return false;
        break;
      case boost::json::kind::array:
        for (auto& e : x->get_array())
          todo.push_back(&e);
        break;
      case boost::json::kind::object:
        for (auto& kv : x->get_object())
          todo.push_back(&kv.value());
        break;
      default:
        break;
    }
  }
  return true;
}

/// Converts a double holding a whole number in [min, max] to an integer.
/// False (and `out` untouched) for NaN, infinities, fractions and anything
/// out of range: never an undefined cast.
inline bool double_to_int64(double d, int64_t min, int64_t max,
                            int64_t& out) {
  if (!std::isfinite(d) || d != std::trunc(d))
    return false;
  // 2^63 is exactly representable; INT64_MAX is not (it rounds up to 2^63)
  if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
    return false;
  auto i = static_cast<int64_t>(d);
  if (i < min || i > max)
    return false;
  out = i;
  return true;
}

} // namespace aico
