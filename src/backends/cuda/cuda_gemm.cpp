// GEMMs on the CUDA backend through cuBLASLt: linear layers and the patch embedding (an im2col plus a GEMM).
//
// Row-major y[M,N] = x[M,K] w[N,K]^T is, in cuBLASLt's column-major terms, D[N,M] = W^T X with W the weight
// stored K x N (ld K) and transposed by the operation, X the activations stored K x M (ld K): the "TN"
// layout, which every cuBLASLt kernel family supports (and FP8 requires). The bias is the BIAS epilogue
// (a vector over D's rows, i.e. over N), fused into the GEMM. References: the cuBLAS documentation,
// "cuBLASLt API" (cublasLtMatmul, cublasLtMatmulAlgoGetHeuristic, cublasLtMatmulDescAttributes_t).
//
// Compute type CUBLAS_COMPUTE_32F everywhere: with f32 operands it is true f32 (no TF32 unless a
// _FAST_TF32 compute type is asked for), matching the CPU to the op tests' f32 tolerance; with bf16 operands
// it accumulates in f32 on the tensor cores.
#include "backends/cuda/cuda_gemm.h"
#include "backends/op_checks.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/kernels.h"

namespace sr {

namespace {

// Scratch for widened weights or bf16 activations: chunks of at most 64 MiB, in row counts that are multiples
// of 64 so every chunk's pointers keep 256-byte alignment.
constexpr int64_t kScratchBytes = int64_t(CudaBackend::kGemmScratchBytes);

cudaDataType_t cuda_type(DType t) {
    return t == DType::F32 ? CUDA_R_32F : CUDA_R_16BF;
}

int64_t chunk_rows(int64_t total, int64_t bytes_per_row) {
    return scratch_chunk_rows(total, bytes_per_row, kScratchBytes);
}

cuda::KType ktype(DType t) {
    return static_cast<cuda::KType>(static_cast<int>(t));
}

// bf16 activations (ops.h, kTakesBf16Activations) in a GEMM: f(x rows, y rows) over row blocks of x [M, K] and
// y [M, N], with f32 stand-ins for whichever is bf16: x widened into scratch (exactly; unless keep_x: f reads
// the bf16 rows as the GEMM's bf16 operand), y computed into f32 scratch and rounded into y once, as cuBLASLt
// rounds a bf16 output from its f32 accumulator (the bias added in f32 first). The scratch is at most
// kScratchBytes.
template <class F>
void by_f32_rows(CudaBackend& be, const Tensor& x, Tensor& y, int64_t M, int64_t K, int64_t N, bool keep_x, F&& f) {
    const bool wx = x.dtype() != DType::F32 && !keep_x, wy = y.dtype() != DType::F32;
    const int64_t per_row = (wx ? K * 4 : 0) + (wy ? N * 4 : 0);
    const int64_t mc = per_row ? chunk_rows(M, per_row) : M;
    const Tensor x2 = x.view({M, K});
    Tensor y2 = y.view({M, N});
    Tensor xs = wx ? Tensor::empty({mc, K}, DType::F32, be.allocator(), "linear input (f32)") : Tensor();
    Tensor ys = wy ? Tensor::empty({mc, N}, DType::F32, be.allocator(), "linear output (f32)") : Tensor();
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t rows = std::min(mc, M - m0);
        Tensor xc = x2.slice(0, m0, m0 + rows);
        if (wx) {
            Tensor d = xs.slice(0, 0, rows);
            be.copy(xc, d);
            xc = d;
        }
        Tensor yc = wy ? ys.slice(0, 0, rows) : y2.slice(0, m0, m0 + rows);
        f(xc, yc);
        if (wy) {
            Tensor d = y2.slice(0, m0, m0 + rows);
            be.copy(yc, d);
        }
    }
}

}  // namespace

CudaBackend::Gemm::Gemm(CudaBackend& be) : backend(be) {
    SR_CUBLAS_CHECK(cublasLtCreate(&handle));
}

CudaBackend::Gemm::~Gemm() {
    for (auto& [key, p] : plans) {
        cublasLtMatrixLayoutDestroy(p.a);
        cublasLtMatrixLayoutDestroy(p.b);
        cublasLtMatrixLayoutDestroy(p.d);
        cublasLtMatmulDescDestroy(p.op);
    }
    cublasLtDestroy(handle);
}

CudaBackend::Gemm::Plan* CudaBackend::Gemm::plan(const Key& key, const float* bias) {
    if (auto it = plans.find(key); it != plans.end()) return &it->second;
    if (unsupported.count(key)) return nullptr;
    const GemmShape& sh = key.shape;
    const int64_t M = sh.M, N = sh.N, K = sh.K;
    const cudaDataType_t ab_type = cuda_type(DType(sh.ab_type)), y_type = cuda_type(DType(sh.y_type));
    Plan p;
    auto destroy = [&p] {
        if (p.a) cublasLtMatrixLayoutDestroy(p.a);
        if (p.b) cublasLtMatrixLayoutDestroy(p.b);
        if (p.d) cublasLtMatrixLayoutDestroy(p.d);
        if (p.op) cublasLtMatmulDescDestroy(p.op);
    };
    cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulPreference_t pref = nullptr;
    try {
        SR_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        SR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
        SR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
        if (key.bias) {
            const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
            SR_CUBLAS_CHECK(
                cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
            // The heuristic takes the bias vector's alignment from this pointer: the real one, never null.
            SR_CUBLAS_CHECK(
                cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
        }
        SR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, ab_type, uint64_t(K), uint64_t(N), K));  // weights
        SR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, ab_type, uint64_t(K), uint64_t(M), K));  // activations
        SR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, y_type, uint64_t(N), uint64_t(M), sh.ldy));
        SR_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    } catch (...) {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        destroy();
        throw;
    }
    const uint64_t ws = kWorkspaceBytes;
    const uint32_t al_a = uint32_t(key.align_w), al_b = uint32_t(key.align_x), al_d = uint32_t(key.align_y);
    cublasLtMatmulHeuristicResult_t result{};
    int n_results = 0;
    status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    if (status == CUBLAS_STATUS_SUCCESS)
        status =
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a));
    if (status == CUBLAS_STATUS_SUCCESS)
        status =
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b));
    if (status == CUBLAS_STATUS_SUCCESS)
        status =
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof(al_d));
    if (status == CUBLAS_STATUS_SUCCESS)
        status =
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d));
    if (status == CUBLAS_STATUS_SUCCESS)
        status = cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.d, p.d, pref, 1, &result, &n_results);
    cublasLtMatmulPreferenceDestroy(pref);
    // Any failure of the query (NOT_SUPPORTED for operands no kernel takes, e.g. bf16 rows that are not 16-byte
    // aligned; INVALID_VALUE for an attribute this cuBLASLt version rejects; a per-result error) means "no plan":
    // the caller falls back to f32 arithmetic or names the shape, instead of failing inside the heuristic.
    if (status == CUBLAS_STATUS_SUCCESS && n_results > 0 && result.state != CUBLAS_STATUS_SUCCESS)
        status = result.state;
    if (status != CUBLAS_STATUS_SUCCESS || n_results == 0) {
        destroy();
        unsupported[key] = int(status);
        return nullptr;
    }
    p.algo = result.algo;
    p.workspace = std::min<size_t>(result.workspaceSize, kWorkspaceBytes);
    return &plans.emplace(key, p).first->second;
}

void CudaBackend::matmul(int64_t M, int64_t N, int64_t K, const void* x, const void* w, DType ab_type, void* y,
                         DType y_type, int64_t ldy, const float* bias) {
    if (try_matmul(M, N, K, x, w, ab_type, y, y_type, ldy, bias)) return;
    const Gemm::Key key = gemm_plan_key({M, N, K, ldy, int(ab_type), int(y_type)}, x, w, y, bias);
    int status = 0;
    {
        std::lock_guard<std::mutex> lock(gemm_->mutex);
        if (auto it = gemm_->unsupported.find(key); it != gemm_->unsupported.end()) status = it->second;
    }
    throw VendorError(
        fmt::format("cuBLASLt has no algorithm for y[{},{}] = x[{},{}] w[{},{}]^T ({} operands, "
                    "alignment x {} w {} y {} bias {}): heuristic status {}",
                    M, N, M, K, N, K, dtype_name(ab_type), key.align_x, key.align_w, key.align_y, key.align_bias,
                    cublasLtGetStatusName(cublasStatus_t(status))));
}

bool CudaBackend::try_matmul(int64_t M, int64_t N, int64_t K, const void* x, const void* w, DType ab_type, void* y,
                             DType y_type, int64_t ldy, const float* bias) {
    SR_ASSERT((ab_type == DType::F32 || ab_type == DType::BF16) && (y_type == DType::F32 || y_type == DType::BF16),
              "matmul types {} -> {}", dtype_name(ab_type), dtype_name(y_type));
    // cuBLASLt's bias type follows D's for non-FP8 GEMMs; our biases are f32, so they need an f32 D.
    SR_ASSERT(!bias || y_type == DType::F32, "matmul: a bias needs an f32 output");
    SR_ASSERT(M >= 0 && N >= 0 && K > 0 && ldy >= N, "matmul M={} N={} K={} ldy={}", M, N, K, ldy);
    if (M == 0 || N == 0) return true;
    make_current();
    Gemm& g = *gemm_;
    std::lock_guard<std::mutex> lock(g.mutex);  // the plan's bias pointer is set per call
    const Gemm::Key key = gemm_plan_key({M, N, K, ldy, int(ab_type), int(y_type)}, x, w, y, bias);
    Gemm::Plan* p = g.plan(key, bias);
    if (!p) return false;
    if (bias)
        SR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    // Per-call workspace inside the budget (released when this returns; stream-ordered reuse makes the next
    // GEMM's request a cache hit), sized for the chosen algorithm: often nothing at all.
    Tensor workspace =
        p->workspace ? Tensor::empty({int64_t(p->workspace)}, DType::Bool, memory_, "cuBLASLt workspace") : Tensor();
    const float alpha = 1.0f, beta = 0.0f;
    SR_CUBLAS_CHECK(cublasLtMatmul(g.handle, p->op, &alpha, w, p->a, x, p->b, &beta, y, p->d, y, p->d, &p->algo,
                                   workspace.defined() ? workspace.raw_data() : nullptr, p->workspace, stream_));
    return true;
}

void CudaBackend::exec(const LinearOp& op) {
    const auto& [x, weight, bias, y, activation] = op;
    check_here(x, "linear input");
    check_here(weight, "linear weight");
    check_here(y, "linear output");
    const LinearShape s = check_linear(x, weight, bias, y);
    const int64_t M = s.M, N = s.N, K = s.K;
    if (M == 0 || N == 0) return;
    const bool strided = !y.is_contiguous();
    if (activation != Activation::None || strided) {
        // No cuBLASLt epilogue or strided store yet: the plain product into contiguous rows, the activation
        // kernel on them, then the rows copied to y's stride (ops.h's contract, in three launches).
        // The temporary is y's size: the model's strided outputs are MLP row blocks (kMlpChunkBytes, 64 MiB),
        // within the workspace bound (kWorkspaceBytes).
        Tensor out = strided ? Tensor::empty(y.shape(), y.dtype(), memory_, "linear output (rows)") : y;
        exec(LinearOp{x, weight, bias, out});
        if (activation == Activation::GeluTanh) exec(GeluTanhOp{out, out});
        if (strided) copy(out, y);
        return;
    }
    if (x.dtype() != DType::F32 || y.dtype() != DType::F32) {
        // bf16 activations: bf16 x rows are the bf16 GEMM's operand as they are; otherwise the f32 op on
        // widened rows (by_f32_rows).
        const bool direct = x.dtype() == DType::BF16 && weight.dtype() == DType::BF16 &&
                            gemm_precision_ == GemmPrecision::BF16 && K > 0;
        const Tensor b32 = bias && direct ? f32_vector(*bias, N, "linear bias (f32)") : Tensor();
        by_f32_rows(*this, x, y, M, K, N, direct, [&](const Tensor& xc, Tensor& yc) {
            if (direct && try_matmul(xc.dim(0), N, K, xc.raw_data(), weight.raw_data(), DType::BF16, yc.raw_data(),
                                     DType::F32, N, bias ? b32.data<float>() : nullptr))
                return;
            Tensor xw = xc;
            if (xc.dtype() != DType::F32) {  // no bf16 algorithm for this shape: the f32 op on the widened rows
                xw = Tensor::empty(xc.shape(), DType::F32, memory_, "linear input (f32)");
                copy(xc, xw);
            }
            exec(LinearOp{xw, weight, bias, yc});
        });
        return;
    }
    const Tensor b32 = bias ? f32_vector(*bias, N, "linear bias (f32)") : Tensor();
    const float* bp = bias ? b32.data<float>() : nullptr;
    float* yd = y.data<float>();
    const float* xd = x.data<float>();
    if (K == 0) {
        make_current();
        cuda::fill_rows(yd, M, N, bp, stream_);
        SR_CUDA_CHECK_LAUNCH();
        return;
    }

    if (weight.dtype() == DType::BF16 && gemm_precision_ == GemmPrecision::BF16) {
        // Activations rounded to bf16 (as the CPU's BF16 path), a block of rows at a time.
        const int64_t mc = chunk_rows(M, K * 2);
        Tensor xb = Tensor::empty({mc, K}, DType::BF16, memory_, "linear input (bf16)");
        for (int64_t m0 = 0; m0 < M; m0 += mc) {
            const int64_t rows = std::min(mc, M - m0);
            make_current();
            cuda::convert(xd + m0 * K, cuda::KType::F32, xb.raw_data(), cuda::KType::BF16, rows * K, stream_);
            SR_CUDA_CHECK_LAUNCH();
            if (try_matmul(rows, N, K, xb.raw_data(), weight.raw_data(), DType::BF16, yd + m0 * N, DType::F32, N, bp))
                continue;
            // No bf16 algorithm for this shape (rows not 16-byte aligned): the same products in f32 arithmetic
            // (bf16 x bf16 products are exact in f32), from the bf16-rounded activations widened back, a block of
            // rows at a time so the scratch stays within kGemmScratchBytes per buffer. xb is no longer needed.
            xb = Tensor();
            const int64_t mr = chunk_rows(M - m0, K * 4);
            Tensor xr = Tensor::empty({mr, K}, DType::F32, memory_, "linear input (bf16-rounded)");
            Tensor xr16 = Tensor::empty({mr, K}, DType::BF16, memory_, "linear input (bf16)");
            for (int64_t r0 = m0; r0 < M; r0 += mr) {
                const int64_t n_rows = std::min(mr, M - r0);
                cuda::convert(xd + r0 * K, cuda::KType::F32, xr16.raw_data(), cuda::KType::BF16, n_rows * K, stream_);
                cuda::convert(xr16.raw_data(), cuda::KType::BF16, xr.data<float>(), cuda::KType::F32, n_rows * K,
                              stream_);
                SR_CUDA_CHECK_LAUNCH();
                linear_f32(xr.data<float>(), n_rows, weight, bp, yd + r0 * N);
            }
            break;
        }
    } else {
        linear_f32(xd, M, weight, bp, yd);
    }
}

void CudaBackend::linear_f32(const float* xd, int64_t M, const Tensor& weight, const float* bp, float* yd) {
    const int64_t N = weight.dim(0), K = weight.dim(1);
    if (weight.dtype() == DType::F32) {
        matmul(M, N, K, xd, weight.raw_data(), DType::F32, yd, DType::F32, N, bp);
        return;
    }
    // bf16/f16 weights: widen a block of weight rows (output columns) at a time.
    const int64_t nb = chunk_rows(N, K * 4);
    Tensor wf = Tensor::empty({nb, K}, DType::F32, memory_, "linear weights (f32)");
    const size_t es = dtype_size(weight.dtype());
    for (int64_t n0 = 0; n0 < N; n0 += nb) {
        const int64_t rows = std::min(nb, N - n0);
        make_current();
        cuda::convert(static_cast<const char*>(weight.raw_data()) + size_t(n0 * K) * es, ktype(weight.dtype()),
                      wf.raw_data(), cuda::KType::F32, rows * K, stream_);
        SR_CUDA_CHECK_LAUNCH();
        matmul(M, rows, K, xd, wf.raw_data(), DType::F32, yd + n0, DType::F32, N, bp ? bp + n0 : nullptr);
    }
}

// The block types' numbering, which the kernel switch in dequantize.cu follows.
static_assert(int(QuantType::Q8_0) == 0 && int(QuantType::Q5_1) == 4 && int(QuantType::Q3_K) == 5 &&
              int(QuantType::Q6_K) == 8);

void CudaBackend::exec(const QuantLinearOp& op) {
    for_each_tensor_arg(op, [&](const OpTensorArg& a) {
        if (a.tensor) check_here(*a.tensor, "quant_linear argument");
    });
    const LinearShape s = check_quant_linear(op);
    const int64_t M = s.M, N = s.N, K = s.K;
    if (M == 0 || N == 0) return;
    if (op.x.dtype() != DType::F32 || op.y.dtype() != DType::F32) {  // bf16 activations: by_f32_rows
        by_f32_rows(*this, op.x, op.y, M, K, N, false, [&](const Tensor& xc, Tensor& yc) {
            exec(QuantLinearOp{xc, op.weight, op.block, op.K, op.scale, op.bias, yc});
        });
        return;
    }
    const Tensor b32 = op.bias ? f32_vector(*op.bias, N, "quant_linear bias (f32)") : Tensor();
    const float* bp = op.bias ? b32.data<float>() : nullptr;
    const cuda::QuantizedRowsArgs w{op.weight.raw_data(),
                                    op.block ? int(*op.block) : -1,
                                    K,
                                    op.scale ? op.scale->raw_data() : nullptr,
                                    op.scale ? ktype(op.scale->dtype()) : cuda::KType::F32,
                                    op.scale ? op.scale->numel() : 0};
    // A block of weight rows dequantized at a time into the GEMM's input type: bf16 (activations rounded to
    // bf16, as the CPU's BF16 path) or f32. In bf16 the activations are rounded a block of rows at a time too,
    // so no scratch passes kGemmScratchBytes; the weights are then dequantized once per row block (a pass over
    // N x K elements, small next to the M x N x K GEMM it feeds).
    const bool bf16 = gemm_precision_ == GemmPrecision::BF16;
    const DType wt = bf16 ? DType::BF16 : DType::F32;
    const int64_t nb = chunk_rows(N, K * int64_t(dtype_size(wt)));
    const int64_t mc = bf16 ? chunk_rows(M, K * 2) : M;
    Tensor wd = Tensor::empty({nb, K}, wt, memory_, "quant_linear weights (dequantized)");
    Tensor xb = bf16 ? Tensor::empty({mc, K}, DType::BF16, memory_, "quant_linear input (bf16)") : Tensor();
    Tensor wf;  // the bf16 fallback's widened block, made when first needed
    float* yd = op.y.data<float>();
    const float* xd = op.x.data<float>();
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t m_rows = std::min(mc, M - m0);
        if (bf16) {
            make_current();
            cuda::convert(xd + m0 * K, cuda::KType::F32, xb.raw_data(), cuda::KType::BF16, m_rows * K, stream_);
            SR_CUDA_CHECK_LAUNCH();
        }
        for (int64_t n0 = 0; n0 < N; n0 += nb) {
            const int64_t rows = std::min(nb, N - n0);
            float* y_block = yd + m0 * N + n0;
            const float* b_block = bp ? bp + n0 : nullptr;
            make_current();
            cuda::dequantize_rows(w, n0, rows, wd.raw_data(), ktype(wt), stream_);
            SR_CUDA_CHECK_LAUNCH();
            if (!bf16) {
                matmul(m_rows, rows, K, xd + m0 * K, wd.raw_data(), DType::F32, y_block, DType::F32, N, b_block);
                continue;
            }
            if (try_matmul(m_rows, rows, K, xb.raw_data(), wd.raw_data(), DType::BF16, y_block, DType::F32, N, b_block))
                continue;
            // No bf16 algorithm for this shape: the block in f32 arithmetic (the dequantized weights widened
            // back, multiplied with the f32 activations).
            if (!wf.defined()) wf = Tensor::empty({nb, K}, DType::F32, memory_, "quant_linear weights (f32)");
            cuda::convert(wd.raw_data(), cuda::KType::BF16, wf.raw_data(), cuda::KType::F32, rows * K, stream_);
            SR_CUDA_CHECK_LAUNCH();
            matmul(m_rows, rows, K, xd + m0 * K, wf.raw_data(), DType::F32, y_block, DType::F32, N, b_block);
        }
    }
}

void CudaBackend::exec(const PatchEmbed3dOp& op) {
    const auto& [x, weight, bias, y] = op;
    check_here(x, "patch_embed_3d input");
    check_here(weight, "patch_embed_3d weight");
    check_here(y, "patch_embed_3d output");
    const PatchEmbedShape s = check_patch_embed_3d(x, weight, y);
    const int64_t B = s.B, C = s.C, F = s.F, H = s.H, W = s.W, D = s.D, pt = s.pt, ph = s.ph, pw = s.pw;
    const int64_t N = s.N, P = s.P;
    // im2col (one row per patch, columns in the weight's (c, t, h, w) order), then one GEMM.
    Tensor cols = Tensor::empty({B * N, P}, DType::F32, memory_, "patch columns");
    const int64_t x_stride[5] = {x.stride(0), x.stride(1), x.stride(2), x.stride(3), x.stride(4)};
    make_current();
    cuda::patchify(static_cast<const float*>(x.raw_data()), x_stride, B, C, F, H, W, pt, ph, pw, cols.data<float>(),
                   stream_);
    SR_CUDA_CHECK_LAUNCH();
    Tensor out2d = y.view({B * N, D});
    linear(cols, weight.view({D, P}), bias, out2d);
}

}  // namespace sr
