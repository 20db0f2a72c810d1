// CPU ops of the text encoders (Llama, CLIP): embedding gather, rotate-half RoPE, quick GELU, product.
#include "backends/cpu/cpu_backend.h"

namespace sr {

void CpuBackend::embedding(const Tensor&, const Tensor&, Tensor&) {
    throw VendorError("embedding: not implemented on the CPU backend yet");
}

void CpuBackend::rope_half(Tensor&, const Tensor&, const Tensor&) {
    throw VendorError("rope_half: not implemented on the CPU backend yet");
}

void CpuBackend::quick_gelu(const Tensor&, Tensor&) {
    throw VendorError("quick_gelu: not implemented on the CPU backend yet");
}

void CpuBackend::mul(Tensor&, const Tensor&) {
    throw VendorError("mul: not implemented on the CPU backend yet");
}

}  // namespace sr
