#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (clang-14, ASan + UBSan,
# -DAICO_FUZZ=ON, build directory build-fuzz/) and runs each of them for
# SECONDS (default 10), one after the other.
#
#   scripts/fuzz.sh [SECONDS] [HARNESS...]     e.g. scripts/fuzz.sh 60 fuzz_ws_codec
#
# Each harness starts from its seeds (fuzz/corpus/<harness>/, read only) and
# a working corpus kept between runs in build-fuzz/corpus/<harness>/, with
# the dictionary fuzz/aico.dict. A crash, sanitizer report, leak or timeout
# stops that harness; its input is written to build-fuzz/artifacts/ and the
# script exits 1 after running the others. A one-line summary per harness
# (executions, coverage "cov" and features "ft") goes to stdout and to
# build-fuzz/fuzz-summary.txt. AICO_FUZZ_BUILD_DIR overrides the build
# directory. docs/security.md "Fuzzing" says how to turn a finding into a
# regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-10}
shift || true
bash scripts/install-deps.sh
BUILD_DIR=${AICO_FUZZ_BUILD_DIR:-build-fuzz}
ALL=(fuzz_model_codec fuzz_ws_codec fuzz_ipc_codec fuzz_sse_parser
     fuzz_jwt_claims fuzz_gateway_api fuzz_gateway_jwt)
if [ $# -gt 0 ]; then HARNESSES=("$@"); else HARNESSES=("${ALL[@]}"); fi

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_C_COMPILER=clang-14 \
  -DAICO_FUZZ=ON -DAICO_ENABLE_TESTS=OFF -DAICO_ENABLE_BENCH=OFF \
  "${launcher[@]}" >/dev/null
cmake --build "$BUILD_DIR" --target "${HARNESSES[@]}" -j"$(nproc)"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
mkdir -p "$BUILD_DIR/artifacts"
summary="$BUILD_DIR/fuzz-summary.txt"
: >"$summary"
failed=0
for h in "${HARNESSES[@]}"; do
  work="$BUILD_DIR/corpus/$h"
  mkdir -p "$work"
  log="$BUILD_DIR/$h.log"
  set +e
  "$BUILD_DIR/fuzz/$h" -max_total_time="$SECONDS_EACH" -timeout=10 \
    -rss_limit_mb=2048 -max_len=8192 -dict=fuzz/aico.dict \
    -print_final_stats=1 -artifact_prefix="$BUILD_DIR/artifacts/$h-" \
    "$work" "fuzz/corpus/$h" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || true)
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || true)
  corp=$(echo "$last" | grep -o 'corp: [0-9]*' | grep -o '[0-9]*' || true)
  status=ok
  if [ $rc -ne 0 ]; then
    status="FAILED (exit $rc, see $log)"
    failed=1
  fi
  line="$h: ${SECONDS_EACH}s execs=${execs:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} $status"
  echo "$line" | tee -a "$summary"
  if [ $rc -ne 0 ]; then
    grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
  fi
done
exit $failed
