#!/usr/bin/python3
"""PyTorch eager baseline for the HunyuanVideo / SkyReels-V1 transformer forward.

A self-contained re-implementation of diffusers v0.32.2
``HunyuanVideoTransformer3DModel.forward`` in plain PyTorch eager ops, written the way a
PyTorch 1.13 user would run it (no diffusers, no ``scaled_dot_product_attention``: attention
is ``softmax(Q K^T * scale + mask) V`` by hand).  Module and parameter names are the
diffusers ``state_dict()`` names, so ``model.load_state_dict(diffusers_safetensors)`` works.
It is the side-by-side speed baseline for the C++ CPU benchmark.

Needs only Debian's ``/usr/bin/python3`` with ``python3-torch`` 1.13 (CPU).  fp32 matmuls go
through the system ``libblas.so.3``: with Debian's reference BLAS (package ``libblas3``)
they run at a few GFLOP/s, so install ``libopenblas-dev`` (a project dependency, see
shared/docs/DEPENDENCIES.md) first; bf16 matmuls go through oneDNN.  The BLAS library in
use is reported in every JSON line (``blas``).

Usage (from the repository root):

  # parity: forward vs the saved diffusers output of a fixture (max abs error < 1e-4, fp32)
  /usr/bin/python3 bench/torch_transformer.py --check ../shared/fixtures/transformer_t2v
  /usr/bin/python3 bench/torch_transformer.py --check ../shared/fixtures/transformer_i2v

  # speed: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are set in this project's environment and
  # make OpenBLAS (and so torch fp32) slow: run the benchmark with both unset
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/torch_transformer.py --bench

  options: --configs medium,real_block  --dtypes fp32,bf16  --threads 2  --reps 3  --warmup 1

OpenBLAS 0.3.21 (Debian 12) does not know every CPU: on an unknown model (seen: Intel family 6
model 207) it falls back to its pre-AVX2 "Prescott" kernels, ~1/5 of the sgemm speed.  When
OPENBLAS_CORETYPE is unset and that happens, --bench re-runs itself with OPENBLAS_CORETYPE=SkylakeX
(AVX-512 CPUs) or Haswell (AVX2) and says so on stderr; --keep-blas-core turns this off.  The
kernels used are reported in the JSON (``blas``, ``openblas_coretype``).

The machine is shared: ``other_load`` in the JSON is the number of cores that other processes kept
busy during the timed repetitions (from /proc/stat); above 0.2 a warning is printed and the
timings are pessimistic (bf16 through oneDNN suffers most).  Compare numbers only from quiet runs.

--bench prints one JSON object per (config, dtype) on stdout:
  {"impl": "torch-eager", "config", "dtype", "threads", "median_s", "min_s", "flops",
   "gflops", "torch_version", "reps", "warmup", shape fields, "blas", "openblas_coretype",
   "other_load"}
and human-readable lines on stderr.  ``gflops`` = flops / median_s / 1e9.

FLOP count (analytic, see ``count_flops``; cross-checked at run time by counting every
``nn.Linear`` / ``nn.Conv3d`` call and every attention call during the warm-up):
  every linear layer (and the patch-embedding Conv3d, which is a linear on patches):
      2 * M * N * K      (M rows, K inputs, N outputs)
  every attention:
      4 * B * H * Lq * Lk * D   (Q K^T and P V; D = head dim; softmax/mask not counted)
Norms, activations, RoPE, softmax and other elementwise work are not counted.
"""

import argparse
import json
import math
import os
import statistics
import struct
import sys
import time

# Torch's OpenMP pool honours torch.set_num_threads, but a system OpenBLAS (pthreads build)
# keeps its own pool: pin it to the requested thread count before torch loads it.
def _early_threads():
    threads = 2
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
        elif a.startswith("--threads="):
            threads = int(a.split("=", 1)[1])
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


_early_threads()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# --------------------------------------------------------------------------------------------
# safetensors, parsed by hand (the safetensors package is not installed)
# --------------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def load_safetensors(path):
    """Read a .safetensors file: u64 LE header length, JSON header, raw LE data.

    BF16 tensors are widened to float32 exactly (bits << 16)."""
    assert sys.byteorder == "little", "this reader assumes a little-endian host"
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + hlen].decode("utf-8"))
    base = 8 + hlen
    buf = bytearray(blob)  # writable, so torch.frombuffer does not warn
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt, shape = info["dtype"], info["shape"]
        begin, end = info["data_offsets"]
        numel = 1
        for s in shape:
            numel *= s
        if numel == 0:
            out[name] = torch.zeros(shape, dtype=torch.float32 if dt == "BF16" else _ST_DTYPES[dt])
            continue
        if dt != "BF16" and dt not in _ST_DTYPES:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dt))
        itemsize = 2 if dt == "BF16" else torch.empty(0, dtype=_ST_DTYPES[dt]).element_size()
        if end - begin != numel * itemsize or base + end > len(blob):
            raise ValueError("%s: tensor %s: data_offsets do not match %s %s" % (path, name, dt, shape))
        if dt == "BF16":
            raw = torch.frombuffer(buf, dtype=torch.int16, count=numel, offset=base + begin)
            t = (raw.to(torch.int32) << 16).view(torch.float32)
        elif dt in _ST_DTYPES:
            t = torch.frombuffer(buf, dtype=_ST_DTYPES[dt], count=numel, offset=base + begin).clone()
        else:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dt))
        out[name] = t.reshape(shape)
    return out


def load_diffusers_weights(model_dir):
    """Weights of a diffusers model folder: sharded (index json) or one file."""
    index = os.path.join(model_dir, "diffusion_pytorch_model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        sd = {}
        for shard in sorted(set(weight_map.values())):
            sd.update(load_safetensors(os.path.join(model_dir, shard)))
        missing = set(weight_map) - set(sd)
        assert not missing, "tensors named in the index but absent: %s" % sorted(missing)[:5]
        return sd
    return load_safetensors(os.path.join(model_dir, "diffusion_pytorch_model.safetensors"))


# --------------------------------------------------------------------------------------------
# FLOP counting hooks (only used for the cross-check run)
# --------------------------------------------------------------------------------------------

class _FlopCounter:
    active = False
    linear = 0
    attention = 0


def _count_linear_hook(module, inputs, output):
    if _FlopCounter.active:
        if isinstance(module, nn.Linear):
            m = inputs[0].numel() // module.in_features
            _FlopCounter.linear += 2 * m * module.in_features * module.out_features
        elif isinstance(module, nn.Conv3d):
            m = output.numel() // module.out_channels
            k = module.in_channels * module.kernel_size[0] * module.kernel_size[1] * module.kernel_size[2]
            _FlopCounter.linear += 2 * m * k * module.out_channels


# --------------------------------------------------------------------------------------------
# building blocks (names follow diffusers)
# --------------------------------------------------------------------------------------------

def attention(q, k, v, bias=None):
    """softmax(q k^T / sqrt(d) + bias) v.  q: [B,H,Lq,D], k/v: [B,H,Lk,D], bias broadcastable
    to [B,H,Lq,Lk] (0 = keep, -inf = masked)."""
    if _FlopCounter.active:
        b, h, lq, d = q.shape
        _FlopCounter.attention += 4 * b * h * lq * k.shape[2] * d
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q, k.transpose(-1, -2))  # [B,H,Lq,Lk]
    scores.mul_(scale)
    if bias is not None:
        scores.add_(bias)
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, v)  # [B,H,Lq,D]


def mask_to_bias(mask, dtype):
    """bool mask (True = attend) -> additive bias (0 / -inf)."""
    bias = torch.zeros(mask.shape, dtype=dtype)
    return bias.masked_fill_(~mask, float("-inf"))


def timestep_proj(t, dim=256, max_period=10000.0):
    """diffusers Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0): [cos, sin]."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)


def apply_rotary_emb(x, cos, sin):
    """Interleaved RoPE (diffusers use_real=True, unbind_dim=-1). x: [B,H,N,D], cos/sin: [N,D]."""
    x_real, x_imag = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    x_rot = torch.stack([-x_imag, x_real], dim=-1).flatten(3)
    return (x.float() * cos + x_rot.float() * sin).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        input_dtype = x.dtype
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        else:
            x = x.to(input_dtype)
        return x * self.weight


class Attention(nn.Module):
    """The parts of diffusers' Attention used by HunyuanVideo (parameter names kept)."""

    def __init__(self, dim, heads, head_dim, qk_norm=False, added_kv=False, pre_only=False,
                 context_pre_only=None, eps=1e-6):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.norm_q = RMSNorm(head_dim, eps) if qk_norm else None
        self.norm_k = RMSNorm(head_dim, eps) if qk_norm else None
        if added_kv:
            self.add_q_proj = nn.Linear(dim, inner)
            self.add_k_proj = nn.Linear(dim, inner)
            self.add_v_proj = nn.Linear(dim, inner)
            self.norm_added_q = RMSNorm(head_dim, eps) if qk_norm else None
            self.norm_added_k = RMSNorm(head_dim, eps) if qk_norm else None
        else:
            self.add_q_proj = None
        if not pre_only:
            self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])
        if context_pre_only is not None and not context_pre_only:
            self.to_add_out = nn.Linear(inner, dim)

    def _heads(self, x):  # [B,L,H*D] -> [B,H,L,D]
        return x.unflatten(2, (self.heads, -1)).transpose(1, 2)

    def qkv(self, x):
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(x)), self._heads(self.to_v(x))
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        return q, k, v

    def added_qkv(self, c):
        q = self._heads(self.add_q_proj(c))
        k = self._heads(self.add_k_proj(c))
        v = self._heads(self.add_v_proj(c))
        if self.norm_added_q is not None:
            q, k = self.norm_added_q(q), self.norm_added_k(k)
        return q, k, v


class GELUProj(nn.Module):  # diffusers GELU(approximate="tanh"): proj then gelu
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return F.gelu(self.proj(x), approximate="tanh")


class LinearSiLU(nn.Module):  # diffusers LinearActivation(activation="silu")
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return F.silu(self.proj(x))


class FeedForward(nn.Module):  # net = [act(proj), Dropout, Linear]
    def __init__(self, dim, mult, act):
        super().__init__()
        inner = int(dim * mult)
        first = GELUProj(dim, inner) if act == "gelu-approximate" else LinearSiLU(dim, inner)
        self.net = nn.ModuleList([first, nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim, dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class PixArtAlphaTextProjection(nn.Module):
    def __init__(self, in_dim, dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class CombinedTimestepTextProjEmbeddings(nn.Module):
    def __init__(self, dim, pooled_dim):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(256, dim)
        self.text_embedder = PixArtAlphaTextProjection(pooled_dim, dim)

    def forward(self, timestep, pooled):
        t = self.timestep_embedder(timestep_proj(timestep).to(pooled.dtype))
        return t + self.text_embedder(pooled)


class CombinedTimestepGuidanceTextProjEmbeddings(nn.Module):
    def __init__(self, dim, pooled_dim):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(256, dim)
        self.guidance_embedder = TimestepEmbedding(256, dim)
        self.text_embedder = PixArtAlphaTextProjection(pooled_dim, dim)

    def forward(self, timestep, guidance, pooled):
        t = self.timestep_embedder(timestep_proj(timestep).to(pooled.dtype))
        g = self.guidance_embedder(timestep_proj(guidance).to(pooled.dtype))
        return (t + g) + self.text_embedder(pooled)


class AdaLayerNormZero(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear = nn.Linear(dim, 6 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x, emb):
        emb = self.linear(F.silu(emb))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = emb.chunk(6, dim=1)
        x = self.norm(x) * (1 + scale_msa[:, None]) + shift_msa[:, None]
        return x, gate_msa, shift_mlp, scale_mlp, gate_mlp


class AdaLayerNormZeroSingle(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear = nn.Linear(dim, 3 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x, emb):
        emb = self.linear(F.silu(emb))
        shift, scale, gate = emb.chunk(3, dim=1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None], gate


class AdaLayerNormContinuous(nn.Module):  # chunk order: scale, shift
    def __init__(self, dim, cond_dim):
        super().__init__()
        self.linear = nn.Linear(cond_dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x, cond):
        emb = self.linear(F.silu(cond).to(x.dtype))
        scale, shift = emb.chunk(2, dim=1)
        return self.norm(x) * (1 + scale)[:, None, :] + shift[:, None, :]


# --------------------------------------------------------------------------------------------
# HunyuanVideo modules
# --------------------------------------------------------------------------------------------

class HunyuanVideoPatchEmbed(nn.Module):
    def __init__(self, patch, in_ch, dim):
        super().__init__()
        self.proj = nn.Conv3d(in_ch, dim, kernel_size=patch, stride=patch)

    def forward(self, x):  # [B,C,T,H,W] -> [B,N,D]
        return self.proj(x).flatten(2).transpose(1, 2)


class HunyuanVideoAdaNorm(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, temb):
        gate_msa, gate_mlp = self.linear(F.silu(temb)).chunk(2, dim=1)
        return gate_msa.unsqueeze(1), gate_mlp.unsqueeze(1)


class HunyuanVideoIndividualTokenRefinerBlock(nn.Module):
    def __init__(self, heads, head_dim, mlp_ratio=4.0):
        super().__init__()
        dim = heads * head_dim
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=True, eps=1e-6)
        self.attn = Attention(dim, heads, head_dim)  # plain attention: no QK norm, no RoPE
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=True, eps=1e-6)
        self.ff = FeedForward(dim, mlp_ratio, "linear-silu")
        self.norm_out = HunyuanVideoAdaNorm(dim, 2 * dim)

    def forward(self, x, temb, bias):
        q, k, v = self.attn.qkv(self.norm1(x))
        a = attention(q, k, v, bias).transpose(1, 2).flatten(2, 3)
        a = self.attn.to_out[0](a)
        gate_msa, gate_mlp = self.norm_out(temb)
        x = x + a * gate_msa
        return x + self.ff(self.norm2(x)) * gate_mlp


class HunyuanVideoIndividualTokenRefiner(nn.Module):
    def __init__(self, heads, head_dim, num_layers, mlp_ratio=4.0):
        super().__init__()
        self.refiner_blocks = nn.ModuleList(
            [HunyuanVideoIndividualTokenRefinerBlock(heads, head_dim, mlp_ratio) for _ in range(num_layers)]
        )

    def forward(self, x, temb, mask):
        bias = None
        if mask is not None:
            b, l = mask.shape
            m = mask.bool()
            m1 = m.view(b, 1, 1, l).repeat(1, 1, l, 1)  # [B,1,L,L]: key j valid
            sm = m1 & m1.transpose(2, 3)  # and query i valid
            sm[:, :, :, 0] = True  # column 0 forced on (no empty rows)
            bias = mask_to_bias(sm, x.dtype)
        for blk in self.refiner_blocks:
            x = blk(x, temb, bias)
        return x


class HunyuanVideoTokenRefiner(nn.Module):
    def __init__(self, in_ch, heads, head_dim, num_layers, mlp_ratio=4.0):
        super().__init__()
        dim = heads * head_dim
        self.time_text_embed = CombinedTimestepTextProjEmbeddings(dim, in_ch)
        self.proj_in = nn.Linear(in_ch, dim)
        self.token_refiner = HunyuanVideoIndividualTokenRefiner(heads, head_dim, num_layers, mlp_ratio)

    def forward(self, x, timestep, mask):
        if mask is None:
            pooled = x.mean(dim=1)
        else:
            mf = mask.float().unsqueeze(-1)
            pooled = ((x * mf).sum(dim=1) / mf.sum(dim=1)).to(x.dtype)
        temb = self.time_text_embed(timestep, pooled)
        return self.token_refiner(self.proj_in(x), temb, mask)


def rope_tables(rope_dims, sizes, theta):
    """(cos, sin) [T'*H'*W', sum(rope_dims)], axes (t,h,w), frequencies repeated twice."""
    grids = torch.meshgrid(*[torch.arange(0, s, dtype=torch.float32) for s in sizes], indexing="ij")
    cos, sin = [], []
    for i in range(3):
        d = rope_dims[i]
        freqs = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32)[: d // 2] / d))
        f = torch.outer(grids[i].reshape(-1), freqs)  # [N, d/2]
        cos.append(f.cos().repeat_interleave(2, dim=1).float())
        sin.append(f.sin().repeat_interleave(2, dim=1).float())
    return torch.cat(cos, dim=1), torch.cat(sin, dim=1)


class HunyuanVideoTransformerBlock(nn.Module):  # dual stream
    def __init__(self, heads, head_dim, mlp_ratio, qk_norm=True):
        super().__init__()
        dim = heads * head_dim
        self.norm1 = AdaLayerNormZero(dim)
        self.norm1_context = AdaLayerNormZero(dim)
        self.attn = Attention(dim, heads, head_dim, qk_norm=qk_norm, added_kv=True, context_pre_only=False)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, mlp_ratio, "gelu-approximate")
        self.norm2_context = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff_context = FeedForward(dim, mlp_ratio, "gelu-approximate")

    def forward(self, x, c, temb, bias, rope):
        n = x.shape[1]
        nx, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(x, temb)
        nc, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(c, temb)

        q, k, v = self.attn.qkv(nx)  # [B,H,N,hd]
        q, k = apply_rotary_emb(q, *rope), apply_rotary_emb(k, *rope)  # RoPE on latent only
        cq, ck, cv = self.attn.added_qkv(nc)  # [B,H,L,hd]
        o = attention(torch.cat([q, cq], 2), torch.cat([k, ck], 2), torch.cat([v, cv], 2), bias)
        o = o.transpose(1, 2).flatten(2, 3)  # [B,N+L,D]
        a = self.attn.to_out[0](o[:, :n])
        ca = self.attn.to_add_out(o[:, n:])

        x = x + a * gate_msa.unsqueeze(1)
        c = c + ca * c_gate_msa.unsqueeze(1)
        nx = self.norm2(x) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        nc = self.norm2_context(c) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
        x = x + gate_mlp.unsqueeze(1) * self.ff(nx)
        c = c + c_gate_mlp.unsqueeze(1) * self.ff_context(nc)
        return x, c


class HunyuanVideoSingleTransformerBlock(nn.Module):
    def __init__(self, heads, head_dim, mlp_ratio=4.0, qk_norm=True):
        super().__init__()
        dim = heads * head_dim
        mlp_dim = int(dim * mlp_ratio)
        self.attn = Attention(dim, heads, head_dim, qk_norm=qk_norm, pre_only=True)
        self.norm = AdaLayerNormZeroSingle(dim)
        self.proj_mlp = nn.Linear(dim, mlp_dim)
        self.proj_out = nn.Linear(dim + mlp_dim, dim)

    def forward(self, x, c, temb, bias, rope):
        n = x.shape[1]
        h = torch.cat([x, c], dim=1)  # [B,S,D]
        residual = h
        nh, gate = self.norm(h, temb)
        mlp = F.gelu(self.proj_mlp(nh), approximate="tanh")
        q, k, v = self.attn.qkv(nh)  # [B,H,S,hd]
        q = torch.cat([apply_rotary_emb(q[:, :, :n], *rope), q[:, :, n:]], dim=2)
        k = torch.cat([apply_rotary_emb(k[:, :, :n], *rope), k[:, :, n:]], dim=2)
        o = attention(q, k, v, bias).transpose(1, 2).flatten(2, 3)
        h = gate.unsqueeze(1) * self.proj_out(torch.cat([o, mlp], dim=2)) + residual
        return h[:, :n], h[:, n:]


DEFAULT_CONFIG = dict(
    in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128, num_layers=20,
    num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2, patch_size_t=1,
    qk_norm="rms_norm", guidance_embeds=True, text_embed_dim=4096, pooled_projection_dim=768,
    rope_theta=256.0, rope_axes_dim=(16, 56, 56),
)


class HunyuanVideoTransformer3DModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG)
        cfg.update({k: v for k, v in config.items() if not k.startswith("_")})
        self.config = cfg
        heads, hd = cfg["num_attention_heads"], cfg["attention_head_dim"]
        dim = heads * hd
        out_ch = cfg["out_channels"] or cfg["in_channels"]
        p, pt = cfg["patch_size"], cfg["patch_size_t"]
        assert cfg["qk_norm"] == "rms_norm", "only qk_norm='rms_norm' is implemented"
        assert sum(cfg["rope_axes_dim"]) == hd

        self.x_embedder = HunyuanVideoPatchEmbed((pt, p, p), cfg["in_channels"], dim)
        self.context_embedder = HunyuanVideoTokenRefiner(cfg["text_embed_dim"], heads, hd,
                                                         cfg["num_refiner_layers"])
        self.time_text_embed = CombinedTimestepGuidanceTextProjEmbeddings(dim, cfg["pooled_projection_dim"])
        self.transformer_blocks = nn.ModuleList(
            [HunyuanVideoTransformerBlock(heads, hd, cfg["mlp_ratio"]) for _ in range(cfg["num_layers"])]
        )
        self.single_transformer_blocks = nn.ModuleList(
            [HunyuanVideoSingleTransformerBlock(heads, hd, cfg["mlp_ratio"])
             for _ in range(cfg["num_single_layers"])]
        )
        self.norm_out = AdaLayerNormContinuous(dim, dim)
        self.proj_out = nn.Linear(dim, pt * p * p * out_ch)

    def forward(self, hidden_states, timestep, encoder_hidden_states, encoder_attention_mask,
                pooled_projections, guidance=None):
        cfg = self.config
        b, _, t, h, w = hidden_states.shape
        p, pt = cfg["patch_size"], cfg["patch_size_t"]
        tp, hp, wp = t // pt, h // p, w // p

        rope = rope_tables(cfg["rope_axes_dim"], (tp, hp, wp), cfg["rope_theta"])
        temb = self.time_text_embed(timestep, guidance, pooled_projections)
        x = self.x_embedder(hidden_states)  # [B,N,D]
        c = self.context_embedder(encoder_hidden_states, timestep, encoder_attention_mask)  # [B,L,D]

        # joint-sequence key mask from counts: first N + sum(mask[b]) keys valid
        n, l = x.shape[1], c.shape[1]
        valid = n + encoder_attention_mask.sum(dim=1, dtype=torch.int)  # [B]
        key_mask = torch.arange(n + l)[None, :] < valid[:, None]  # [B,S]
        bias = mask_to_bias(key_mask[:, None, None, :], x.dtype)  # [B,1,1,S]

        for blk in self.transformer_blocks:
            x, c = blk(x, c, temb, bias, rope)
        for blk in self.single_transformer_blocks:
            x, c = blk(x, c, temb, bias, rope)

        x = self.proj_out(self.norm_out(x, temb))  # [B,N,pt*p*p*Cout]
        x = x.reshape(b, tp, hp, wp, -1, pt, p, p).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)  # [B,Cout,T,H,W]


# --------------------------------------------------------------------------------------------
# analytic FLOP count
# --------------------------------------------------------------------------------------------

def count_flops(cfg, batch, n_latent, n_text):
    """2*M*N*K per linear (incl. patch-embed conv) + 4*B*H*Lq*Lk*D per attention."""
    B, N, L = batch, n_latent, n_text
    S = N + L
    H, hd = cfg["num_attention_heads"], cfg["attention_head_dim"]
    D = H * hd
    Fm = int(D * cfg["mlp_ratio"])
    Fr = int(D * 4.0)  # refiner MLP ratio is always 4
    T, P = cfg["text_embed_dim"], cfg["pooled_projection_dim"]
    p, pt = cfg["patch_size"], cfg["patch_size_t"]
    cout = cfg["out_channels"] or cfg["in_channels"]

    def lin(m, k, n):
        return 2 * m * k * n

    def attn(lq, lk):
        return 4 * B * H * lq * lk * hd

    f = lin(B * N, cfg["in_channels"] * pt * p * p, D)  # x_embedder
    f += 2 * (lin(B, 256, D) + lin(B, D, D)) + lin(B, P, D) + lin(B, D, D)  # time_text_embed
    f += lin(B, 256, D) + lin(B, D, D) + lin(B, T, D) + lin(B, D, D)  # refiner time_text_embed
    f += lin(B * L, T, D)  # proj_in
    f += cfg["num_refiner_layers"] * (
        4 * lin(B * L, D, D) + attn(L, L) + lin(B, D, 2 * D) + lin(B * L, D, Fr) + lin(B * L, Fr, D))
    f += cfg["num_layers"] * (
        2 * lin(B, D, 6 * D) + 4 * lin(B * N, D, D) + 4 * lin(B * L, D, D) + attn(S, S)
        + lin(B * N, D, Fm) + lin(B * N, Fm, D) + lin(B * L, D, Fm) + lin(B * L, Fm, D))
    f += cfg["num_single_layers"] * (
        lin(B, D, 3 * D) + 3 * lin(B * S, D, D) + lin(B * S, D, Fm) + attn(S, S) + lin(B * S, D + Fm, D))
    f += lin(B, D, 2 * D) + lin(B * N, D, pt * p * p * cout)  # norm_out, proj_out
    return f


# --------------------------------------------------------------------------------------------
# --check
# --------------------------------------------------------------------------------------------

def run_check(fixture_dir, tol):
    with open(os.path.join(fixture_dir, "model", "config.json")) as f:
        config = json.load(f)
    model = HunyuanVideoTransformer3DModel(config).eval()
    sd = load_diffusers_weights(os.path.join(fixture_dir, "model"))
    model.load_state_dict(sd, strict=True)
    inputs = load_safetensors(os.path.join(fixture_dir, "inputs.safetensors"))
    ref = load_safetensors(os.path.join(fixture_dir, "output.safetensors"))["sample"]

    hooks = [m.register_forward_hook(_count_linear_hook) for m in model.modules()
             if isinstance(m, (nn.Linear, nn.Conv3d))]
    _FlopCounter.active, _FlopCounter.linear, _FlopCounter.attention = True, 0, 0
    with torch.no_grad():
        out = model(**inputs)
    _FlopCounter.active = False
    for hk in hooks:
        hk.remove()

    hs = inputs["hidden_states"]
    p, pt = model.config["patch_size"], model.config["patch_size_t"]
    n = (hs.shape[2] // pt) * (hs.shape[3] // p) * (hs.shape[4] // p)
    analytic = count_flops(model.config, hs.shape[0], n, inputs["encoder_hidden_states"].shape[1])
    counted = _FlopCounter.linear + _FlopCounter.attention

    assert out.shape == ref.shape, (out.shape, ref.shape)
    err = (out - ref).abs().max().item()
    ok = err < tol and analytic == counted
    print("check %s: sample %s max|ref|=%.3f max abs err=%.3e (tol %.0e)  flops analytic=%d counted=%d  %s"
          % (fixture_dir, list(out.shape), ref.abs().max().item(), err, tol, analytic, counted,
             "OK" if ok else "FAIL"), file=sys.stderr)
    print(json.dumps({"impl": "torch-eager", "check": fixture_dir, "max_abs_err": err, "tol": tol,
                      "flops_analytic": analytic, "flops_counted": counted, "ok": ok}))
    return ok


# --------------------------------------------------------------------------------------------
# --bench
# --------------------------------------------------------------------------------------------

BENCH_CONFIGS = {
    # 512 wide (4 heads x 128), 2 dual + 4 single blocks, 4,096 video + 256 text tokens.
    # text_embed_dim 512 / pooled 768 keep the non-transformer part small.
    "medium": dict(
        config=dict(in_channels=16, out_channels=16, num_attention_heads=4, attention_head_dim=128,
                    num_layers=2, num_single_layers=4, num_refiner_layers=2, mlp_ratio=4.0,
                    patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
                    text_embed_dim=512, pooled_projection_dim=768, rope_theta=256.0,
                    rope_axes_dim=[16, 56, 56]),
        latent=(1, 16, 4, 64, 64),  # -> 4 x 32 x 32 = 4,096 tokens
        text_tokens=256,
    ),
    # the real model's width (3072 = 24 heads x 128), 1 dual + 1 single block, real text dims,
    # 1,024 video + 256 text tokens.
    "real_block": dict(
        config=dict(in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128,
                    num_layers=1, num_single_layers=1, num_refiner_layers=2, mlp_ratio=4.0,
                    patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
                    text_embed_dim=4096, pooled_projection_dim=768, rope_theta=256.0,
                    rope_axes_dim=[16, 56, 56]),
        latent=(1, 16, 4, 32, 32),  # -> 4 x 16 x 16 = 1,024 tokens
        text_tokens=256,
    ),
}


# OpenBLAS cores without AVX2 kernels: OpenBLAS picks one of these when it does not know the
# CPU model (0.3.21 on Intel Emerald Rapids, family 6 model 207, falls back to "Prescott", ~1/5
# of the AVX-512 sgemm speed).
_SLOW_OPENBLAS_CORES = {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai",
                        "coppermine", "northwood", "banias", "opteron", "opteron_sse3", "barcelona",
                        "bobcat", "nano", "generic"}


def blas_info():
    """(BLAS library torch's fp32 GEMM resolved to, OpenBLAS core name or None)."""
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # make sure BLAS is loaded
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return "unknown", None
    real = sorted({os.path.realpath(x) for x in libs})
    if not real:
        return "none", None
    core = None
    for path in real:
        try:
            import ctypes
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            core = lib.openblas_get_corename().decode()
            break
        except (OSError, AttributeError):
            continue
    names = [os.path.basename(x) for x in real if "lapack" not in os.path.basename(x)]
    main_lib = ([n for n in names if "openblas" in n] or names or [os.path.basename(real[0])])[0]
    return main_lib, core


def fix_openblas_core(args):
    """If OPENBLAS_CORETYPE is unset and OpenBLAS fell back to a pre-AVX2 core, re-run this
    script with the right core (SkylakeX with AVX-512, Haswell with AVX2), as a PyTorch user
    with a correctly set-up OpenBLAS would get.  --keep-blas-core disables this."""
    if args.keep_blas_core or os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("_TT_BLAS_FIXED"):
        return
    _, core = blas_info()
    if core is None or core.lower() not in _SLOW_OPENBLAS_CORES:
        return
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return
    target = "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else None
    if target is None:
        return
    print("NOTE: OpenBLAS did not recognise this CPU and chose its '%s' kernels; re-running with "
          "OPENBLAS_CORETYPE=%s (--keep-blas-core to keep '%s')" % (core, target, core), file=sys.stderr)
    sys.stderr.flush()
    env = dict(os.environ, OPENBLAS_CORETYPE=target, _TT_BLAS_FIXED=core)
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


class _NoDefaultInit:
    """Skip nn.Linear / nn.Conv3d default (kaiming) init while building a model that is
    re-initialised right after: it would take most of the build time of the 3072-wide model."""

    def __enter__(self):
        self.saved = (nn.Linear.reset_parameters, nn.Conv3d.reset_parameters)
        nn.Linear.reset_parameters = lambda self_: None
        nn.Conv3d.reset_parameters = lambda self_: None

    def __exit__(self, *exc):
        nn.Linear.reset_parameters, nn.Conv3d.reset_parameters = self.saved


def random_model(cfg, seed):
    """Random weights: every matrix and bias ~ N(0, 0.02^2), norm scales 1 (seeded)."""
    torch.manual_seed(seed)
    with _NoDefaultInit():
        model = HunyuanVideoTransformer3DModel(cfg).eval()
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if name.endswith(".weight") and (prm.dim() == 1):  # RMSNorm / LayerNorm scales
                prm.fill_(1.0)
            else:
                prm.normal_(0.0, 0.02)
    return model


def bench_inputs(spec, seed):
    g = torch.Generator().manual_seed(seed)
    cfg = spec["config"]
    b = spec["latent"][0]
    return dict(
        hidden_states=torch.randn(spec["latent"], generator=g),
        timestep=torch.full((b,), 900.0),
        encoder_hidden_states=torch.randn(b, spec["text_tokens"], cfg["text_embed_dim"], generator=g),
        encoder_attention_mask=torch.ones(b, spec["text_tokens"]),  # all tokens valid
        pooled_projections=torch.randn(b, cfg["pooled_projection_dim"], generator=g),
        guidance=torch.full((b,), 6000.0),
    )


def _cpu_jiffies():
    """(busy jiffies of the whole machine, jiffies used by this process)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)  # minus idle and iowait
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return busy, int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


def time_forward(model, inputs, warmup, reps, count=False):
    """Returns (times, counted_flops, other_load): other_load = cores kept busy by other
    processes during the timed repetitions (a check that the machine was quiet)."""
    times = []
    counted = None
    j0 = w0 = None
    with torch.inference_mode():
        for i in range(warmup + reps):
            if count and i == 0:
                hooks = [m.register_forward_hook(_count_linear_hook) for m in model.modules()
                         if isinstance(m, (nn.Linear, nn.Conv3d))]
                _FlopCounter.active, _FlopCounter.linear, _FlopCounter.attention = True, 0, 0
            if i == warmup:
                j0, w0 = _cpu_jiffies(), time.perf_counter()
            t0 = time.perf_counter()
            model(**inputs)
            dt = time.perf_counter() - t0
            if count and i == 0:
                _FlopCounter.active = False
                for hk in hooks:
                    hk.remove()
                counted = _FlopCounter.linear + _FlopCounter.attention
            if i >= warmup:
                times.append(dt)
    j1, w1 = _cpu_jiffies(), time.perf_counter()
    other = None
    if j0 is not None and j1 is not None:
        hz = os.sysconf("SC_CLK_TCK")
        other = max(0.0, ((j1[0] - j0[0]) - (j1[1] - j0[1])) / hz / (w1 - w0))
    return times, counted, other


def run_bench(args):
    fix_openblas_core(args)  # may re-exec this script
    torch.set_num_threads(args.threads)
    blas_lib, core = blas_info()
    blas = blas_lib + (" (%s kernels)" % core if core else "")
    env_note = {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ}
    if os.environ.get("_TT_BLAS_FIXED"):
        print("NOTE: OPENBLAS_CORETYPE=%s set by this script (OpenBLAS had chosen '%s')"
              % (os.environ.get("OPENBLAS_CORETYPE"), os.environ["_TT_BLAS_FIXED"]), file=sys.stderr)
    elif env_note:
        print("WARNING: %s set in the environment; it can slow OpenBLAS (torch fp32): the intended "
              "command is `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...`." % env_note, file=sys.stderr)
    if "openblas" not in blas.lower() and "mkl" not in blas.lower():
        print("WARNING: torch's fp32 GEMM uses %s (not OpenBLAS/MKL): fp32 numbers will be far "
              "from what a PyTorch user gets; `apt-get install libopenblas-dev`." % blas, file=sys.stderr)
    elif core and core.lower() in _SLOW_OPENBLAS_CORES:
        print("WARNING: OpenBLAS runs its '%s' kernels (no AVX2): fp32 numbers are pessimistic" % core,
              file=sys.stderr)
    print("torch %s, %d threads, BLAS %s, OPENBLAS_CORETYPE=%s" % (
        torch.__version__, torch.get_num_threads(), blas, os.environ.get("OPENBLAS_CORETYPE")), file=sys.stderr)

    for name in args.configs.split(","):
        spec = BENCH_CONFIGS[name]
        cfg = spec["config"]
        t0 = time.perf_counter()
        model = random_model(cfg, args.seed)
        inputs = bench_inputs(spec, args.seed + 1)
        mcfg = model.config
        b, _, t, h, w = spec["latent"]
        n = (t // mcfg["patch_size_t"]) * (h // mcfg["patch_size"]) * (w // mcfg["patch_size"])
        flops = count_flops(mcfg, b, n, spec["text_tokens"])
        nparams = sum(p_.numel() for p_ in model.parameters())
        print("[%s] D=%d (%dx%d), %d dual + %d single + %d refiner blocks, text_embed_dim %d, pooled %d, "
              "latent %s -> %d video tokens + %d text tokens, batch %d, %.1fM params, %.2f GFLOP/forward "
              "(built in %.1f s)"
              % (name, mcfg["num_attention_heads"] * mcfg["attention_head_dim"], mcfg["num_attention_heads"],
                 mcfg["attention_head_dim"], mcfg["num_layers"], mcfg["num_single_layers"],
                 mcfg["num_refiner_layers"], mcfg["text_embed_dim"], mcfg["pooled_projection_dim"],
                 list(spec["latent"]), n, spec["text_tokens"], b, nparams / 1e6, flops / 1e9,
                 time.perf_counter() - t0), file=sys.stderr)

        for dtype_name in args.dtypes.split(","):
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
            model = model.to(dtype)  # fp32 runs first; then the same weights are cast in place
            inp = {k: v.to(dtype) for k, v in inputs.items()}
            reps = args.reps
            times, counted, other = time_forward(model, inp, args.warmup, reps, count=True)
            if counted != flops:
                print("WARNING: counted FLOPs %d != analytic %d" % (counted, flops), file=sys.stderr)
            med, mn = statistics.median(times), min(times)
            rec = dict(impl="torch-eager", config=name, dtype=dtype_name, threads=torch.get_num_threads(),
                       median_s=round(med, 4), min_s=round(mn, 4), flops=flops,
                       gflops=round(flops / med / 1e9, 2), torch_version=torch.__version__,
                       reps=reps, warmup=args.warmup, batch=b, video_tokens=n,
                       text_tokens=spec["text_tokens"], width=mcfg["num_attention_heads"] * mcfg["attention_head_dim"],
                       dual_blocks=mcfg["num_layers"], single_blocks=mcfg["num_single_layers"],
                       refiner_blocks=mcfg["num_refiner_layers"], text_embed_dim=mcfg["text_embed_dim"],
                       pooled_projection_dim=mcfg["pooled_projection_dim"], blas=blas,
                       openblas_coretype=os.environ.get("OPENBLAS_CORETYPE"),
                       other_load=None if other is None else round(other, 2))
            if other is not None and other > 0.2:
                print("WARNING: other processes kept %.2f cores busy during the timed runs: "
                      "the machine was not quiet, timings are pessimistic" % other, file=sys.stderr)
            print("[%s %s] median %.3f s  min %.3f s  (%d reps: %s)  %.1f GFLOP/s"
                  % (name, dtype_name, med, mn, reps, ", ".join("%.3f" % x for x in times),
                     flops / med / 1e9), file=sys.stderr)
            print(json.dumps(rec), flush=True)
        del model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="append", metavar="FIXTURE_DIR",
                    help="compare the forward with FIXTURE_DIR/output.safetensors (repeatable)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs error allowed by --check")
    ap.add_argument("--bench", action="store_true", help="time the named configs")
    ap.add_argument("--configs", default="medium,real_block", help="comma list: %s" % ",".join(BENCH_CONFIGS))
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-blas-core", action="store_true",
                    help="do not correct OpenBLAS's choice of a pre-AVX2 core on an unknown CPU")
    args = ap.parse_args()
    if not args.check and not args.bench:
        ap.error("give --check FIXTURE_DIR and/or --bench")
    ok = True
    if args.check:
        torch.set_num_threads(args.threads)
        for d in args.check:
            ok = run_check(d, args.tol) and ok
    if args.bench:
        run_bench(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
