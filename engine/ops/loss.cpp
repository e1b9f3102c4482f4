// bce_with_logits: forward and backward (the gradient of the mean loss
// with respect to the logits; targets and weights take none).
#include "engine/autograd.h"
#include "engine/ops/loss.h"
#include "engine/ops/op_util.h"

namespace ich {

Tensor bce_with_logits(const Tensor& logits, const Tensor& target, const Tensor& pos_weight, const Tensor& weight) {
  ICH_CHECK(logits.shape() == target.shape(), "bce_with_logits: logits ", logits.str(), " and target ", target.str(),
            " differ in shape");
  ICH_CHECK(logits.numel() > 0, "bce_with_logits: empty batch");
  same_device_dtype("bce_with_logits", logits, {&target, &pos_weight, &weight});
  ICH_CHECK(!target.requires_grad() && !(pos_weight.defined() && pos_weight.requires_grad()) &&
                !(weight.defined() && weight.requires_grad()),
            "bce_with_logits: gradients for target, pos_weight or weight are not supported");
  const Tensor xc = logits.contiguous(), tc = target.contiguous();
  const Tensor pw = pos_weight.defined() ? pos_weight.contiguous() : Tensor();
  const Tensor cw = weight.defined() ? weight.contiguous() : Tensor();
  Tensor loss = empty_on(logits, {});
  ICH_DISPATCH(logits.device(), bce_with_logits_forward, xc, tc, pw, cw, loss);
  return record("bce_with_logits", loss, {logits},
                [xs = xc.detach(), tc, pw, cw](const Tensor& gloss, const NeedsGrad&) {
                  Tensor gx = empty_like(xs);
                  ICH_DISPATCH(xs.device(), bce_with_logits_backward, gloss.contiguous(), xs, tc, pw, cw, gx);
                  return std::vector<Tensor>{gx};
                });
}

}  // namespace ich
