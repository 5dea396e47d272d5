// aico engine: the typed models of the gateway's resources (docs/protocol.md),
// as exposed by the engine's repositories. Plain value types: every one has
// an inspect() overload, so it is a valid CAF 0.17 message type, and an
// operator== for tests and caches.
//
// JSON codecs (decode from untrusted gateway JSON, encode request bodies and
// cache entries) are in src/model/codec.hpp; this header has no JSON
// dependency. Fields that carry free-form JSON (message metadata, envelope
// data/details, user preferences as sent by the gateway) are kept as compact
// JSON text, which CAF serializes as a plain string.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "caf/all.hpp"

#include "aico/actors.hpp" // the public models and their inspect()

namespace aico {

// -- envelope -----------------------------------------------------------------

/// The gateway's response envelope:
/// `{"success":true,"data":...,"message":...}` or
/// `{"success":false,"message":...,"code":...,"details":{...}}`.
struct envelope {
  int32_t status = 0; ///< the HTTP status it came with (0 if unknown)
  bool success = false;
  std::string data = "null"; ///< JSON text (any value)
  std::string message;
  std::string code;           ///< error code, empty on success
  std::string details = "{}"; ///< JSON text (any value)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope& x) {
  return f(caf::meta::type_name("aico.envelope"), x.status, x.success, x.data,
           x.message, x.code, x.details);
}

inline bool operator==(const envelope& a, const envelope& b) {
  return std::tie(a.status, a.success, a.data, a.message, a.code, a.details)
         == std::tie(b.status, b.success, b.data, b.message, b.code,
                     b.details);
}

inline bool operator!=(const envelope& a, const envelope& b) {
  return !(a == b);
}

} // namespace aico
