// bf16 activations on the CPU (ops.h, kTakesBf16Activations): the op runs on f32 copies of its bf16
// activation arguments, and each bf16 output is rounded from the f32 result once, when it is stored back
// (a linear layer with bf16 weights under GemmPrecision::BF16 does that inside oneDNN, and gelu_tanh,
// layer_norm, modulate and gated_residual in their own kernels a row or block at a time, without the copies).
// That is where an accelerator's kernels round too (they read bf16, compute in f32, store bf16), so the CPU
// and the simulated device give the numbers of a bf16 run; being the reference, not the fast path, the
// copies (host memory, outside the activation budget, as the CPU backend's other scratch) cost what they
// cost.
#include "backends/cpu/cpu_backend.h"

namespace sr {

namespace {

// An activation argument as f32: the tensor itself when it is f32 (or absent), else a contiguous widened
// copy in host memory. `read`: the op reads it (an output it only writes is not widened first). store()
// rounds the f32 values back into the argument.
class AsF32 {
public:
    AsF32(const Tensor& t, bool read) : arg_(t) {
        if (!widened()) {
            f32_ = t;
            return;
        }
        SR_ASSERT(t.dtype() == DType::BF16, "activation {}: f32 or bf16", t.describe());
        f32_ = Tensor::empty(t.shape(), DType::F32, host_allocator(), "bf16 activation widened to f32");
        if (read) f32_.copy_from(t);
    }
    bool widened() const { return arg_.defined() && arg_.dtype() != DType::F32; }
    Tensor& get() { return f32_; }
    void store() {
        if (widened()) arg_.copy_from(f32_);
    }

private:
    Tensor arg_;  // a handle on the argument's storage
    Tensor f32_;
};

bool any_widened(std::initializer_list<const AsF32*> args) {
    for (const AsF32* a : args)
        if (a->widened()) return true;
    return false;
}

}  // namespace

bool CpuBackend::run_bf16(const OpCall& call) {
    return std::visit(
        [&](const auto& op) -> bool {
            using Op = std::decay_t<decltype(op)>;
            if constexpr (std::is_same_v<Op, LinearOp>) {
                // bf16 weights multiplied in bf16: oneDNN reads the bf16 x and stores the bf16 y itself, from
                // the f32 sum plus bias rounded once, the same numbers as the f32 copies below (exec, gemm.cpp).
                if (op.weight.dtype() == DType::BF16 && gemm_precision_ == GemmPrecision::BF16) return false;
                AsF32 x(op.x, true), y(op.y, false);
                if (!any_widened({&x, &y})) return false;
                exec(LinearOp{x.get(), op.weight, op.bias, y.get(), op.activation});
                y.store();
            } else if constexpr (std::is_same_v<Op, QuantLinearOp>) {
                AsF32 x(op.x, true), y(op.y, false);
                if (!any_widened({&x, &y})) return false;
                exec(QuantLinearOp{x.get(), op.weight, op.block, op.K, op.scale, op.bias, y.get()});
                y.store();
            } else if constexpr (std::is_same_v<Op, AttentionOp>) {
                const bool any_bf16 = op.q.dtype() != DType::F32 || op.k.dtype() != DType::F32 ||
                                      op.v.dtype() != DType::F32 || op.out.dtype() != DType::F32;
                // The flash kernel reads bf16 operands and rounds a bf16 out itself: no widened copies.
                if (any_bf16 && flash_attention(op)) return true;
                AsF32 q(op.q, true), k(op.k, true), v(op.v, true), out(op.out, false);
                if (!any_widened({&q, &k, &v, &out})) return false;
                exec(AttentionOp{q.get(), k.get(), v.get(), out.get(), op.mask, op.scale, op.qk});
                out.store();
            } else if constexpr (std::is_same_v<Op, AddOp>) {
                AsF32 x(op.x, true), y(op.y, true);
                if (!any_widened({&x, &y})) return false;
                exec(AddOp{x.get(), y.get()});
                x.store();
            } else if constexpr (std::is_same_v<Op, LayerNormOp> || std::is_same_v<Op, ModulateOp> ||
                                 std::is_same_v<Op, GatedResidualOp> || std::is_same_v<Op, GeluTanhOp>) {
                return false;  // their kernels read and write bf16 themselves (f32_rows.h, map_any_float)
            } else {
                // copy converts float dtypes itself; every other op takes f32 activations only.
                static_assert(!kTakesBf16Activations<Op> || std::is_same_v<Op, CopyOp>,
                              "an op that takes bf16 activations needs its case here");
                return false;
            }
            return true;
        },
        call);
}

}  // namespace sr
