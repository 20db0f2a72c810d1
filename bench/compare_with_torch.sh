#!/usr/bin/env bash
# skyreels.cpp against PyTorch eager, side by side in one run, on the same machine and configurations.
#
#   bench/compare_with_torch.sh [medium|real_block|all] [reps]
#
# Builds nothing: run ./scripts/test.sh (or cmake --build build) first. Installs Debian's python3-torch
# and libopenblas-dev when missing (the PyTorch baseline's only needs). Prints a table and writes the raw
# JSON lines and a summary under build/bench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-medium}
reps=${2:-3}

missing=()
for p in python3-torch libopenblas-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "compare: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

out=build/bench-results
mkdir -p "$out"
configs=$config
[ "$config" = all ] && configs=medium,real_block

echo "compare: skyreels.cpp ($config, $reps reps)" >&2
build/bench/bench_transformer --config "$config" --reps "$reps" > "$out/skyreels.jsonl"
echo "compare: PyTorch eager ($configs, $reps reps)" >&2
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set on these machines for old OpenBLAS builds; they slow torch,
# so the baseline runs with both unset (the script then picks the best OpenBLAS kernels it can).
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/torch_transformer.py --bench \
  --configs "$configs" --reps "$reps" > "$out/torch.jsonl"
/usr/bin/python3 bench/compare.py "$out/skyreels.jsonl" "$out/torch.jsonl" | tee "$out/summary.txt"
