#!/usr/bin/env bash
# skyreels.cpp against the current PyTorch running diffusers' own HunyuanVideoTransformer3DModel, side by
# side in one run, on the same machine, configurations and thread count.
#
#   bench/compare_with_torch.sh [medium|real_block|all] [reps] [threads]
#
# Builds nothing: run ./scripts/test.sh (or cmake --build build) first. The baseline runs in a virtual
# environment outside the repository ($SKYREELS_TORCH_VENV, default ~/.cache/skyreels/torch-venv), made on
# first use with `pip install torch diffusers==0.32.2` from PyPI (the newest torch there; several GB, as
# PyPI's Linux wheels carry the CUDA libraries). Prints a table with both versions and writes the raw JSON
# lines and the summary under build/bench-results/.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-medium}
reps=${2:-3}
threads=${3:-$(nproc)}

venv=${SKYREELS_TORCH_VENV:-$HOME/.cache/skyreels/torch-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, diffusers" 2>/dev/null; then
  echo "compare: making $venv (pip install torch diffusers==0.32.2)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch "diffusers==0.32.2"
fi

out=build/bench-results
mkdir -p "$out"
configs=$config
[ "$config" = all ] && configs=medium,real_block

echo "compare: skyreels.cpp ($config, $reps reps, $threads threads)" >&2
build/bench/bench_transformer --config "$config" --reps "$reps" --threads "$threads" > "$out/skyreels.jsonl"
# bf16 weights, GEMMs and activations: what PyTorch's bf16 run does.
build/bench/bench_transformer --config "$config" --reps "$reps" --threads "$threads" --weights bf16 --gemm bf16 \
  --activations bf16 >> "$out/skyreels.jsonl"
echo "compare: PyTorch + diffusers ($configs, $reps reps, $threads threads)" >&2
"$venv/bin/python" bench/torch_diffusers_transformer.py --configs "$configs" --reps "$reps" \
  --threads "$threads" > "$out/torch.jsonl"
python3 bench/compare.py "$out/skyreels.jsonl" "$out/torch.jsonl" | tee "$out/summary.txt"
