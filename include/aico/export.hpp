// aico client library: the export macro of libaico_client.so.
//
// The library is built with -fvisibility=hidden (and a linker version
// script): only declarations marked AICO_API are exported, and only names
// in namespace aico. The value types (aico/models.hpp) are not marked:
// they are plain aggregates with inline members, and GCC compares type_info
// by name across shared objects, so CAF's message matching and catch
// clauses work without exporting them. AICO_LOCAL hides the private parts
// of exported classes.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#  define AICO_API __attribute__((visibility("default")))
#  define AICO_LOCAL __attribute__((visibility("hidden")))
#else
#  define AICO_API
#  define AICO_LOCAL
#endif
