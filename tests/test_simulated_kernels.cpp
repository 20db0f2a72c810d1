// The host/device boundary on the simulated device: its memory is tagged as a device of its own, host code
// that touches it outside a kernel aborts naming the tensor, its kernels refuse host tensors (except where the
// CUDA backend takes them too: token ids, either side of a copy), and to_device / to_host move data across
// (and cost nothing on the CPU backend).
#include <gtest/gtest.h>

#include "backends/cpu/cpu_backend.h"
#include "runtime/simulated_device.h"

using namespace sr;

namespace {

Tensor host_values(std::initializer_list<float> v) {
    return Tensor::from_vector(std::vector<float>(v), {int64_t(v.size())});
}

class SimulatedKernelsTest : public ::testing::Test {
protected:
    // The device runs a copy thread: death tests must re-execute the binary rather than fork it.
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
    SimulatedDevice dev{{.bandwidth_bytes_per_s = 0, .latency_s = 0}};
};

}  // namespace

TEST_F(SimulatedKernelsTest, DeviceMemoryIsTaggedAsTheDevice) {
    EXPECT_EQ(dev.memory().device().type, DeviceType::Simulated);
    EXPECT_EQ(dev.backend().device(), dev.memory().device());
    EXPECT_EQ(dev.memory().device().name(), "sim:0");
    const Tensor t = new_activation(dev.backend(), {3}, "x");
    EXPECT_EQ(t.device(), dev.memory().device());
}

TEST_F(SimulatedKernelsTest, UploadComputeDownloadRoundTrip) {
    Backend& be = dev.backend();
    Tensor x = to_device(be, host_values({1, 2, 3}), "x");
    const Tensor y = to_device(be, host_values({10, 20, 30}), "y");
    EXPECT_EQ(x.device(), be.device());
    be.add(x, y);
    const Tensor back = to_host(be, x);
    EXPECT_EQ(back.device(), Device::cpu());
    EXPECT_EQ(back.item_as_float(0), 11.0f);
    EXPECT_EQ(back.item_as_float(2), 33.0f);
    // A strided device view comes back packed, gathered on the device.
    Tensor m = to_device(be, Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}), "m");
    const Tensor col = to_host(be, m.slice(1, 1, 2));
    ASSERT_TRUE(col.is_contiguous());
    EXPECT_EQ(col.item_as_float(0), 2.0f);
    EXPECT_EQ(col.item_as_float(1), 5.0f);
    const Tensor packed = contiguous(be, m.permute({1, 0}), "transpose");
    EXPECT_EQ(packed.device(), be.device());
    EXPECT_EQ(to_host(be, packed).item_as_float(1), 4.0f);
}

TEST_F(SimulatedKernelsTest, OnTheCpuBackendTheBoundaryIsFree) {
    const Tensor x = host_values({1, 2});
    EXPECT_EQ(to_device(cpu_backend(), x, "x").raw_data(), x.raw_data());
    EXPECT_EQ(to_host(cpu_backend(), x).raw_data(), x.raw_data());
}

TEST_F(SimulatedKernelsTest, HostCodeTouchingDeviceMemoryAborts) {
    Tensor t = to_device(dev.backend(), host_values({1, 2}), "t");
    EXPECT_DEATH(t.data<float>()[0] = 5.0f, "host code touched f32\\[2\\] on sim:0 outside a kernel");
    EXPECT_DEATH((void)t.item_as_float(1), "outside a kernel");
    EXPECT_DEATH((void)t.clone(), "outside a kernel");
    EXPECT_DEATH(t.fill_zero(), "outside a kernel");
    {
        const DeviceCodeScope kernel;  // what the device's kernels run in
        EXPECT_EQ(t.data<float>()[1], 2.0f);
    }
}

TEST_F(SimulatedKernelsTest, KernelsRefuseHostTensors) {
    Backend& be = dev.backend();
    Tensor x = to_device(be, host_values({1, 2}), "x");
    const Tensor host = host_values({3, 4});
    EXPECT_DEATH(be.add(x, host), "add: y f32\\[2\\] is on cpu, not on the device sim:0");
    Tensor out = new_activation(be, {1, 2}, "out");
    const Tensor w = Tensor::from_vector({1, 0, 0, 1}, {2, 2});
    EXPECT_DEATH(be.linear(x.view({1, 2}), w, nullptr, out), "linear: weight");
    // Copies may cross (that is what to_device and to_host are), and token ids may come from the host.
    Tensor dst = new_activation(be, {2}, "dst");
    be.copy(host, dst);
    const Tensor table = to_device(be, Tensor::from_vector({0, 1, 2, 3, 4, 5}, {3, 2}), "table");
    Tensor ids = Tensor::empty({1, 2}, DType::I64);
    ids.data<int64_t>()[0] = 2;
    ids.data<int64_t>()[1] = 0;
    Tensor rows = new_activation(be, {1, 2, 2}, "rows");
    be.embedding(ids, table, rows);
    EXPECT_EQ(to_host(be, rows).item_as_float(0), 4.0f);
}
