// input.cpp: normalising a batch that travelled as bytes (data/augment.h).
#include "engine/cpu/cpu_util.h"
#include "engine/kernels.h"

namespace ich::cpu {

void normalize_u8(const Tensor& x, Tensor& y) {
  const char* k = "normalize_u8";
  expect(x, k, "x", DType::UInt8);
  expect(y, k, "y", DType::Float32);
  ICH_CHECK(x.dim() == 4 && x.shape() == y.shape(), k, ": x ", x.str(), " and y ", y.str(), " must be (B,C,S,S) alike");
  const int64_t B = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const uint8_t* p = x.data<uint8_t>();
  float* q = y.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      const double mean = kImageNetMean[c % 3], sd = kImageNetStd[c % 3];
      const size_t off = size_t((b * C + c) * HW);
      for (int64_t i = 0; i < HW; ++i) q[off + size_t(i)] = float((p[off + size_t(i)] / 255.0 - mean) / sd);
    }
}

}  // namespace ich::cpu
