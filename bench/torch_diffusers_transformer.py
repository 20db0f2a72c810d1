#!/usr/bin/env python3
"""PyTorch baseline: diffusers' own HunyuanVideoTransformer3DModel forward on the CPU.

The model is diffusers v0.32.2's class itself (what SkyReelsInfer runs), built with made-up weights at the
shapes of build/bench/bench_transformer's named configurations, on whatever PyTorch the environment has
(bench/compare_with_torch.sh installs the current one from PyPI into a virtual environment outside the
repository). Timed eager, under torch.inference_mode(), with torch.set_num_threads(--threads).

  python bench/torch_diffusers_transformer.py --configs medium,real_block --dtypes fp32,bf16 --reps 3

One JSON object per (config, dtype) on stdout:
  {"impl": "torch-diffusers", "config", "dtype", "threads", "median_s", "min_s", "max_s", "reps",
   "torch_version", "diffusers_version", "attention", "cpu_capability", "other_load"}
and readable lines on stderr. `other_load` is how many cores other processes kept busy while the timed
repetitions ran (from /proc/stat); compare numbers only from quiet runs (it warns above 0.2).
"""

import argparse
import json
import os
import statistics
import sys
import time

# The configurations of build/bench/bench_transformer (named_configs() there), in diffusers' arguments.
CONFIGS = {
    # 512 wide (4 heads x 128), 2 dual + 4 single blocks, 4,096 video + 256 text tokens.
    "medium": dict(
        model=dict(num_attention_heads=4, attention_head_dim=128, num_layers=2, num_single_layers=4,
                   text_embed_dim=512, pooled_projection_dim=768),
        latent=(1, 16, 4, 64, 64),
        text_tokens=256,
    ),
    # the 13B model's block shape (3072 = 24 x 128), 1 dual + 1 single block, 1,024 video + 256 text tokens.
    "real_block": dict(
        model=dict(num_attention_heads=24, attention_head_dim=128, num_layers=1, num_single_layers=1,
                   text_embed_dim=4096, pooled_projection_dim=768),
        latent=(1, 16, 4, 32, 32),
        text_tokens=256,
    ),
}


def busy_jiffies():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="medium", help="comma list: " + ",".join(CONFIGS))
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma list: fp32,bf16")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()

    import torch
    import diffusers
    from diffusers import HunyuanVideoTransformer3DModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        for dtype_name in args.dtypes.split(","):
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
            model = HunyuanVideoTransformer3DModel(**cfg["model"]).to(dtype).eval()
            B, C, F, H, W = cfg["latent"]
            L = cfg["text_tokens"]
            inputs = dict(
                hidden_states=torch.randn(B, C, F, H, W, dtype=dtype),
                timestep=torch.full((B,), 900.0, dtype=dtype),
                encoder_hidden_states=torch.randn(B, L, cfg["model"]["text_embed_dim"], dtype=dtype),
                encoder_attention_mask=torch.ones(B, L, dtype=torch.int64),
                pooled_projections=torch.randn(B, cfg["model"]["pooled_projection_dim"], dtype=dtype),
                guidance=torch.full((B,), 1000.0, dtype=dtype),
                return_dict=False,
            )
            times = []
            with torch.inference_mode():
                for _ in range(args.warmup):
                    model(**inputs)
                b0, t0 = busy_jiffies()
                cpu0 = time.process_time()
                wall0 = time.perf_counter()
                for _ in range(args.reps):
                    start = time.perf_counter()
                    model(**inputs)
                    times.append(time.perf_counter() - start)
                wall = time.perf_counter() - wall0
                own_cores = (time.process_time() - cpu0) / wall
                b1, t1 = busy_jiffies()
            # Cores other processes kept busy: the machine's busy cores less this process's own.
            machine_busy = (b1 - b0) / max(t1 - t0, 1) * os.cpu_count()
            other_load = max(0.0, machine_busy - own_cores)
            row = {
                "impl": "torch-diffusers",
                "config": name,
                "dtype": dtype_name,
                "threads": args.threads,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "reps": args.reps,
                "torch_version": torch.__version__,
                "diffusers_version": diffusers.__version__,
                "attention": "F.scaled_dot_product_attention",
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "other_load": round(other_load, 2),
                "wall_s": wall,
            }
            print(json.dumps(row), flush=True)
            print(f"torch {torch.__version__} diffusers {diffusers.__version__} {name} {dtype_name}: "
                  f"median {row['median_s']:.3f} s (min {row['min_s']:.3f}, {args.reps} reps, "
                  f"{args.threads} threads, {row['cpu_capability']})", file=sys.stderr)
            if other_load > 0.2:
                print(f"warning: other processes kept {other_load:.1f} cores busy; the timing is pessimistic",
                      file=sys.stderr)
            del model


if __name__ == "__main__":
    main()
