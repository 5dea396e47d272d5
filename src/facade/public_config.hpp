// aico engine: the public aico::client_config (include/aico/config.hpp)
// mapped onto the internal engine_config. Internal to the library.
#pragma once

#include "aico/config.hpp"
#include "aico/errors.hpp"
#include "messages/engine.hpp"

namespace aico {

/// defaults < file < env < explicit fields; a validation error names the
/// key (the explicit fields by their own names).
caf::expected<engine_config> to_engine_config(const client_config& cfg);

/// The client_error for an engine (or CAF) error.
client_error to_client_error(const caf::error& err);

/// to_engine_config or throw its error as client_error.
engine_config engine_config_or_throw(const client_config& cfg);

} // namespace aico
