// The whole pipeline on the GPU: the demo model (T2V, and I2V with VAE tiles small enough that the tiled
// encode and the temporally and spatially tiled decode all run) through CudaAccelerator in every offload mode
// and host memory mode, against the CPU run. Without a usable GPU every test skips with "no CUDA device".
//
// What holds it together on the CPU side: the simulated device runs the same code with host access to device
// memory forbidden (test_device_pipeline, test_simulated_kernels), so every transfer the GPU needs is there.
//
// Tolerances (to be confirmed by the first run on a GPU; see docs/ARCHITECTURE.md):
//  - f32 (--precision f32): every op matches the CPU within a few f32 roundings per accumulation
//    (test_cuda_ops); two denoising steps of the small random model, then the VAE, keep the latents within
//    1e-4 relative L2 of the CPU run and the frames within 1e-3 absolute (frames are ~[-1, 1]).
//  - bf16 (the default on CUDA): GEMM inputs rounded to bf16 (2^-9 relative each) over ~20 GEMMs per step:
//    the latents within 5e-2 relative L2.
//  - Between offload modes on the GPU the kernels and their order are the same, only where the weights came
//    from differs: bit-identical.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backends/cpu/cpu_backend.h"
#include "backends/cuda/cuda_backend.h"
#include "pipeline/demo_model.h"
#include "pipeline/device_run.h"
#include "runtime/cuda_accelerator.h"
#include "support/compare.h"
#include "support/memory_planning.h"

using namespace sr;

namespace {

#define SKIP_WITHOUT_CUDA()                                            \
    do {                                                               \
        const std::string why_ = cuda_unavailable_reason();            \
        if (!why_.empty()) GTEST_SKIP() << "no CUDA device: " << why_; \
    } while (0)

struct PipelineRun {
    Tensor latents;
    std::vector<Tensor> frames;
    DeviceRunReport report;
};

GenerationRequest demo_request(Task task) {
    GenerationRequest req;
    req.params = demo_params(task);
    req.params.height = req.params.width = 32;
    req.params.num_frames = 9;
    req.params.num_inference_steps = 2;
    req.params.seed = 5;
    req.prompt = "FPS-24, a lighthouse at dusk";
    VAETiling& t = req.params.vae_tiling;
    t.tile_sample_min_height = t.tile_sample_min_width = 16;
    t.tile_sample_stride_height = t.tile_sample_stride_width = 8;
    t.tile_sample_min_num_frames = 8;
    t.tile_sample_stride_num_frames = 4;
    if (task == Task::I2V) {
        req.image = Tensor::empty({3, 32, 32}, DType::F32);
        for (int64_t i = 0; i < req.image.numel(); ++i) req.image.data<float>()[i] = float(i % 17) / 8.0f - 1.0f;
    }
    return req;
}

PipelineRun run_cpu(const SkyReelsPipeline& pipe, const GenerationRequest& req) {
    PipelineRun r;
    cpu_backend().set_gemm_precision(GemmPrecision::F32);
    r.latents = pipe.generate(cpu_backend(), req, {},
                              [&](const Tensor& f, int64_t) { r.frames.push_back(f.contiguous().clone()); });
    return r;
}

PipelineRun run_cuda(const SkyReelsPipeline& pipe, const GenerationRequest& req, const MemoryOptions& o,
                     GemmPrecision p) {
    PipelineRun r;
    CudaAccelerator dev({.memory_budget = o.vram_budget});
    dev.cuda().set_gemm_precision(p);
    dev.cuda().set_attention_precision(p);
    r.latents = generate_on_device(
        pipe, dev, {.memory = o}, req, {},
        [&](const Tensor& f, int64_t) { r.frames.push_back(f.contiguous().clone()); }, {}, &r.report);
    EXPECT_EQ(dev.memory().in_use_bytes(), 0u) << "device memory left allocated after the run";
    if (o.vram_budget) {
        EXPECT_LE(dev.memory().peak_bytes(), o.vram_budget);
    }
    return r;
}

double relative_l2(const Tensor& a, const Tensor& b) {
    const Tensor x = a.contiguous(), y = b.contiguous();
    double num = 0, den = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
        const double d = double(x.data<float>()[i]) - double(y.data<float>()[i]);
        num += d * d;
        den += double(y.data<float>()[i]) * double(y.data<float>()[i]);
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

using test::bit_identical;

void expect_frames_near(const PipelineRun& got, const PipelineRun& want, double tol) {
    ASSERT_EQ(got.frames.size(), want.frames.size());
    for (size_t i = 0; i < want.frames.size(); ++i) {
        const test::Diff d = test::compare(got.frames[i], want.frames[i]);
        EXPECT_LE(d.max_abs, tol) << "frames chunk " << i << ": " << d.str();
    }
}

// The smallest budget the plan for the GPU accepts for `o` (its backend's scratch bound included).
size_t tight_budget(const SkyReelsPipeline& pipe, const GenerationRequest& req, const MemoryOptions& o) {
    CudaAccelerator probe;
    return test::tightest_budget(pipe, req, o, PlanTarget::of(probe));
}

}  // namespace

TEST(CudaPipeline, DemoInF32MatchesTheCpuRunInEveryOffloadAndHostMemoryMode) {
    SKIP_WITHOUT_CUDA();
    for (Task task : {Task::T2V, Task::I2V}) {
        SCOPED_TRACE(task == Task::I2V ? "i2v" : "t2v");
        const SkyReelsPipeline pipe =
            make_demo_pipeline(task, 7, {.heads = 4, .head_dim = 32, .dual_blocks = 2, .single_blocks = 2});
        const GenerationRequest req = demo_request(task);
        const PipelineRun cpu = run_cpu(pipe, req);
        const PipelineRun resident = run_cuda(pipe, req, {.offload = OffloadMode::None}, GemmPrecision::F32);
        EXPECT_LE(relative_l2(resident.latents, cpu.latents), 1e-4);
        expect_frames_near(resident, cpu, 1e-3);
        for (HostMemoryMode host : {HostMemoryMode::Pinned, HostMemoryMode::Pageable, HostMemoryMode::Mmap}) {
            SCOPED_TRACE(host_memory_mode_name(host));
            MemoryOptions o{.offload = OffloadMode::Block, .host_memory = host};
            o.vram_budget = tight_budget(pipe, req, o);
            const PipelineRun streamed = run_cuda(pipe, req, o, GemmPrecision::F32);
            EXPECT_GT(streamed.report.plan.streamed_blocks, 0);
            EXPECT_TRUE(bit_identical(streamed.latents, resident.latents));
            ASSERT_EQ(streamed.frames.size(), resident.frames.size());
            for (size_t i = 0; i < resident.frames.size(); ++i)
                EXPECT_TRUE(bit_identical(streamed.frames[i], resident.frames[i])) << "frames chunk " << i;
        }
        const PipelineRun model_offload = run_cuda(pipe, req, {.offload = OffloadMode::Model}, GemmPrecision::F32);
        EXPECT_TRUE(bit_identical(model_offload.latents, resident.latents));
    }
}

TEST(CudaPipeline, DemoInBf16StaysNearTheCpuRun) {
    SKIP_WITHOUT_CUDA();
    const SkyReelsPipeline pipe =
        make_demo_pipeline(Task::T2V, 7, {.heads = 2, .head_dim = 128, .dual_blocks = 2, .single_blocks = 2});
    const GenerationRequest req = demo_request(Task::T2V);
    const PipelineRun cpu = run_cpu(pipe, req);
    const PipelineRun gpu = run_cuda(pipe, req, {.offload = OffloadMode::None}, GemmPrecision::BF16);
    EXPECT_LE(relative_l2(gpu.latents, cpu.latents), 5e-2);
}
