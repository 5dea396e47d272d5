// aico client library: the public functions defined in the internal static
// libraries, kept in libaico_client.so even if nothing inside the library
// calls them (the facade's own objects are linked whole).
#include "aico/actors.hpp"
#include "aico/client.hpp"

namespace aico {

namespace {

// referenced here so the linker pulls their object files in
[[maybe_unused]] __attribute__((used)) const void* const keep[] = {
  reinterpret_cast<const void*>(
    static_cast<const char* (*)(error_class)>(&to_string)),
  reinterpret_cast<const void*>(
    static_cast<const char* (*)(transport_mode)>(&to_string)),
  reinterpret_cast<const void*>(
    static_cast<bool (*)(const std::string&, transport_mode&)>(&from_string)),
  reinterpret_cast<const void*>(
    static_cast<const char* (*)(link_state)>(&to_string)),
  reinterpret_cast<const void*>(
    static_cast<std::string (*)(const connection_state&)>(&to_string)),
  reinterpret_cast<const void*>(&classify),
  reinterpret_cast<const void*>(
    static_cast<std::string (*)(const caf::error&)>(&describe)),
  reinterpret_cast<const void*>(
    static_cast<std::string (*)(const connection_state&)>(&describe)),
};

} // namespace

} // namespace aico
