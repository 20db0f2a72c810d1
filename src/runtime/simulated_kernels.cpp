#include "runtime/simulated_kernels.h"

namespace sr {

void SimulatedKernels::run(const OpCall& op) {
    for_each_tensor_arg(op, [&](const OpTensorArg& a) {
        if (!a.tensor || !a.tensor->defined()) return;  // an absent optional argument
        const Device where = a.tensor->device();
        SR_ASSERT(where == device() || (a.host_ok && where.type == DeviceType::CPU),
                  "{}: {} {} is on {}, not on the device {}{}", op_name(op), a.name, a.tensor->describe(), where.name(),
                  device().name(), a.host_ok ? " or the host" : " (upload it with to_device())");
    });
    const DeviceCodeScope kernel;
    cpu_.run(op);
}

}  // namespace sr
