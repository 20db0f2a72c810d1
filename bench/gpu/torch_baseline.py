#!/usr/bin/env python3
"""PyTorch baselines for bench/gpu/bench_cuda.cpp: the same shapes, timing and output format.

  gemm       torch.matmul(x, w.t()) with bf16 x [M, 3072] and w [N, 3072], M = tokens, N in {3072, 9216, 12288};
             bf16 output (and f32 output through torch.mm(..., out_dtype=torch.float32) where this torch has it).
  attention  torch.nn.functional.scaled_dot_product_attention on bf16 [1, 24, L, 128]: the default choice of
             kernel and each of flash / cuDNN / memory-efficient explicitly where available; and with the
             padded-text key mask (a boolean [1, 1, 1, L] mask: the last 100 keys masked).

Timing: CUDA events around each call after two warm-ups; median and minimum of --reps calls; random inputs.
FLOPs as bench_cuda: 2 M N K for a GEMM, 4 L^2 H D for attention (all keys counted).

  python3 bench/gpu/torch_baseline.py --reps 10 > torch.jsonl
  python3 bench/gpu/torch_baseline.py --compare ours.jsonl torch.jsonl     # side-by-side table
"""
import argparse
import json
import sys


def time_calls(torch, fn, reps):
    fn()
    fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    ms = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        ms.append(start.elapsed_time(stop))
    ms.sort()
    return ms[len(ms) // 2], ms[0]


def report(bench, shape, dtype, timing, flops):
    median_ms, min_ms = timing
    tflops = flops / (median_ms * 1e-3) * 1e-12
    print(json.dumps({"impl": "torch", "bench": bench, "shape": shape, "dtype": dtype,
                      "median_ms": round(median_ms, 4), "min_ms": round(min_ms, 4), "tflops": round(tflops, 1)}),
          flush=True)
    print(f"{bench:<10} {shape:<34} {dtype:<26} {median_ms:10.3f} ms {min_ms:10.3f} ms {tflops:8.1f} TFLOP/s",
          file=sys.stderr)


def run(args):
    import torch
    import torch.nn.functional as F

    if not torch.cuda.is_available():
        print("torch_baseline: no CUDA device", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    dev = "cuda"
    name = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__} on {name}, {args.tokens} tokens", file=sys.stderr)
    M, K = args.tokens, 3072

    def rand(*shape):
        return (torch.rand(*shape, device=dev, dtype=torch.float32) * 2 - 1).to(torch.bfloat16)

    if not args.no_gemm:
        x = rand(M, K)
        for N in (3072, 9216, 12288):
            w = rand(N, K)
            shape = f"M{M} K{K} N{N}"
            flops = 2.0 * M * N * K
            wt = w.t()
            report("gemm", shape, "bf16->bf16", time_calls(torch, lambda: torch.matmul(x, wt), args.reps), flops)
            try:
                torch.mm(x, wt, out_dtype=torch.float32)
                report("gemm", shape, "bf16->f32",
                       time_calls(torch, lambda: torch.mm(x, wt, out_dtype=torch.float32), args.reps), flops)
            except (TypeError, RuntimeError) as e:
                print(f"gemm bf16->f32: not available in this torch ({e.__class__.__name__})", file=sys.stderr)
            del w, wt
        del x
        torch.cuda.empty_cache()

    if not args.no_attention:
        H, D, L = 24, 128, args.tokens
        q, k, v = rand(1, H, L, D), rand(1, H, L, D), rand(1, H, L, D)
        flops = 4.0 * L * L * H * D
        shape = f"B1 H{H} L{L} D{D}"
        report("attention", shape, "bf16 sdpa (default)",
               time_calls(torch, lambda: F.scaled_dot_product_attention(q, k, v), args.reps), flops)
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
            backends = [("flash", "FLASH_ATTENTION"), ("cudnn", "CUDNN_ATTENTION"),
                        ("efficient", "EFFICIENT_ATTENTION")]
            for label, attr in backends:
                if not hasattr(SDPBackend, attr):
                    continue
                try:
                    with sdpa_kernel([getattr(SDPBackend, attr)]):
                        t = time_calls(torch, lambda: F.scaled_dot_product_attention(q, k, v), args.reps)
                    report("attention", shape, f"bf16 sdpa ({label})", t, flops)
                except RuntimeError as e:
                    print(f"attention {label}: not available ({str(e).splitlines()[0][:80]})", file=sys.stderr)
        except ImportError:
            pass
        mask = torch.ones(1, 1, 1, L, dtype=torch.bool, device=dev)
        mask[..., L - 100:] = False
        report("attention", shape + " kv_len-100", "bf16 sdpa (default, mask)",
               time_calls(torch, lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), args.reps), flops)
    return 0


def compare(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(line) for line in f if line.strip().startswith("{")]
    keys = []
    for r in rows:
        key = (r["bench"], r["shape"])
        if key not in keys:
            keys.append(key)
    print(f"{'bench':<10} {'shape':<34} {'impl':<9} {'dtype':<26} {'median ms':>10} {'TFLOP/s':>8} {'vs torch':>9}")
    for key in keys:
        group = [r for r in rows if (r["bench"], r["shape"]) == key]
        torch_rows = [r for r in group if r["impl"] == "torch"]
        best_torch = min((r["median_ms"] for r in torch_rows), default=None)
        for r in group:
            ratio = f"{best_torch / r['median_ms']:.2f}x" if best_torch and r["impl"] != "torch" else ""
            print(f"{key[0]:<10} {key[1]:<34} {r['impl']:<9} {r['dtype']:<26} {r['median_ms']:>10.3f} "
                  f"{r['tflops']:>8.1f} {ratio:>9}")
    print("vs torch: the fastest torch variant's time over ours (above 1: ours is faster)")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=51000 + 256)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-gemm", action="store_true")
    ap.add_argument("--no-attention", action="store_true")
    ap.add_argument("--compare", nargs="+", metavar="JSONL", help="print a side-by-side table of result files")
    args = ap.parse_args()
    if args.compare:
        return compare(args.compare)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
