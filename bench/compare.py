#!/usr/bin/python3
"""Joins bench_transformer's and torch_diffusers_transformer.py's JSON lines into one table.

For each configuration and precision: PyTorch's median (diffusers' own model), ours, the ratio (target
<= 1/2), and how fast our linear layers ran against the oneDNN GEMM rate measured in the same process
(target >= 70%). PyTorch "fp32" is compared with our f32 weights; PyTorch "bf16" (weights and activations
in bf16) with our bf16 weights in whichever GEMM precision and activation dtype was faster here.
Usage: compare.py skyreels.jsonl torch.jsonl
"""
import json
import sys


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


ours = read(sys.argv[1])
torch = read(sys.argv[2])
rows = []
for t in torch:
    want_weights = "f32" if t["dtype"] == "fp32" else "bf16"
    candidates = [o for o in ours if o["config"] == t["config"] and o["weights"] == want_weights]
    if not candidates:
        continue
    best = min(candidates, key=lambda o: o["median_s"])
    ratio = best["median_s"] / t["median_s"]
    rows.append((t["config"], t["dtype"], t["median_s"], best, ratio))

if torch:
    t = torch[0]
    print(f"PyTorch {t.get('torch_version', '?')} + diffusers {t.get('diffusers_version', '?')} "
          f"({t.get('cpu_capability', '?')}, {t.get('threads', '?')} threads) vs skyreels.cpp "
          f"({ours[0].get('threads', '?') if ours else '?'} threads)")
    noisy = [r for r in torch if r.get("other_load", 0) > 0.2]
    if noisy:
        print(f"warning: other processes were busy during {len(noisy)} PyTorch run(s); timings are pessimistic")
print(f"{'config':<11} {'dtype':<5} {'torch s':>8} {'ours s':>8} {'ratio':>6} {'<=0.5':>6}  "
      f"{'ours: weights/GEMM/activations':<30} {'linear/gemm':>11} {'>=70%':>5}")
failed = False
for config, dtype, tmed, o, ratio in rows:
    lin = o["linear_vs_gemm_1024"]
    ok_ratio = ratio <= 0.5
    ok_lin = lin >= 0.70
    failed |= config == "medium" and not (ok_ratio and ok_lin)
    print(f"{config:<11} {dtype:<5} {tmed:8.3f} {o['median_s']:8.3f} {ratio:6.2f} {'yes' if ok_ratio else 'NO':>6}  "
          f"{o['weights'] + '/' + o['gemm'] + '/' + o.get('activations', 'f32'):<30} {100 * lin:10.0f}% "
          f"{'yes' if ok_lin else 'NO':>5}")
print("targets apply to the medium configuration; real_block is reported for scale")
sys.exit(1 if failed else 0)
