#!/usr/bin/env bash
# Exported symbols check (ctest library_exports):
#   check_exports.sh LIBRARY
# - the SONAME is libaico_client.so.<N>;
# - every defined dynamic symbol is aico:: API (or the type_info / vtable of
#   an aico:: class), versioned AICO_CLIENT_1: nothing of std::, caf::,
#   Boost, protobuf, ... leaks, and no private dependency is re-exported;
# - the API is there (client, actor_engine, client_config, errors).
set -u
lib=$1
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$lib" ] || fail "no library $lib"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
case "$soname" in
  libaico_client.so.[0-9]*) echo "SONAME $soname" ;;
  *) fail "SONAME is '$soname'" ;;
esac
syms=$(nm -D --defined-only -C "$lib" | cut -d' ' -f3-)
[ -n "$syms" ] || fail "no exported symbols"
bad=$(printf '%s\n' "$syms" | grep -v -E \
  '^(aico::[a-z_]|typeinfo for aico::|typeinfo name for aico::|vtable for aico::|AICO_CLIENT_1$)' \
  || true)
[ -z "$bad" ] || fail "exported non-aico symbols:
$(printf '%s\n' "$bad" | head -n 20)"
# a template of std:: whose return type is an aico type also matches aico::*
# in the version script: catch it by the std:: that follows the type
bad=$(printf '%s\n' "$syms" | grep -E '^aico::[a-z_]+\* std::' || true)
[ -z "$bad" ] || fail "exported std:: instantiations:
$(printf '%s\n' "$bad" | head -n 20)"
unversioned=$(nm -D --defined-only "$lib" | grep -v -E '@@AICO_CLIENT_1$| AICO_CLIENT_1$' || true)
[ -z "$unversioned" ] || fail "symbols without the AICO_CLIENT_1 version:
$(printf '%s\n' "$unversioned" | head -n 10)"
for s in 'aico::client::client(aico::client_config const&, unsigned long)' \
         'aico::client::login(' \
         'aico::subscription::cancel()' \
         'aico::actor_engine::actor_engine(caf::actor_system&, aico::client_config const&)' \
         'aico::actor_engine::chat' \
         'aico::client_config::load(' \
         'aico::classify(caf::error const&)' \
         'aico::describe' \
         'aico::to_string(aico::link_state)' \
         'aico::library_version()' \
         'typeinfo for aico::client_error'; do
  printf '%s\n' "$syms" | grep -q -F -- "$s" || fail "missing export: $s"
done
echo "$(printf '%s\n' "$syms" | wc -l) exported symbols, all aico::"
