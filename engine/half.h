// half.h: the two 16-bit float formats of mixed precision, on the host.
//
//   bfloat16: 1 sign, 8 exponent, 7 mantissa bits: float32's range, 3 decimal
//             digits. Converting is dropping the low 16 bits of a float32,
//             rounded to nearest, ties to even.
//   float16:  1 sign, 5 exponent, 10 mantissa bits: largest finite 65504,
//             smallest normal 2^-14, subnormals down to 2^-24. Values past
//             65504 (after rounding) become infinity, which is why float16
//             training needs loss scaling (engine/ops/amp.h).
//
// Both round to nearest even, bit for bit as PyTorch (and CUDA's
// __float2bfloat16_rn / __float2half_rn), and give NaN for NaN (its bits
// are no one convention: c10::BFloat16 makes 0x7fc0, PyTorch's vectorised
// CPU copy 0xffff); tests/test_mixed_precision.cpp holds them to PyTorch's
// results on edge cases and random values.
#pragma once
#include <cstdint>
#include <cstring>

namespace ich {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;  // NaN: PyTorch's canonical quiet NaN
  const uint32_t lsb = (u >> 16) & 1u;
  return uint16_t((u + 0x7fffu + lsb) >> 16);  // round to nearest, ties to even; overflow rounds to inf
}
inline float bf16_bits_to_float(uint16_t h) { return bits_float(uint32_t(h) << 16); }

inline uint16_t float_to_fp16_bits(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN: quiet, sign kept (as PyTorch)
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds past 65504: infinity
  if (a < 0x38800000u) {  // below 2^-14: a float16 subnormal (or zero), in units of 2^-24
    const uint32_t man = (a & 0x7fffffu) | 0x800000u;
    const int exp = int(a >> 23);  // float32 biased exponent
    const int shift = 126 - exp;   // the value is man * 2^(exp - 150); in units of 2^-24: man >> (126 - exp)
    if (a == 0 || shift > 24) return sign;  // below half of 2^-24: zero
    const uint32_t q = man >> shift, rem = man & ((1u << shift) - 1u), half = 1u << (shift - 1);
    return uint16_t(sign | (q + (rem > half || (rem == half && (q & 1u)))));
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits.
  const uint32_t r = a - 0x38000000u;  // exponent - 112
  const uint32_t q = r >> 13, rem = r & 0x1fffu;
  return uint16_t(sign | (q + (rem > 0x1000u || (rem == 0x1000u && (q & 1u)))));
}

inline float fp16_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man << 13));  // inf, NaN (payload kept)
  if (exp != 0) return bits_float(sign | ((exp + 112) << 23) | (man << 13));
  if (man == 0) return bits_float(sign);
  // Subnormal: normalise.
  int e = -1;
  uint32_t m = man;
  do {
    ++e;
    m <<= 1;
  } while ((m & 0x400u) == 0);
  return bits_float(sign | uint32_t(112 - e) << 23 | ((m & 0x3ffu) << 13));
}

// Element types for tensors of these dtypes (storage and conversion only: the
// CPU kernels compute in float32 and float64).
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  template <class T> explicit BFloat16(T v) : bits(float_to_bf16_bits(float(v))) {}
  explicit operator float() const { return bf16_bits_to_float(bits); }
  explicit operator double() const { return bf16_bits_to_float(bits); }
};
struct Float16 {
  uint16_t bits = 0;
  Float16() = default;
  template <class T> explicit Float16(T v) : bits(float_to_fp16_bits(float(v))) {}
  explicit operator float() const { return fp16_bits_to_float(bits); }
  explicit operator double() const { return fp16_bits_to_float(bits); }
};

}  // namespace ich
