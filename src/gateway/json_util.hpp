// aico reference gateway: envelope, Boost.JSON, time and query-string helpers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json.hpp>

namespace aico::gateway {

namespace json = boost::json;

/// `{"success":true,"data":...}` (plus "message" when not empty).
std::string ok_body(const json::value& data, std::string_view message = {});

/// `{"success":false,"message":...,"code":...,"details":{...}}`.
std::string error_body(std::string_view code, std::string_view message,
                       const json::object& details = {});

/// Milliseconds / seconds since the Unix epoch (system clock).
int64_t now_ms();
int64_t now_s();

/// ISO-8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z.
std::string iso8601_ms(int64_t ms);

/// Decodes %XX escapes (invalid escapes are kept literally); optionally '+'
/// becomes a space (query strings).
std::string percent_decode(std::string_view s, bool plus_as_space);

/// Splits `a=1&b=x%20y` into decoded pairs (in order, duplicates kept).
std::vector<std::pair<std::string, std::string>>
parse_query(std::string_view query);

/// Number of code points of (valid) UTF-8 text.
std::size_t utf8_length(std::string_view s);

/// Parses JSON text; nullopt on any syntax error (incl. invalid UTF-8 and
/// nesting deeper than 64).
std::optional<json::value> parse_json(std::string_view text);

/// Whether `v` holds a non-finite number (a literal like 1e400 parses to
/// infinity) anywhere; if so and `where` is not null, the path of the first
/// one is stored there ("big", "metadata.list[2]"; "" for the root). Such a
/// value is rejected (400 validation_error) and never stored: Boost.JSON
/// would serialize it as `Infinity`, which is not JSON.
bool find_non_finite(const json::value& v, std::string* where = nullptr);

/// Parses a JSON object stored in the database; an empty object on error.
json::object parse_object_or_empty(std::string_view text);

/// An integer JSON value as int64 (also accepts uint64 in range and doubles
/// without fraction); nullopt otherwise.
std::optional<int64_t> as_int64(const json::value& v);

} // namespace aico::gateway
