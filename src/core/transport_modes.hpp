// aico engine: the list of transport_mode values (their names are
// to_string / from_string, src/core/types.cpp). For code that walks the
// modes without the transport registry (aico_core users such as
// aico-stress's fault schedule); the registry (actors/) has the rest of
// what is known about each transport.
#pragma once

#include <vector>

#include "aico/models.hpp"

namespace aico {

/// Every transport_mode value, in value order (ipc, ws, http, grpc).
const std::vector<transport_mode>& transport_modes();

} // namespace aico
