// aico-backend-peer: JSON text as the real backend's Python produces it.
//
// The AICO backend serialises with Python's json module, and clients see
// those exact bytes: Starlette's JSONResponse and the envelope plaintext are
// compact (separators ',' ':'), the response envelope and the WebSocket
// adapter use json.dumps' defaults (', ' and ': '), the envelope plaintext
// and WebSocket frames escape non-ASCII as \uXXXX (ensure_ascii), and floats
// are written as Python's repr writes them (1.5, 1764840000.123, 1e+16).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/json.hpp>

namespace aico::peer {

namespace json = boost::json;

struct py_style {
  bool compact = true;      ///< separators (',', ':'); else (', ', ': ')
  bool ensure_ascii = true; ///< \uXXXX for every non-ASCII code point
};

/// json.dumps(value, ...) with the given style. Object members keep their
/// insertion order (as Python dicts do).
std::string py_dumps(const json::value& v, py_style style = {});

/// Python's repr() of a float.
std::string py_float(double d);

/// Parses JSON text; nullopt if it is not valid JSON.
std::optional<json::value> parse_json(std::string_view text);

/// Python truthiness of a JSON value (false, null, 0, "", [], {} are false).
bool py_truthy(const json::value& v);

} // namespace aico::peer
