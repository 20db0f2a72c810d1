#!/usr/bin/env bash
# One command for the GPU machine (the device tool's H100/H200: 16 cores, CUDA 13, PyTorch, no network):
# builds Release for the GPU present only, runs `ctest -L cuda`, then the GPU benchmarks and their PyTorch
# baselines on the same GPU, and writes everything to $OUT/gpu-results.txt (./gpu-results.txt when OUT is
# unset) with the build and test logs beside it. Budget: under 8 minutes on an H100, so that one 15-minute
# lease can run it twice.
#
#   ./scripts/gpu-check.sh                 # build, tests (ops, runtime, the demo pipeline against the CPU),
#                                          # the CLI demo on the GPU, GEMM / attention / block benchmarks
#   ./scripts/gpu-check.sh --tests-only
#   ./scripts/gpu-check.sh --forward       # the 13B forward at 544x960x97: resident, and streamed under
#                                          # --budget=12G with pinned and with mmap host memory (a second call:
#                                          # the default run and this one each fit one command's 10 minutes)
#   ./scripts/gpu-check.sh --bundle-deps   # on a Debian 12 dev machine: pack the build's packages (below)
#   ./scripts/gpu-check.sh --bundle-fixtures  # copy the pipeline fixtures into .gpu-fixtures/ (below)
#
# Dependencies: the GPU machine cannot reach apt, so scripts/install-deps.sh is not run. The build needs the
# Debian packages install-deps.sh lists (oneDNN, fmt, CLI11, nlohmann-json, PCRE2, ICU, FFmpeg, stb, GTest):
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

mode=all
reps=10
budget=12G
for arg in "$@"; do
  case "$arg" in
    --tests-only) mode=tests ;;
    --forward) mode=forward ;;
    --budget=*) budget=${arg#--budget=} ;;
    --bundle-deps) mode=bundle ;;
    --bundle-fixtures) mode=fixtures ;;
    --reps=*) reps=${arg#--reps=} ;;
    *) echo "usage: $0 [--tests-only | --forward | --bundle-deps | --bundle-fixtures] [--reps=N] [--budget=12G]" >&2
       exit 2 ;;
  esac
done

dev_packages=(libdnnl-dev nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libicu-dev libavcodec-dev
              libavformat-dev libavutil-dev libswscale-dev libstb-dev libgtest-dev libbenchmark-dev)

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

out_dir=${OUT:-$root}
results=$out_dir/gpu-results.txt
build_log=$out_dir/gpu-build.log
test_log=$out_dir/gpu-ctest.log
: >"$results"
say() { echo "$*" | tee -a "$results"; }
t_start=$(date +%s)
elapsed() { echo $(($(date +%s) - t_start)); }

say "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
if ! command -v nvidia-smi >/dev/null; then
  say "FAIL: nvidia-smi not found: no GPU driver on this machine"
  exit 1
fi
say "gpu: $(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | head -1)"
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' ')
arch=${cc/./}
[ "$arch" = 90 ] && arch=90a  # Hopper: the arch-specific target (wgmma, setmaxnreg) as in cmake/Cuda.cmake
export PATH=$PATH:/usr/local/cuda/bin
say "nvcc: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'not found')"

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
  say "deps: the machine's packages did not configure; using the carried bundle unpacked in $deps"
}

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
jobs=$(nproc)
build=build-gpu
configure() {
  timeout 120 cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DSKYREELS_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DSKYREELS_TESTS=ON -DSKYREELS_BENCH=ON >"$build_log" 2>&1
}
say "== configure + build (arch $arch, $jobs jobs)"
if ! configure; then
  configured=0
  if [ -f .gpu-deps/deps.tar.xz ]; then
    rm -rf "$build"
    use_bundle
    configure && configured=1
  fi
  if [ $configured = 0 ]; then
    say "FAIL: configure (missing packages? see the header of this script); last lines:"
    tail -25 "$build_log" | tee -a "$results"
    exit 1
  fi
fi
# Every test target tests/cuda.cmake defines (so that a new one is built here without editing this list).
mapfile -t targets < <(grep -oE '^(skyreels_test|add_executable)\(test_cuda_[a-z_]+' tests/cuda.cmake | sed 's/.*(//')
[ "$mode" = all ] && targets+=(bench_cuda bench_cuda_forward skyreels)
[ "$mode" = forward ] && targets=(bench_cuda_forward)
if ! timeout 300 cmake --build "$build" -j"$jobs" --target "${targets[@]}" >>"$build_log" 2>&1; then
  say "FAIL: build; last lines:"
  grep -E 'error|Error' "$build_log" | head -30 | tee -a "$results"
  exit 1
fi
grep -E 'ptxas.*(spill|stack)' "$build_log" | sort -u | tee -a "$results" || true
say "built in $(elapsed) s"

if [ "$mode" = forward ]; then
  say "== the 13B transformer forward at 544x960x97 (resident; streamed under $budget: pinned, mmap)"
  timeout 540 "$build/bench/gpu/bench_cuda_forward" --forward --budget "$budget" --reps 1 \
    >"$out_dir/gpu-bench-forward.jsonl" 2>>"$results" || say "bench_cuda_forward failed ($?)"
  say "gpu-check finished in $(elapsed) s"
  exit 0
fi

if [ -z "${SKYREELS_FIXTURES:-}" ] && [ ! -d ../shared/fixtures ]; then
  if [ -d .gpu-fixtures ]; then
    export SKYREELS_FIXTURES=$root/.gpu-fixtures
  else
    say "note: no fixtures here (carry .gpu-fixtures, see the header): CudaPipelineParity will fail"
  fi
fi
say "== ctest -L cuda"
# One test at a time: they share the GPU, and the CPU references use every core.
# -V keeps every test's output in the log: the op harness's per-op timing rows come from passing tests.
timeout 240 ctest --test-dir "$build" -L cuda -V --timeout 120 >"$test_log" 2>&1
test_rc=$?
grep -E 'tests passed|tests failed|\*\*\*Failed|\*\*\*Timeout|Not Run' "$test_log" | tee -a "$results"
# The op harness's timing table (CUDA rows) and every failure's message.
sed -nE 's/^[0-9]+: ((cuda_f32|cuda_bf16) .*)/\1/p' "$test_log" | sort -u | tee -a "$results"
grep -B2 -A12 ': Failure$' "$test_log" | head -200 >>"$results"
say "tests done at $(elapsed) s (ctest exit $test_rc)"

if [ "$mode" = all ]; then
  say "== benchmarks (median of $reps; same GPU, same command)"
  ours=$out_dir/gpu-bench-skyreels.jsonl
  theirs=$out_dir/gpu-bench-torch.jsonl
  timeout 150 "$build/bench/gpu/bench_cuda" --reps "$reps" >"$ours" 2>>"$results" || say "bench_cuda failed ($?)"
  timeout 150 "$build/bench/gpu/bench_cuda_forward" --blocks --reps 3 >>"$ours" 2>>"$results" ||
    say "bench_cuda_forward --blocks failed ($?)"
  # The python3 that holds PyTorch on these machines is the one on PATH.
  timeout 150 python3 bench/gpu/torch_baseline.py --reps "$reps" --blocks >"$theirs" 2>>"$results" ||
    say "torch_baseline failed ($?)"
  python3 bench/gpu/torch_baseline.py --compare "$ours" "$theirs" | tee -a "$results"

  say "== the CLI demo on the GPU (T2V, block offload, memory report), and on the CPU for the time"
  for dev in cuda cpu; do
    flags=(--memory-report)
    [ $dev = cuda ] && flags+=(--offload block --vram-budget 400M)  # the CUDA plan reserves 293 MiB of scratch
    t0=$(date +%s%N)
    timeout 120 "$build/skyreels" generate --demo --quiet --device "$dev" "${flags[@]}" \
      --out "$out_dir/demo-$dev.mp4" >>"$results" 2>&1 || say "demo on $dev failed ($?)"
    say "demo on $dev: $((($(date +%s%N) - t0) / 1000000)) ms"
  done
fi
say "gpu-check finished in $(elapsed) s"
exit $test_rc
