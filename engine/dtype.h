// dtype.h: the element types a tensor can hold.
//
// float32 is the training type; float64 is the CPU oracle used by gradient
// checks; bfloat16/float16 are for GPU mixed precision; uint8 holds windowed
// images; int64 holds indices. Ops check the dtypes they support and name
// the op when a dtype is not supported.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ich {

enum class DType : uint8_t { Float32 = 0, Float64 = 1, BFloat16 = 2, Float16 = 3, UInt8 = 4, Int64 = 5 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::BFloat16: return 2;
    case DType::Float16: return 2;
    case DType::UInt8: return 1;
    case DType::Int64: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
    case DType::UInt8: return "uint8";
    case DType::Int64: return "int64";
  }
  return "unknown";
}

inline bool is_16bit(DType t) { return t == DType::BFloat16 || t == DType::Float16; }
// The dtype of the per-channel parameters and statistics of batch norm next
// to activations of dtype x: float32 for 16-bit activations (as PyTorch),
// else x's own.
inline DType param_dtype(DType x) { return is_16bit(x) ? DType::Float32 : x; }

// The C++ type behind a dtype, for the templated CPU kernels.
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::UInt8; }
template <> constexpr DType dtype_of<int64_t>() { return DType::Int64; }
struct BFloat16;
struct Float16;
template <> constexpr DType dtype_of<BFloat16>() { return DType::BFloat16; }
template <> constexpr DType dtype_of<Float16>() { return DType::Float16; }

}  // namespace ich
