#!/usr/bin/env bash
# Builds everything and runs the whole test suite (ctest). Installs the
# Debian packages it needs first (scripts/install-deps.sh).
#
#   scripts/test.sh [CTEST ARGS...]                      build/, as the README says
#   scripts/test.sh --sanitize address,undefined [...]   build-asan/ (ASan + UBSan)
#   scripts/test.sh --sanitize thread [...]              build-tsan/ (TSan; CAF built
#                                                        instrumented first, scripts/tsan-deps.sh)
#
# A sanitizer variant builds the whole project instrumented
# (-DAICO_SANITIZE=..., GCC) in its own build directory and runs the suite
# with the options and suppression files of scripts/sanitizers/
# (docs/security.md "Sanitizers"). AICO_BUILD_DIR overrides the directory.
# A sanitizer variant leaves out the tests labelled `no_asan` (ASan/UBSan)
# or `no_tsan` (TSan); each such label says why where it is set.
#
#   AICO_BUILD_TARGET=unit_tests scripts/test.sh ... -L unit
#
# builds only the given target(s) (unit_tests: every binary of the `unit`
# label, tests/CMakeLists.txt) instead of everything; what CI's sanitizer
# stage does.
set -euo pipefail
cd "$(dirname "$0")/.."
SANITIZE=""
if [ "${1:-}" = "--sanitize" ]; then
  SANITIZE=${2:?"--sanitize needs address,undefined or thread"}
  shift 2
elif [[ "${1:-}" == --sanitize=* ]]; then
  SANITIZE=${1#--sanitize=}
  shift
fi
bash scripts/install-deps.sh
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
timeout=300
exclude=()
# Sanitizer builds: -O1 (what the sanitizers' documentation recommends) and
# -g1 (line tables: enough for file:line in every report). The same GCC 12
# ASan+UBSan compile of src/model/codec.cpp took 13.8 s of CPU against
# 33.6 s with RelWithDebInfo's -O2 -g (docs/security.md "Sanitizers").
san_flags=(-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG"
           -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG")
case "$SANITIZE" in
  "")
    BUILD_DIR=${AICO_BUILD_DIR:-build} ;;
  address,undefined|undefined,address|address|undefined)
    BUILD_DIR=${AICO_BUILD_DIR:-build-asan}
    cmake_args+=(-DAICO_SANITIZE="$SANITIZE" -DAICO_ENABLE_BENCH=OFF "${san_flags[@]}")
    supp="$PWD/scripts/sanitizers"
    reports="$PWD/$BUILD_DIR/sanitizer-reports"
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0:suppressions=$supp/asan.supp:log_path=$reports/asan}
    export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$supp/lsan.supp:print_suppressions=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp:log_path=$reports/ubsan}
    timeout=900
    exclude=(-LE no_asan) ;;
  thread)
    BUILD_DIR=${AICO_BUILD_DIR:-build-tsan}
    # CAF itself instrumented (scripts/tsan-deps.sh): without it TSan cannot
    # see CAF's mailbox synchronisation and reports every message handed
    # between threads (docs/security.md "Sanitizers")
    bash scripts/tsan-deps.sh "$BUILD_DIR/deps/caf"
    cmake_args+=(-DAICO_SANITIZE=thread -DAICO_ENABLE_BENCH=OFF "${san_flags[@]}"
                 -DCAF_ROOT_DIR="$PWD/$BUILD_DIR/deps/caf")
    supp="$PWD/scripts/sanitizers"
    # ignore_noninstrumented_modules: what libzmq, libwebsockets, libcurl,
    # OpenSSL and protobuf do inside themselves (malloc, memcpy, free of
    # their own buffers on their own threads) is synchronised by code TSan
    # cannot see; our code's accesses are still checked
    reports="$PWD/$BUILD_DIR/sanitizer-reports"
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1:history_size=4:suppressions=$supp/tsan.supp:report_signal_unsafe=0:ignore_noninstrumented_modules=1:log_path=$reports/tsan}
    timeout=900
    exclude=(-LE no_tsan) ;;
  *)
    echo "scripts/test.sh: --sanitize takes address,undefined or thread" >&2
    exit 2 ;;
esac
if command -v ccache >/dev/null 2>&1 && [ -n "${AICO_CCACHE:-}" ]; then
  cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" "${cmake_args[@]}" >/dev/null
targets=()
for t in ${AICO_BUILD_TARGET:-}; do
  targets+=(--target "$t")
done
cmake --build "$BUILD_DIR" -j"$(nproc)" "${targets[@]}"
# Sanitizer variants write every report to $reports/<kind>.<pid>
# (log_path), so that a report in a process a test started (the gateway,
# the CLI, aico-chat), whose exit status the test may not look at, fails
# the run as well as one in the test binary itself.
if [ -n "${reports:-}" ]; then
  rm -rf "$reports"
  mkdir -p "$reports"
fi
rc=0
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 --timeout "$timeout" \
  "${exclude[@]}" "$@" || rc=$?
if [ -n "${reports:-}" ] && [ -n "$(ls -A "$reports")" ]; then
  n=$(ls "$reports" | wc -l)
  echo "scripts/test.sh: sanitizer reports from $n process(es) in $reports:" >&2
  grep -h 'SUMMARY:' "$reports"/* | sort | uniq -c | sort -rn >&2 || true
  echo "--- the first of them:" >&2
  head -80 "$(ls -d "$reports"/* | head -1)" >&2
  exit 1
fi
exit "$rc"
