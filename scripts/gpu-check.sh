#!/usr/bin/env bash
# The check for a GPU machine (the device tool's H100/H200: 16 cores, CUDA 13, PyTorch, no network), in two
# parts that each finish under 8 minutes on an H100 including their build, so one 15-minute lease runs both:
#
#   ./scripts/gpu-check.sh --part=1     # configure + build for the GPU present, then every CUDA test binary run
#                                       # directly (one process each: one CUDA context each, not one per test)
#                                       # and the kernels' register/shared-memory check; $OUT/gpu-part1.txt
#   ./scripts/gpu-check.sh --part=2     # (re)build the benchmarks and the CLI, then GEMM / attention (cuDNN SDPA,
#                                       # our kernel, PyTorch SDPA) / the two blocks / the 13B forward resident
#                                       # and streamed under 12G (pinned, mmap) / the CLI demo; $OUT/gpu-part2.txt
#   ./scripts/gpu-check.sh --dry-run    # prints each part's exact commands and time limits, runs nothing
#   ./scripts/gpu-check.sh --bundle-deps       # on a Debian 12 dev machine: pack the build's packages (below)
#   ./scripts/gpu-check.sh --bundle-fixtures   # copy the pipeline fixtures into .gpu-fixtures/ (below)
#
# Every step runs under its own `timeout`, its output in its own log under $OUT (./gpu-check-out when OUT is
# unset), and its outcome is appended to the part's results file as soon as it ends: a step that times out is
# reported as such with what it printed so far (for a test binary: every test that had finished, and the one
# that was running), and the steps after it still run. The limits of a part add up to less than 8 minutes.
#
# Dependencies: the GPU machine cannot reach apt, so scripts/install-deps.sh is not run. The build needs the
# Debian packages install-deps.sh lists (oneDNN, fmt, CLI11, nlohmann-json, PCRE2, ICU, FFmpeg, libjpeg-turbo, libpng, GTest):
# where they are missing, carry a bundle made on a Debian 12 machine that has them (`--bundle-deps` writes
# .gpu-deps/deps.tar.xz; list /.gpu-deps/ in .git/info/exclude and name it in the device tool's `carry`).
# This script unpacks it under /tmp and points CMake, pkg-config and the loader at it; without it, configure
# reports what is missing and the script stops there.
#
# Fixtures: the GPU pipeline parity test (CudaPipelineParity) reads the pipeline fixtures, which live beside
# the checkout (../shared/fixtures) and do not travel to the GPU machine. `--bundle-fixtures` copies the
# pipeline fixture folders (about 6 MB) into .gpu-fixtures/ (ignored by git): carry it, and this script
# points SKYREELS_FIXTURES at it when ../shared/fixtures is absent.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

mode=
part=0
dry=0
reps=10
budget=12G
for arg in "$@"; do
  case "$arg" in
    --part=1) part=1 ;;
    --part=2) part=2 ;;
    --dry-run) dry=1 ;;
    --budget=*) budget=${arg#--budget=} ;;
    --bundle-deps) mode=bundle ;;
    --bundle-fixtures) mode=fixtures ;;
    --reps=*) reps=${arg#--reps=} ;;
    *) echo "usage: $0 --part=1 | --part=2 | --dry-run [--part=N] | --bundle-deps | --bundle-fixtures" \
            "[--reps=N] [--budget=12G]" >&2
       exit 2 ;;
  esac
done
if [ -z "$mode" ] && [ $dry = 0 ] && [ $part = 0 ]; then
  echo "gpu-check: name a part (--part=1 or --part=2) or --dry-run" >&2
  exit 2
fi

dev_packages=(libdnnl-dev nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libicu-dev libavcodec-dev
              libavformat-dev libavutil-dev libswscale-dev libjpeg62-turbo-dev libpng-dev libgtest-dev libbenchmark-dev)

if [ "$mode" = fixtures ]; then
  src=${SKYREELS_FIXTURES:-$root/../shared/fixtures}
  rm -rf .gpu-fixtures && mkdir -p .gpu-fixtures
  for d in "$src"/*/; do
    [ -f "$d/model_index.json" ] && cp -r "$d" .gpu-fixtures/
  done
  echo "gpu-check: .gpu-fixtures/ holds $(ls .gpu-fixtures | wc -l) pipeline fixtures, $(du -sh .gpu-fixtures | cut -f1)"
  exit 0
fi

if [ "$mode" = bundle ]; then
  # Every file of the -dev packages (headers, .so links, CMake and pkg-config files) and of the library
  # packages they depend on directly (the .so files the build links and the tests load: oneDNN needs the
  # OpenCL loader at run time). Static archives are left out except GoogleTest's and Google Benchmark's
  # (Debian ships only those). The libraries' own dependencies (FFmpeg's codecs, ...) are left out too: the CUDA
  # targets use no FFmpeg or ICU symbol, and the linker drops such libraries (--as-needed) without opening
  # their dependencies. About 30 MB compressed. Paths stay as on Debian (/usr/...); the pkg-config prefixes are
  # rewritten when the bundle is unpacked.
  set -e
  mkdir -p .gpu-deps
  list=$(mktemp)
  pkgs=("${dev_packages[@]}" ocl-icd-libopencl1)
  for p in "${dev_packages[@]}"; do
    deps=$(dpkg-query -W -f='${Depends}' "$p" | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | grep -E '^lib' |
           grep -vE '^lib(c6|stdc\+\+|gcc|gomp)' || true)
    pkgs+=($deps)
  done
  for p in $(printf '%s\n' "${pkgs[@]}" | sort -u); do
    dpkg -L "$p" 2>/dev/null | grep -E '^/usr/(include|lib|share/pkgconfig|share/cmake)' >>"$list" || true
  done
  sort -u "$list" | while read -r f; do
    if [ -e "$f" ] && [ ! -d "$f" ]; then
      case "$f" in
        *gtest*.a | *gmock*.a | *benchmark*.a | *.so | *.so.* | *.h | *.hpp | *.hh | *.ipp | *.inc | *.pc | *.cmake) ;;
        */include/*) ;;
        *) continue ;;
      esac
      echo "${f#/}"
    fi
  done >"$list.sorted"
  tar -C / --no-recursion -cJf .gpu-deps/deps.tar.xz -T "$list.sorted"
  echo "gpu-check: .gpu-deps/deps.tar.xz, $(wc -l <"$list.sorted") files, $(du -h .gpu-deps/deps.tar.xz | cut -f1)"
  rm -f "$list" "$list.sorted"
  exit 0
fi

out_dir=${OUT:-$root/gpu-check-out}
build=build-gpu
jobs=$(nproc)
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
arch='<compute capability>'  # e.g. 90a on an H100: set from nvidia-smi below (a dry run shows the placeholder)
if [ $dry = 1 ]; then
  jobs='$(nproc)'
  out_dir='$OUT'
fi
if [ $dry = 0 ] && command -v nvidia-smi >/dev/null; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' ')
  arch=${cc/./}
  [ "$arch" = 90 ] && arch=90a  # Hopper: the arch-specific target (wgmma, setmaxnreg) as in cmake/Cuda.cmake
fi

# The CUDA test binaries (every test target tests/cuda.cmake defines, so a new one runs without editing this),
# plus the host-side rules' tests, which need no GPU.
mapfile -t test_targets < <(grep -oE '^(skyreels_test|add_executable)\(test_cuda_[a-z_]+' tests/cuda.cmake | sed 's/.*(//')
test_targets=(test_cuda_host "${test_targets[@]}")
test_limit() {  # seconds per test binary
  case "$1" in
    test_cuda_host) echo 10 ;;
    test_cuda_runtime) echo 30 ;;
    test_cuda_ops) echo 40 ;;
    test_cuda_harness) echo 50 ;;
    test_cuda_pipeline) echo 45 ;;
    *) echo 30 ;;
  esac
}

# step NAME LIMIT_S COMMAND...: runs COMMAND under `timeout LIMIT_S` with its output in $out_dir/NAME.log, and
# appends its outcome to the results file at once. With --dry-run: prints the limit and the command.
total_limit=0
step() {
  local name=$1 limit=$2
  shift 2
  total_limit=$((total_limit + limit))
  if [ $dry = 1 ]; then
    if [ "$1" = sh ] && [ "$2" = -c ]; then
      printf '  [%3d s] %s\n' "$limit" "$3"
    else
      printf '  [%3d s] %s\n' "$limit" "$*"
    fi
    return 0
  fi
  local log=$out_dir/$name.log t0 rc
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >"$log" 2>&1
  rc=$?
  local took=$(($(date +%s) - t0))
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    say "TIMEOUT $name after ${limit} s (limit); its output so far follows"
  elif [ $rc != 0 ]; then
    say "FAIL $name (exit $rc, ${took} s)"
  else
    say "ok $name (${took} s)"
  fi
  summarize "$name" "$log" "$rc"
  return $rc
}

# What a step's log says, into the results file: gtest's verdicts (every finished test's failure, the test that
# was running at a timeout), the op harness's timing rows, ptxas spill warnings, benchmark tables.
summarize() {
  local name=$1 log=$2 rc=$3
  case "$name" in
    test_*)
      grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]|^\[==========\] .* ran' "$log" | sort -u | tee -a "$results" >/dev/null
      sed -nE 's/^((cuda_f32|cuda_bf16|cudnn) .*)/\1/p' "$log" | sort -u >>"$results"
      grep -B2 -A12 ': Failure$' "$log" | head -120 >>"$results"
      if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        # gtest prints its summary only at the end: list what finished before the timeout from the per-test lines.
        echo "  finished before the timeout: $(grep -cE '^\[       OK \]' "$log") passed," \
          "$(grep -cE '^\[  FAILED  \] [A-Za-z]' "$log") failed, $(grep -cE '^\[  SKIPPED \] [A-Za-z]' "$log") skipped" >>"$results"
        grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | sed 's/^/  /' >>"$results"
        echo "  running at the timeout: $(grep -E '^\[ RUN +\]' "$log" | tail -1)" >>"$results"
      fi
      ;;
    build*) grep -E 'ptxas.*(spill|stack)|error' "$log" | sort -u | head -40 >>"$results" ;;
    configure*) [ "$rc" != 0 ] && tail -25 "$log" >>"$results" ;;
    *) tail -40 "$log" >>"$results" ;;
  esac
  return 0
}

configure_cmd=(cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSKYREELS_CUDA=ON
               -DCMAKE_CUDA_ARCHITECTURES="$arch" -DSKYREELS_TESTS=ON -DSKYREELS_BENCH=ON)

part1() {
  step configure 60 "${configure_cmd[@]}" || return 1
  step build-tests 200 cmake --build "$build" -j"$jobs" --target "${test_targets[@]}" || return 1
  # The kernels' resources (what the `kernels` ctest checks in CI builds): spills and shared memory per arch.
  step kernel-resources 10 cmake -DREPORT_DIR="$build/kernel_resources" -P cmake/check_kernel_resources.cmake
  local t
  for t in "${test_targets[@]}"; do
    step "$t" "$(test_limit "$t")" "$build/tests/$t"
  done
  return 0
}

part2() {
  ours=$out_dir/gpu-bench-skyreels.jsonl
  theirs=$out_dir/gpu-bench-torch.jsonl
  step configure 30 "${configure_cmd[@]}" || return 1
  step build-bench 150 cmake --build "$build" -j"$jobs" --target bench_cuda bench_cuda_forward skyreels || return 1
  # GEMMs, then attention with cuDNN's fused SDPA and with our kernel (the switch: SKYREELS_CUDA_ATTENTION).
  step bench-cuda 60 sh -c "'$build/bench/gpu/bench_cuda' --reps $reps --attention-impl all >'$ours'"
  step bench-blocks 40 sh -c "'$build/bench/gpu/bench_cuda_forward' --blocks --reps 3 >>'$ours'"
  step torch-baseline 45 sh -c "python3 bench/gpu/torch_baseline.py --reps $reps --blocks >'$theirs'"
  step compare 5 python3 bench/gpu/torch_baseline.py --compare "$ours" "$theirs"
  step forward-13b 80 sh -c "'$build/bench/gpu/bench_cuda_forward' --forward --budget $budget --reps 1 \
>'$out_dir/gpu-bench-forward.jsonl'"
  step demo-cuda 20 "$build/skyreels" generate --demo --quiet --device cuda --memory-report --offload block \
    --vram-budget 400M --out "$out_dir/demo-cuda.mp4"
  step demo-cpu 20 "$build/skyreels" generate --demo --quiet --device cpu --memory-report --out "$out_dir/demo-cpu.mp4"
  return 0
}

if [ $dry = 1 ]; then
  say() { :; }
  for p in 1 2; do
    [ $part != 0 ] && [ $part != $p ] && continue
    total_limit=0
    echo "part $p (results: \$OUT/gpu-part$p.txt; every step's output: \$OUT/<step>.log):"
    part$p
    echo "  part $p: the limits add up to $total_limit s (the budget: 480 s)"
  done
  exit 0
fi

mkdir -p "$out_dir"
results=$out_dir/gpu-part$part.txt
: >"$results"
say() { echo "$*" | tee -a "$results"; }
t_start=$(date +%s)
say "gpu-check part $part $(date -u +%Y-%m-%dT%H:%M:%SZ)"
if ! command -v nvidia-smi >/dev/null; then
  say "FAIL: nvidia-smi not found: no GPU driver on this machine"
  exit 1
fi
say "gpu: $(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | head -1)"
export PATH=$PATH:/usr/local/cuda/bin
say "nvcc: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'not found'), arch $arch, $jobs jobs"

# Carried dependencies (see the header): used only when the machine's own packages do not configure.
use_bundle() {
  deps=/tmp/skyreels-deps
  if [ ! -d "$deps/usr" ]; then
    mkdir -p "$deps"
    tar -C "$deps" -xJf .gpu-deps/deps.tar.xz
    find "$deps" -name '*.pc' -exec sed -i -e "s|=/usr|=$deps/usr|g" -e "s| -I/usr| -I$deps/usr|g" \
      -e "s| -L/usr| -L$deps/usr|g" {} +
  fi
  export CMAKE_PREFIX_PATH=$deps/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  export PKG_CONFIG_PATH=$deps/usr/lib/x86_64-linux-gnu/pkgconfig:$deps/usr/share/pkgconfig
  export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu
  export CPATH=$deps/usr/include:$deps/usr/include/x86_64-linux-gnu
  say "deps: using the carried bundle unpacked in $deps"
}
# The bundle is needed when the machine's own packages do not configure (checked once, quickly).
if [ -f .gpu-deps/deps.tar.xz ] && ! pkg-config --exists libpcre2-8 2>/dev/null; then use_bundle; fi

if [ -z "${SKYREELS_FIXTURES:-}" ] && [ ! -d ../shared/fixtures ]; then
  if [ -d .gpu-fixtures ]; then
    export SKYREELS_FIXTURES=$root/.gpu-fixtures
  else
    say "note: no fixtures here (carry .gpu-fixtures, see the header): CudaPipelineParity will fail"
  fi
fi

part$part
rc=$?
failures=$(grep -cE '^(FAIL|TIMEOUT) ' "$results")
say "gpu-check part $part finished in $(($(date +%s) - t_start)) s: $failures step(s) failed or timed out"
[ $rc = 0 ] && [ "$failures" = 0 ]
