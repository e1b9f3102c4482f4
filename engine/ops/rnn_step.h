// rnn_step.h: the shapes the recurrent cell kernels agree on (their contract
// is in engine/kernel_decls.inc), checked once here for the CPU's
// (engine/cpu/rnn.cpp) and the GPU's (engine/cuda/rnn.cu); each kernel then
// checks that the tensors are on its device.
#pragma once
#include "engine/error.h"
#include "engine/tensor.h"

namespace ich {

struct RnnStepShape {
  int64_t B, H, DH;  // batch, hidden, output columns (directions x hidden)
};

// gx (T,B,gates*H), h (B,H), out (T,B,D*H) with columns col..col+H, step t,
// lengths int64 (B).
inline RnnStepShape rnn_step_shape(const char* k, const Tensor& gx, int64_t gates, const Tensor& h, const Tensor& out,
                                   const Tensor& lengths, int64_t t, int64_t col) {
  ICH_CHECK(gx.dim() == 3 && h.dim() == 2 && out.dim() == 3, k, ": expected gx (T,B,G*H), h (B,H), out (T,B,D*H)");
  const int64_t T = gx.size(0), B = gx.size(1), H = h.size(1);
  ICH_CHECK(gx.size(2) == gates * H && h.size(0) == B, k, ": gx ", gx.str(), " does not fit h ", h.str());
  ICH_CHECK(out.size(0) == T && out.size(1) == B && col >= 0 && col + H <= out.size(2), k, ": out ", out.str(),
            " has no columns ", col, "..", col + H);
  ICH_CHECK(t >= 0 && t < T, k, ": step ", t, " of ", T);
  ICH_CHECK(lengths.dtype() == DType::Int64 && lengths.numel() == B, k, ": lengths must be int64 (", B, "), got ",
            lengths.str());
  return {B, H, out.size(2)};
}

}  // namespace ich
