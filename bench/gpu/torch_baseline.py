#!/usr/bin/env python3
"""PyTorch baselines for bench/gpu/bench_cuda.cpp: the same shapes, timing and output format.

  gemm       torch.matmul(x, w.t()) with bf16 x [M, 3072] and w [N, 3072], M = tokens, N in {3072, 9216, 12288};
             bf16 output (and f32 output through torch.mm(..., out_dtype=torch.float32) where this torch has it).
  attention  torch.nn.functional.scaled_dot_product_attention on bf16 [1, 24, L, 128]: the default choice of
             kernel and each of flash / cuDNN / memory-efficient explicitly where available; and with the
             padded-text key mask (a boolean [1, 1, 1, L] mask: the last 100 keys masked).

  blocks     (--blocks) one HunyuanVideo dual-stream and one single-stream block at width 3072, 24 heads x 128,
             written here from diffusers' HunyuanVideoTransformerBlock / HunyuanVideoSingleTransformerBlock
             (adaLN-Zero modulation, per-head RMSNorm of q and k, interleaved RoPE on the video tokens, joint
             attention over video + text, tanh-GELU MLPs), everything in bf16 as diffusers runs it, on the
             tokens given by --tokens (the last 256 are text, 100 of them padding): with the padded-key mask as
             the reference passes it, and without a mask (flash attention). Compared with
             bench_cuda_forward --blocks.

Timing: CUDA events around each call after two warm-ups; median and minimum of --reps calls; random inputs.
FLOPs as bench_cuda: 2 M N K for a GEMM, 4 L^2 H D for attention (all keys counted); a block: 24 S D^2 for its
linear layers and 4 S^2 D for its attention, S tokens.

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
    if args.blocks:
        run_blocks(torch, F, args, rand)
    return 0


def run_blocks(torch, F, args, rand):
    S, D, H, hd, T = args.tokens, 3072, 24, 128, 256
    N = S - T
    lin = lambda i, o: torch.nn.Linear(i, o, device="cuda", dtype=torch.bfloat16)

    def layer_norm(x):
        return F.layer_norm(x, (D,), eps=1e-6)

    def rms_heads(x, w):  # [1, L, H, hd]
        return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * w

    def rope(x, cos, sin):  # interleaved pairs, x [1, L, H, hd], cos/sin [L, hd]
        pairs = x.unflatten(-1, (hd // 2, 2))
        rot = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return (x.float() * cos[None, :, None] + rot.float() * sin[None, :, None]).to(x.dtype)

    def attention(q, k, v, mask):  # [1, L, H, hd] -> [1, L, H*hd]
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        return o.transpose(1, 2).flatten(2)

    angle = torch.rand(N, hd, device="cuda") * 6.28
    cos, sin = angle.cos(), angle.sin()
    temb = rand(1, D)
    mask = torch.ones(1, 1, 1, S, dtype=torch.bool, device="cuda")
    mask[..., S - 100:] = False
    flops = 24.0 * S * D * D + 4.0 * S * S * D

    with torch.no_grad():
        # Dual-stream block.
        m = {n: lin(i, o) for n, i, o in [("norm1", D, 6 * D), ("norm1_c", D, 6 * D), ("q", D, D), ("k", D, D),
                                          ("v", D, D), ("aq", D, D), ("ak", D, D), ("av", D, D), ("out", D, D),
                                          ("aout", D, D), ("ff1", D, 4 * D), ("ff2", 4 * D, D),
                                          ("cff1", D, 4 * D), ("cff2", 4 * D, D)]}
        wq, wk, wq2, wk2 = (torch.ones(hd, device="cuda", dtype=torch.bfloat16) for _ in range(4))
        x, c = rand(1, N, D), rand(1, T, D)

        def dual(mask_arg):
            mod = m["norm1"](F.silu(temb)).chunk(6, dim=-1)
            cmod = m["norm1_c"](F.silu(temb)).chunk(6, dim=-1)
            nx = layer_norm(x) * (1 + mod[1][:, None]) + mod[0][:, None]
            nc = layer_norm(c) * (1 + cmod[1][:, None]) + cmod[0][:, None]
            heads = lambda t: t.unflatten(-1, (H, hd))
            q = rope(rms_heads(heads(m["q"](nx)), wq), cos, sin)
            k = rope(rms_heads(heads(m["k"](nx)), wk), cos, sin)
            v = heads(m["v"](nx))
            cq, ck, cv = rms_heads(heads(m["aq"](nc)), wq2), rms_heads(heads(m["ak"](nc)), wk2), heads(m["av"](nc))
            a = attention(torch.cat([q, cq], 1), torch.cat([k, ck], 1), torch.cat([v, cv], 1), mask_arg)
            hx = x + m["out"](a[:, :N]) * mod[2][:, None]
            hc = c + m["aout"](a[:, N:]) * cmod[2][:, None]
            nx2 = layer_norm(hx) * (1 + mod[4][:, None]) + mod[3][:, None]
            nc2 = layer_norm(hc) * (1 + cmod[4][:, None]) + cmod[3][:, None]
            hx = hx + m["ff2"](F.gelu(m["ff1"](nx2), approximate="tanh")) * mod[5][:, None]
            hc = hc + m["cff2"](F.gelu(m["cff1"](nc2), approximate="tanh")) * cmod[5][:, None]
            return hx, hc

        shape = f"L{S} D{D} H{H}"
        report("dual_block", shape, "bf16 (mask)", time_calls(torch, lambda: dual(mask), args.reps), flops)
        report("dual_block", shape, "bf16 (no mask)", time_calls(torch, lambda: dual(None), args.reps), flops)
        del m, x, c
        torch.cuda.empty_cache()

        # Single-stream block.
        s = {n: lin(i, o) for n, i, o in [("norm", D, 3 * D), ("q", D, D), ("k", D, D), ("v", D, D),
                                          ("mlp", D, 4 * D), ("out", 5 * D, D)]}
        xs = rand(1, S, D)

        def single(mask_arg):
            mod = s["norm"](F.silu(temb)).chunk(3, dim=-1)
            n = layer_norm(xs) * (1 + mod[1][:, None]) + mod[0][:, None]
            hidden = F.gelu(s["mlp"](n), approximate="tanh")
            heads = lambda t: t.unflatten(-1, (H, hd))
            q, k, v = rms_heads(heads(s["q"](n)), wq), rms_heads(heads(s["k"](n)), wk), heads(s["v"](n))
            q = torch.cat([rope(q[:, :N], cos, sin), q[:, N:]], 1)
            k = torch.cat([rope(k[:, :N], cos, sin), k[:, N:]], 1)
            a = attention(q, k, v, mask_arg)
            return xs + s["out"](torch.cat([a, hidden], -1)) * mod[2][:, None]

        report("single_block", shape, "bf16 (mask)", time_calls(torch, lambda: single(mask), args.reps), flops)
        report("single_block", shape, "bf16 (no mask)", time_calls(torch, lambda: single(None), args.reps), flops)


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
    ap.add_argument("--blocks", action="store_true", help="also time one dual-stream and one single-stream block")
    ap.add_argument("--compare", nargs="+", metavar="JSONL", help="print a side-by-side table of result files")
    args = ap.parse_args()
    if args.compare:
        return compare(args.compare)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
