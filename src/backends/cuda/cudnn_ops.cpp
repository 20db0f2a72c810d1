// The CUDA backend's cuDNN paths (cudnn_plan.h has the rules, shapes and strides, tested on the CPU).
//
// Fused scaled-dot-product attention:
// one CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR per plan key (bf16 q, k, v, o in BHSD layout, the softmax
// scale passed by value), built through cuDNN's C backend API (the C++ frontend is not on our machines), the
// first engine configuration of heuristic A that finalizes kept as the plan, and run with a variant pack.
// Any failure while building a plan marks its key as failed (with the reason) and the caller falls back to the
// bf16 kernel; a failure while running one is an error (VendorError naming the call).
//
//
// 3-D convolution: cudnnConvolutionForward (the legacy API) on f32 NCDHW tensors with tensor-op math, the
// algorithm from cudnnGetConvolutionForwardAlgorithm_v7 (the best-ranked one whose workspace fits the scratch
// bound), cached per shape; the bias added with cudnnAddTensor. A shape cuDNN cannot run falls back to the
// implicit-GEMM kernel.
//
// Not yet run on a GPU: tests/test_cuda_ops.cpp (AttentionCudnnSdpa, Conv3dCudnn) checks both against the CPU
// on the first machine that has one.
#include <cuda_runtime.h>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_check.h"
#include "core/log.h"

#if SKYREELS_HAVE_CUDNN
#include <cudnn.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>
#endif

namespace sr {

#if SKYREELS_HAVE_CUDNN

namespace {

// cuDNN 9.13 introduced the single SDPA forward operation.
constexpr size_t kMinCudnnVersion = 91300;

const char* status_text(cudnnStatus_t s) {
    return cudnnGetErrorString(s);
}

// A backend descriptor that destroys itself.
class Desc {
public:
    explicit Desc(cudnnBackendDescriptorType_t type) { status_ = cudnnBackendCreateDescriptor(type, &d_); }
    Desc(Desc&& o) noexcept : d_(o.d_), status_(o.status_) { o.d_ = nullptr; }
    Desc& operator=(Desc&&) = delete;
    Desc(const Desc&) = delete;
    ~Desc() {
        if (d_) cudnnBackendDestroyDescriptor(d_);
    }
    cudnnBackendDescriptor_t get() const { return d_; }
    cudnnStatus_t status() const { return status_; }

private:
    cudnnBackendDescriptor_t d_ = nullptr;
    cudnnStatus_t status_;
};

// Collects the first failure of a descriptor-building sequence (and what was being done), so a plan that
// cannot be built says why.
struct Builder {
    std::string error;
    bool ok() const { return error.empty(); }
    void check(cudnnStatus_t s, const char* what) {
        if (ok() && s != CUDNN_STATUS_SUCCESS) error = fmt::format("{}: {}", what, status_text(s));
    }
    void set(const Desc& d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
             const void* value, const char* what) {
        if (ok()) check(cudnnBackendSetAttribute(d.get(), name, type, count, value), what);
    }
    void finalize(const Desc& d, const char* what) {
        if (ok()) check(d.status(), what);
        if (ok()) check(cudnnBackendFinalize(d.get()), what);
    }
};

enum : int64_t { kUidQ = 1, kUidK, kUidV, kUidO, kUidScale };

Desc tensor(Builder& b, int64_t uid, const SdpaTensorLayout& l, cudnnDataType_t type, bool by_value = false) {
    Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const int64_t alignment = 16;
    b.set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, "tensor data type");
    b.set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, l.dims.data(), "tensor dimensions");
    b.set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, l.strides.data(), "tensor strides");
    b.set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor id");
    b.set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment, "tensor alignment");
    if (by_value) {
        const bool yes = true;
        b.set(t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &yes, "tensor by value");
    }
    b.finalize(t, "tensor descriptor");
    return t;
}

}  // namespace

struct CudaBackend::Cudnn {
    std::mutex mutex;
    bool tried = false;
    std::string unusable;  // why cuDNN is not used ("" once a handle exists)
    cudnnHandle_t handle = nullptr;
    struct Plan {
        std::vector<Desc> keep;  // the descriptors the plan refers to
        cudnnBackendDescriptor_t plan = nullptr;
        int64_t workspace = 0;
    };
    std::map<SdpaPlanKey, Plan> sdpa;
    std::map<SdpaPlanKey, std::string> sdpa_failed;
    struct ConvPlan {
        cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
        cudnnFilterDescriptor_t w = nullptr;
        cudnnConvolutionDescriptor_t conv = nullptr;
        cudnnConvolutionFwdAlgo_t algo{};
        size_t workspace = 0;
        void destroy() {
            if (x) cudnnDestroyTensorDescriptor(x);
            if (y) cudnnDestroyTensorDescriptor(y);
            if (bias) cudnnDestroyTensorDescriptor(bias);
            if (w) cudnnDestroyFilterDescriptor(w);
            if (conv) cudnnDestroyConvolutionDescriptor(conv);
        }
    };
    std::map<CudnnConvDims, ConvPlan> conv;
    std::map<CudnnConvDims, std::string> conv_failed;

    ~Cudnn() {
        sdpa.clear();
        for (auto& [k, p] : conv) p.destroy();
        if (handle) cudnnDestroy(handle);
    }

    ConvPlan* conv_plan(const CudnnConvDims& d) {
        if (auto it = conv.find(d); it != conv.end()) return &it->second;
        if (conv_failed.count(d)) return nullptr;
        Builder b;
        ConvPlan p;
        b.check(cudnnCreateTensorDescriptor(&p.x), "x descriptor");
        b.check(cudnnCreateTensorDescriptor(&p.y), "y descriptor");
        b.check(cudnnCreateTensorDescriptor(&p.bias), "bias descriptor");
        b.check(cudnnCreateFilterDescriptor(&p.w), "filter descriptor");
        b.check(cudnnCreateConvolutionDescriptor(&p.conv), "convolution descriptor");
        if (b.ok())
            b.check(cudnnSetTensorNdDescriptor(p.x, CUDNN_DATA_FLOAT, 5, d.x_dims.data(), d.x_strides.data()), "x");
        if (b.ok())
            b.check(cudnnSetTensorNdDescriptor(p.y, CUDNN_DATA_FLOAT, 5, d.y_dims.data(), d.y_strides.data()), "y");
        const int b_dims[5] = {1, d.y_dims[1], 1, 1, 1}, b_strides[5] = {d.y_dims[1], 1, 1, 1, 1};
        if (b.ok()) b.check(cudnnSetTensorNdDescriptor(p.bias, CUDNN_DATA_FLOAT, 5, b_dims, b_strides), "bias");
        if (b.ok())
            b.check(cudnnSetFilterNdDescriptor(p.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 5, d.w_dims.data()), "filter");
        if (b.ok())
            b.check(cudnnSetConvolutionNdDescriptor(p.conv, 3, d.pad.data(), d.stride.data(), d.dilation.data(),
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                    "convolution");
        if (b.ok()) b.check(cudnnSetConvolutionMathType(p.conv, CUDNN_TENSOR_OP_MATH), "math type");
        // cuDNN's output shape must be the op's (the host rule computes the same formula).
        int out[5] = {};
        if (b.ok()) b.check(cudnnGetConvolutionNdForwardOutputDim(p.conv, p.x, p.w, 5, out), "output dims");
        if (b.ok() && !std::equal(out, out + 5, d.y_dims.begin())) b.error = "cuDNN's output shape differs";
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        int n = 0;
        if (b.ok())
            b.check(cudnnGetConvolutionForwardAlgorithm_v7(handle, p.x, p.w, p.conv, p.y,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf),
                    "algorithm heuristic");
        bool found = false;
        for (int i = 0; b.ok() && i < n && !found; ++i) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > kAttentionScratchBytes) continue;
            p.algo = perf[i].algo;
            p.workspace = perf[i].memory;
            b.check(cudnnSetConvolutionMathType(p.conv, perf[i].mathType), "algorithm math type");
            found = true;
        }
        if (b.ok() && !found) b.error = "no algorithm within the scratch bound";
        if (!b.ok()) {
            SR_LOG_WARN("cuDNN conv3d unavailable for [{} {} {} {} {}] (the kernel runs it): {}", d.x_dims[0],
                        d.x_dims[1], d.x_dims[2], d.x_dims[3], d.x_dims[4], b.error);
            p.destroy();
            conv_failed[d] = b.error;
            return nullptr;
        }
        return &conv.emplace(d, p).first->second;
    }

    // Builds the plan for `key`; nullptr (the reason in sdpa_failed) when cuDNN cannot run it.
    Plan* sdpa_plan(const SdpaPlanKey& key) {
        if (auto it = sdpa.find(key); it != sdpa.end()) return &it->second;
        if (sdpa_failed.count(key)) return nullptr;
        const SdpaShapes s = sdpa_shapes(key);
        Builder b;
        Plan p;
        p.keep.push_back(tensor(b, kUidQ, s.q, CUDNN_DATA_BFLOAT16));
        p.keep.push_back(tensor(b, kUidK, s.k, CUDNN_DATA_BFLOAT16));
        p.keep.push_back(tensor(b, kUidV, s.v, CUDNN_DATA_BFLOAT16));
        p.keep.push_back(tensor(b, kUidO, s.o, CUDNN_DATA_BFLOAT16));
        const SdpaTensorLayout scalar{{1, 1, 1, 1}, {1, 1, 1, 1}};
        p.keep.push_back(tensor(b, kUidScale, scalar, CUDNN_DATA_FLOAT, true));
        Desc op(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR);
        const cudnnBackendDescriptor_t q = p.keep[0].get(), k = p.keep[1].get(), v = p.keep[2].get(),
                                       o = p.keep[3].get(), scale = p.keep[4].get();
        b.set(op, CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &q, "SDPA q");
        b.set(op, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &k, "SDPA k");
        b.set(op, CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v, "SDPA v");
        b.set(op, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &o, "SDPA o");
        b.set(op, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &scale, "SDPA scale");
        b.finalize(op, "SDPA operation");
        Desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
        const cudnnBackendDescriptor_t op_d = op.get();
        b.set(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle, "graph handle");
        b.set(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op_d, "graph ops");
        b.finalize(graph, "operation graph");
        Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
        const cudnnBackendDescriptor_t graph_d = graph.get();
        const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
        b.set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph_d,
              "heuristic graph");
        b.set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristic mode");
        b.finalize(heur, "engine heuristic");
        // The ranked engine configurations: descriptors made first, filled by the query.
        constexpr int kConfigs = 8;
        std::vector<Desc> configs;
        std::vector<cudnnBackendDescriptor_t> config_d;
        for (int i = 0; i < kConfigs; ++i) {
            configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
            b.check(configs.back().status(), "engine config descriptor");
            config_d.push_back(configs.back().get());
        }
        int64_t n_configs = 0;
        if (b.ok())
            b.check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                             kConfigs, &n_configs, config_d.data()),
                    "engine heuristic results");
        std::string tried;
        for (int64_t i = 0; b.ok() && i < n_configs && !p.plan; ++i) {
            Desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
            Builder pb;
            pb.set(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle, "plan handle");
            pb.set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                   &config_d[size_t(i)], "plan engine config");
            pb.finalize(plan, "execution plan");
            int64_t ws = 0, n = 0;
            if (pb.ok())
                pb.check(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                                  CUDNN_TYPE_INT64, 1, &n, &ws),
                         "plan workspace size");
            // The workspace comes from the attention scratch bound; a plan that needs more is not used.
            if (pb.ok() && ws > int64_t(kAttentionScratchBytes)) pb.error = fmt::format("workspace of {} bytes", ws);
            if (!pb.ok()) {
                tried += fmt::format("{}[config {}: {}]", tried.empty() ? "" : " ", i, pb.error);
                continue;
            }
            p.plan = plan.get();
            p.workspace = ws;
            p.keep.push_back(std::move(plan));
        }
        if (b.ok() && !p.plan)
            b.error = n_configs == 0 ? std::string("no engine configuration") : "no configuration finalizes: " + tried;
        if (!b.ok()) {
            SR_LOG_WARN("cuDNN SDPA unavailable for {} heads x {} queries x {} keys x {}: {} (the bf16 kernel runs it)",
                        key.heads, key.lq, key.kv_len, key.head_dim, b.error);
            sdpa_failed[key] = b.error;
            return nullptr;
        }
        p.keep.push_back(std::move(op));
        p.keep.push_back(std::move(graph));
        p.keep.push_back(std::move(heur));
        for (Desc& c : configs) p.keep.push_back(std::move(c));
        return &sdpa.emplace(key, std::move(p)).first->second;
    }
};

bool CudaBackend::cudnn_usable() {
    Cudnn& c = *cudnn_;
    std::lock_guard<std::mutex> lock(c.mutex);
    if (!c.tried) {
        c.tried = true;
        const size_t version = cudnnGetVersion();
        if (version < kMinCudnnVersion) {
            c.unusable = fmt::format("cuDNN {} is older than 9.13 (no fused SDPA operation)", version);
        } else {
            make_current();
            const cudnnStatus_t s = cudnnCreate(&c.handle);
            if (s != CUDNN_STATUS_SUCCESS) {
                c.handle = nullptr;
                c.unusable = fmt::format("cudnnCreate: {}", status_text(s));
            }
        }
        if (!c.unusable.empty()) SR_LOG_INFO("cuDNN not used for attention: {}", c.unusable);
    }
    return c.unusable.empty();
}

bool CudaBackend::cudnn_sdpa(const SdpaPlanKey& key, const void* q, const void* k, const void* v, void* o,
                             float scale) {
    Cudnn& c = *cudnn_;
    std::lock_guard<std::mutex> lock(c.mutex);
    if (!c.handle) return false;
    Cudnn::Plan* p = c.sdpa_plan(key);
    if (!p) return false;
    make_current();
    if (const cudnnStatus_t s = cudnnSetStream(c.handle, stream_); s != CUDNN_STATUS_SUCCESS)
        throw VendorError(fmt::format("cudnnSetStream: {}", status_text(s)));
    Tensor workspace =
        p->workspace ? Tensor::empty({p->workspace}, DType::Bool, memory_, "cuDNN SDPA workspace") : Tensor();
    void* ws = workspace.defined() ? workspace.raw_data() : nullptr;
    const int64_t uids[] = {kUidQ, kUidK, kUidV, kUidO, kUidScale};
    void* pointers[] = {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), o, &scale};
    Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    Builder b;
    b.set(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 5, uids, "variant pack ids");
    b.set(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 5, pointers, "variant pack pointers");
    b.set(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws, "variant pack workspace");
    b.finalize(pack, "variant pack");
    if (b.ok()) b.check(cudnnBackendExecute(c.handle, p->plan, pack.get()), "cudnnBackendExecute (SDPA)");
    if (!b.ok()) throw VendorError("cuDNN SDPA: " + b.error);
    return true;
}

bool CudaBackend::cudnn_conv3d(const CudnnConvDims& d, const float* x, const float* w, const float* bias, float* y) {
    Cudnn& c = *cudnn_;
    std::lock_guard<std::mutex> lock(c.mutex);
    if (!c.handle) return false;
    Cudnn::ConvPlan* p = c.conv_plan(d);
    if (!p) return false;
    make_current();
    if (const cudnnStatus_t s = cudnnSetStream(c.handle, stream_); s != CUDNN_STATUS_SUCCESS)
        throw VendorError(fmt::format("cudnnSetStream: {}", status_text(s)));
    Tensor workspace = p->workspace
                           ? Tensor::empty({int64_t(p->workspace)}, DType::Bool, memory_, "cuDNN conv3d workspace")
                           : Tensor();
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t s =
        cudnnConvolutionForward(c.handle, &one, p->x, x, p->w, w, p->conv, p->algo,
                                workspace.defined() ? workspace.raw_data() : nullptr, p->workspace, &zero, p->y, y);
    if (s == CUDNN_STATUS_SUCCESS && bias) s = cudnnAddTensor(c.handle, &one, p->bias, bias, &one, p->y, y);
    if (s != CUDNN_STATUS_SUCCESS) throw VendorError(fmt::format("cudnnConvolutionForward: {}", status_text(s)));
    return true;
}

std::pair<size_t, size_t> CudaBackend::cudnn_plan_counts() {
    std::lock_guard<std::mutex> lock(cudnn_->mutex);
    return {cudnn_->sdpa.size(), cudnn_->sdpa_failed.size()};
}

std::string CudaBackend::cudnn_status() {
    if (!cudnn_usable()) return "cuDNN unusable: " + cudnn_->unusable;
    const auto [built, failed] = cudnn_plan_counts();
    return fmt::format("cuDNN {} (SDPA plans: {} built, {} failed)", cudnnGetVersion(), built, failed);
}

#else  // no cuDNN in this build

struct CudaBackend::Cudnn {};

bool CudaBackend::cudnn_usable() {
    return false;
}

bool CudaBackend::cudnn_sdpa(const SdpaPlanKey&, const void*, const void*, const void*, void*, float) {
    return false;
}

bool CudaBackend::cudnn_conv3d(const CudnnConvDims&, const float*, const float*, const float*, float*) {
    return false;
}

std::string CudaBackend::cudnn_status() {
    return "built without cuDNN";
}

std::pair<size_t, size_t> CudaBackend::cudnn_plan_counts() {
    return {0, 0};
}

#endif

void CudaBackend::CudnnDeleter::operator()(Cudnn* c) const {
    delete c;
}

std::unique_ptr<CudaBackend::Cudnn, CudaBackend::CudnnDeleter> CudaBackend::make_cudnn() {
    return std::unique_ptr<Cudnn, CudnnDeleter>(new Cudnn());
}

}  // namespace sr
