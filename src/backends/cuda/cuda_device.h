// CUDA device discovery (compiled only with SKYREELS_CUDA; see backends/cuda/cuda_device.cu).
//
//   #ifdef SKYREELS_HAVE_CUDA
//   int n = sr::cuda_device_count();   // 0 on a machine without a GPU or driver
//   #endif
#pragma once

#include <string>

namespace sr {

int cuda_device_count();
std::string cuda_device_name(int index);

}  // namespace sr
