#!/usr/bin/env bash
# Sets up everything on a fresh Debian 12 machine and runs the whole test suite.
#   ./scripts/test.sh              Release build in build/, all tests
#   ./scripts/test.sh --sanitize   also an ASan+UBSan build in build-asan/, all tests again
# Extra CMake arguments can be passed in SKYREELS_CMAKE_ARGS (e.g. -DSKYREELS_CUDA=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    *) echo "usage: $0 [--sanitize]" >&2; exit 2 ;;
  esac
done

./scripts/install-deps.sh
jobs=$(nproc)

build_and_test() {
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" ${SKYREELS_CMAKE_ARGS:-}
  cmake --build "$dir" -j"$jobs"
  # Tests share the machine's cores among themselves; one at a time keeps each one's threads honest.
  ctest --test-dir "$dir" --output-on-failure --timeout 600
}

# The fuzz targets run 3 s each here and 5 s under the sanitizers, where a finding is far more likely to be
# caught (half their default 10 s: CI's whole run has to stay under 30 minutes; longer runs are
# `ctest -L fuzz` with a larger -DSKYREELS_FUZZ_SECONDS).
build_and_test build -DSKYREELS_FUZZ_SECONDS=3
if [ $sanitize -eq 1 ]; then
  # The sanitizer build skips the benchmarks and -march=native code paths stay the same.
  ASAN_OPTIONS=detect_leaks=1 build_and_test build-asan -DSKYREELS_SANITIZE=ON -DSKYREELS_BENCH=OFF -DSKYREELS_CUDA=OFF \
    -DSKYREELS_FUZZ_SECONDS=5
fi
