// runtime.h: what the rest of the engine needs from the CUDA backend, in
// plain C++ (no CUDA headers), so that tensor.cpp, the apps and the tests
// compile the same with and without it. Defined in engine/cuda/*.cu; only
// present when the build has the CUDA backend (ICH_WITH_CUDA).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/allocator.h"
#include "engine/dtype.h"

namespace ich::cuda {

// Number of usable GPUs; 0 when there is no driver or no device (never throws).
int device_count();
// Copies bytes between any two of host and device memory, and waits.
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
// Device to device on one GPU, queued on its compute stream without waiting:
// ordered after the kernels that wrote src and before those that read dst.
void copy_device_async(void* dst, const void* src, size_t bytes, int device);
// dst[index] = src[index] for every index of `shape` (at most 6 dims), each
// side with its own strides (in elements of elem_size bytes), on one device,
// without the host waiting: layout changes such as NCHW <-> NHWC.
void copy_strided(void* dst, const std::vector<int64_t>& dst_strides, const void* src,
                  const std::vector<int64_t>& src_strides, const std::vector<int64_t>& shape, size_t elem_size,
                  Device dev);
// Converts n contiguous elements between float32, float64, bfloat16 and
// float16 on one device (round to nearest even, as engine/half.h).
void cast(void* dst, DType dst_type, const void* src, DType src_type, int64_t n, Device dev);
// Host bytes to device memory without the host waiting: through a pinned
// staging buffer, on a copy stream; work queued on the device's stream
// afterwards waits for the copy (engine/cuda/input.cu).
void upload_async(void* dst, const void* host, size_t bytes, Device dev);
// Sets n contiguous elements of a device buffer to value.
void fill(void* dst, Device dev, int64_t n, DType dtype, double value);
// TF32 tensor cores for float32 convolutions and GEMMs. Off by default, so
// that results compare with the CPU backend at 1e-5.
void set_allow_tf32(bool allow);
bool allow_tf32();
// Waits for all work queued on the device's stream.
void synchronize(int device = 0);
// The caching allocator of a device (bytes in use, peak, cache), and
// releasing its cached blocks to the driver.
Allocator& allocator(int device);
void empty_cache(int device = 0);
int64_t cached_bytes(int device = 0);
// How many times the allocator has called cudaMalloc: flat once warm.
int64_t device_malloc_count(int device = 0);
// CUDA Graphs (engine/graph.h, engine/cuda/graph.cu): capture the device's
// stream; end it into an instantiated graph (a cudaGraphExec_t); end a
// failed one; launch; destroy.
void graph_capture_begin(int device);
void* graph_capture_end(int device);
void graph_capture_abort(int device) noexcept;
void graph_launch(void* exec, int device);
void graph_destroy(void* exec) noexcept;

}  // namespace ich::cuda
