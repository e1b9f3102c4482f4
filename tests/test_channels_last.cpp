// Channels-last (N,H,W,C in memory) through a whole network on the CPU: the
// layout plumbing of the ops (engine/ops/op_util.h) that a GPU uses natively.
// An input converted once stays channels-last through every convolution,
// batch norm, ReLU, residual add and pool; the gradient of the input comes
// back channels-last; every number, forward and backward, equals the
// N,C,H,W run bit for bit (the CPU kernels compute N,C,H,W either way).
#include "engine/ops.h"
#include "layers/resnext.h"
#include "tests/test_util.h"

namespace ich {
namespace {

TEST(ChannelsLast, ResNeXtKeepsTheLayoutAndTheNumbers) {
  auto run = [](bool channels_last, std::vector<std::string>* layouts) {
    Generator gen(8);
    ResNeXt m(resnext_preset("resnext_mini", 6), gen);
    m.train();
    Tensor x = Tensor::randn({2, 3, 48, 48}, gen);
    if (channels_last) x = x.contiguous(MemoryFormat::ChannelsLast);
    x.set_requires_grad(true);
    Tensor logits;
    {
      ForwardObserverScope watch([&](Module& mod, const Tensor&, const Tensor& out) {
        if (layouts && out.dim() == 4 && out.size(1) > 1 && out.size(2) * out.size(3) > 1)
          layouts->push_back(mod.type_name() + (memory_format_of(out) == MemoryFormat::ChannelsLast ? " NHWC" : " NCHW"));
      });
      logits = m(x);
    }
    sum(mul(logits, logits)).backward();
    std::vector<double> out = logits.to_vector();
    for (const auto& [name, p] : m.named_parameters()) {
      const std::vector<double> g = p.grad().to_vector();
      out.insert(out.end(), g.begin(), g.end());
    }
    const std::vector<double> gx = x.grad().to_vector();
    out.insert(out.end(), gx.begin(), gx.end());
    for (const auto& [name, b] : m.named_buffers()) {  // running statistics
      const std::vector<double> v = b.to_vector();
      out.insert(out.end(), v.begin(), v.end());
    }
    return std::make_pair(out, x.grad());
  };
  std::vector<std::string> layouts;
  const auto [nchw, gx_nchw] = run(false, nullptr);
  const auto [nhwc, gx_nhwc] = run(true, &layouts);
  ASSERT_EQ(nchw.size(), nhwc.size());
  EXPECT_EQ(nchw, nhwc);
  ASSERT_GT(layouts.size(), 20u);
  for (const std::string& l : layouts) EXPECT_NE(l.find("NHWC"), std::string::npos) << l;
  EXPECT_EQ(memory_format_of(gx_nhwc), MemoryFormat::ChannelsLast);
  EXPECT_EQ(memory_format_of(gx_nchw), MemoryFormat::Contiguous);
}

// The fused bottleneck (batch norm + add + ReLU in one op) runs when nothing
// observes the modules; observed, every module runs on its own. Same numbers.
TEST(Fusion, FusedAndSeparateBottlenecksAgreeBitForBit) {
  auto run = [](bool observed) {
    Generator gen(12);
    ResNeXt m(resnext_preset("resnext_mini", 6), gen);
    m.train();
    const Tensor x = Tensor::randn({2, 3, 40, 40}, gen);
    int seen = 0;
    Tensor logits;
    if (observed) {
      ForwardObserverScope watch([&](Module&, const Tensor&, const Tensor&) { ++seen; });
      logits = m(x);
      EXPECT_GT(seen, 30);
    } else {
      logits = m(x);
    }
    sum(mul(logits, logits)).backward();
    std::vector<double> out = logits.to_vector();
    for (const auto& [name, p] : m.named_parameters())
      for (double v : p.grad().to_vector()) out.push_back(v);
    for (const auto& [name, b] : m.named_buffers())
      for (double v : b.to_vector()) out.push_back(v);
    return out;
  };
  EXPECT_EQ(run(true), run(false));
}

TEST(ChannelsLast, MixedLayoutsMeetSafely) {
  // A channels-last tensor added to an N,C,H,W one, and gradients joining
  // from both layouts, give the same numbers as all N,C,H,W.
  Generator gen(9);
  Tensor a = Tensor::randn({2, 4, 3, 5}, gen).set_requires_grad(true);
  Tensor b = Tensor::randn({2, 4, 3, 5}, gen).set_requires_grad(true);
  Tensor acl = a.detach().contiguous(MemoryFormat::ChannelsLast).set_requires_grad(true);
  const Tensor y1 = mul(relu(add(a, b)), add(b, a));
  const Tensor y2 = mul(relu(add(acl, b)), add(b, acl));
  EXPECT_EQ(memory_format_of(add(acl, b)), MemoryFormat::ChannelsLast);  // the first operand's layout
  EXPECT_EQ(memory_format_of(add(b, acl)), MemoryFormat::Contiguous);
  EXPECT_EQ(y1.to_vector(), y2.to_vector());
  sum(y1).backward();
  Tensor b1 = b.grad().clone();
  b.zero_grad();
  sum(y2).backward();
  EXPECT_EQ(a.grad().to_vector(), acl.grad().to_vector());
  EXPECT_EQ(b1.to_vector(), b.grad().to_vector());
}

}  // namespace
}  // namespace ich
