// Capturing a training step (engine/graph.h, train/graph_step.h) as far as
// the CPU can check it: the private pool and its memory plan, host reads
// refused inside a capture, Adam's step count kept on the device, and the
// captured step (emulated here: its host code runs again at each replay
// under the capture's rules) giving the eager step's numbers bit for bit,
// catching a NaN loss with nothing applied, and refusing what a graph cannot
// replay (float16's loss scaler included). The CUDA capture itself is tested
// in tests/test_cuda.cpp.
#include <cmath>
#include <cstring>
#include <filesystem>

#include "engine/ops/amp.h"
#include "engine/block_cache.h"
#include "engine/graph.h"
#include "engine/kernels.h"
#include "engine/ops/optim.h"
#include "layers/resnext.h"
#include "phantom/phantom.h"
#include "tests/phantom_fixture.h"
#include "tests/test_util.h"
#include "train/graph_step.h"
#include "train/trainer.h"
#include <fstream>
#include <iterator>

namespace ich {
namespace {

namespace fs = std::filesystem;

// The message of the ich::Error that f throws ("" if it throws none).
template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(BlockCache, ReusesFreedBlocksUpToTwiceTheSizeAndTracesRequests) {
  auto pool = make_private_pool(Device::cpu());
  auto& c = dynamic_cast<BlockCache&>(*pool);
  void* a = c.allocate(1000);  // 1024
  c.deallocate(a, 1000);
  EXPECT_EQ(c.allocate(600), a);  // 1024 again: the kept block
  void* big = c.allocate(4096);
  c.deallocate(big, 4096);
  EXPECT_NE(c.allocate(1000), big);  // 4096 is more than twice 1024: not wasted on it
  EXPECT_EQ(c.backing_calls(), 3);
  EXPECT_EQ(c.cached(), 4096);
  c.set_trace(true);
  c.deallocate(c.allocate(1), 1);
  c.allocate(513);
  EXPECT_EQ(c.trace(), (std::vector<size_t>{512, 1024}));
  c.set_trace(true);  // restarting clears
  EXPECT_TRUE(c.trace().empty());
}

TEST(BlockCache, TrimOnMissGivesBackKeptBlocksLargestFirstBeforeAskingForMore) {
  auto pool = make_private_pool(Device::cpu());
  auto& c = dynamic_cast<BlockCache&>(*pool);
  c.set_trim_on_miss(true);
  void* a = c.allocate(512);
  void* b = c.allocate(1024);
  void* d = c.allocate(8192);
  for (void* p : {a, b, d}) c.deallocate(p, 0);
  EXPECT_EQ(c.cached(), 512 + 1024 + 8192);
  EXPECT_EQ(c.allocate(1000), b);  // a hit trims nothing
  EXPECT_EQ(c.cached(), 512 + 8192);
  c.allocate(3000);                // 3072: 8192 is too large, a miss: 8192 alone covers it
  EXPECT_EQ(c.cached(), 512);
  EXPECT_EQ(c.backing_calls(), 4);
  c.allocate(2048);                // kept 512 < 2048: all of it goes
  EXPECT_EQ(c.cached(), 0);
  // Steps whose sizes do not fit each other's blocks: kept + in use stays at
  // the larger step's size (a plain cache would keep both steps' blocks).
  for (int round = 0; round < 3; ++round)
    for (size_t s : {size_t(4096), size_t(16384)}) {
      void* p = c.allocate(s);
      EXPECT_LE(c.cached() + c.stats().bytes_in_use, int64_t(16384) + 1024 + 3072 + 2048) << s;  // + the three held above
      c.deallocate(p, s);
    }
}

TEST(PoolScope, TensorsComeFromTheActivePoolAndKeepItAlive) {
  auto pool = make_private_pool(Device::cpu());
  const std::weak_ptr<Allocator> alive = pool;
  Tensor inside;
  {
    PoolScope scope(Device::cpu(), pool);
    inside = Tensor::empty({100});
    auto inner = make_private_pool(Device::cpu());
    {
      PoolScope nested(Device::cpu(), inner);
      const Tensor t = Tensor::empty({10});
      EXPECT_EQ(inner->stats().allocations, 1);
    }
    const Tensor again = Tensor::empty({10});  // the outer scope is back
    EXPECT_EQ(pool->stats().allocations, 2);
  }
  const Tensor outside = Tensor::empty({100});
  EXPECT_EQ(pool->stats().allocations, 2);  // no scope: the CPU's own allocator
  EXPECT_EQ(pool->stats().bytes_in_use, 512);
  {
    PoolScope other_device(Device::cuda(0), pool);  // a scope for a GPU leaves CPU tensors alone
    const Tensor t = Tensor::empty({10});
    EXPECT_EQ(pool->stats().allocations, 2);
  }
  pool.reset();
  EXPECT_FALSE(alive.expired());  // `inside` holds it
  inside = Tensor();
  EXPECT_TRUE(alive.expired());
}

TEST(CaptureGuard, ReadingBackInsideACaptureIsAnError) {
  const Tensor t = Tensor::ones({1});
  {
    CaptureGuard g;
    EXPECT_TRUE(capturing());
    EXPECT_NE(error_of([&] { (void)t.item(); }).find("inside a captured step"), std::string::npos);
  }
  EXPECT_FALSE(capturing());
  EXPECT_EQ(t.item(), 1.0);
}

TEST(StepGraph, CpuReplayRunsTheStepAgainAndHoldsItToTheCapturedPlan) {
  StepGraph g(Device::cpu());
  EXPECT_NE(error_of([&] { g.replay(); }).find("before capture"), std::string::npos);
  int runs = 0;
  int64_t n = 10;
  g.capture([&] {
    ++runs;
    const Tensor a = Tensor::empty({n}), b = Tensor::empty({2 * n});
    EXPECT_TRUE(capturing());
  });
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(g.plan().size(), 2u);
  g.replay();
  g.replay();
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(dynamic_cast<BlockCache&>(*g.pool()).backing_calls(), 2);  // the capture's two blocks, reused
  n = 1000;  // a shape change: a graph would replay the old one
  EXPECT_NE(error_of([&] { g.replay(); }).find("shapes or its path changed"), std::string::npos);

  StepGraph reads(Device::cpu());
  const Tensor t = Tensor::ones({1});
  EXPECT_NE(error_of([&] { reads.capture([&] { (void)t.item(); }); }).find("captured step"), std::string::npos);
  EXPECT_FALSE(reads.captured());
}

// Adam with its count on the device: the host-count Adam's numbers bit for
// bit; a flagged step changes nothing; steps() is the caller's to keep.
TEST(AdamDeviceCount, EqualsTheHostCountBitForBitAndSkipsFlaggedSteps) {
  Generator gen(3);
  const Tensor p0 = Tensor::randn({300}, gen), q0 = Tensor::randn({7, 5}, gen);
  Tensor pa = p0.clone().set_requires_grad(true), qa = q0.clone().set_requires_grad(true);
  Tensor pb = p0.clone().set_requires_grad(true), qb = q0.clone().set_requires_grad(true);
  const Adam::Options o{1e-2, 0.9, 0.999, 1e-8, 1e-3};
  Adam host({pa, qa}, o), dev({pb, qb}, o);
  Tensor skip = Tensor::zeros({1});
  dev.keep_count_on_device(skip);
  for (int s = 0; s < 5; ++s) {
    const Tensor gp = Tensor::randn({300}, gen), gq = Tensor::randn({7, 5}, gen);
    pa.set_grad(gp.clone()), pb.set_grad(gp.clone());
    qa.set_grad(gq.clone()), qb.set_grad(gq.clone());
    host.step();
    dev.step();
  }
  EXPECT_EQ(pb.to_vector(), pa.to_vector());
  EXPECT_EQ(qb.to_vector(), qa.to_vector());
  EXPECT_EQ(dev.device_count().item(), 5.0);
  EXPECT_EQ(dev.steps(), 0);  // the host's count: left to the caller
  dev.set_steps(5);
  EXPECT_EQ(dev.steps(), 5);

  const std::vector<double> before = pb.to_vector();
  skip.fill_(1.0);
  pb.set_grad(Tensor::randn({300}, gen));
  dev.step();
  EXPECT_EQ(pb.to_vector(), before);
  EXPECT_EQ(dev.device_count().item(), 5.0);
  EXPECT_EQ(dev.state()[1].second.to_vector(), host.state()[1].second.to_vector());  // exp_avg_sq untouched
}

// Batches of bytes as the loader makes them for a GPU, and labels.
struct Batches {
  std::vector<Tensor> x, y;
};
Batches make_batches(int n, int64_t b, int64_t s, uint64_t seed) {
  Generator gen(seed);
  Batches out;
  for (int i = 0; i < n; ++i) {
    Tensor x = Tensor::empty({b, 3, s, s}, DType::UInt8);
    for (int64_t k = 0; k < x.numel(); ++k) x.data<uint8_t>()[k] = uint8_t(gen.below(256));
    Tensor y = Tensor::empty({b, 6});
    for (int64_t k = 0; k < y.numel(); ++k) y.data<float>()[k] = gen.uniform() < 0.3 ? 1.f : 0.f;
    out.x.push_back(x);
    out.y.push_back(y);
  }
  return out;
}

struct RunResult {
  std::vector<double> losses;
  std::vector<std::vector<double>> weights;
  int64_t steps = 0;
};
std::vector<std::vector<double>> weights_of(Module& m) {
  std::vector<std::vector<double>> w;
  for (auto& [name, t] : m.state_dict()) w.push_back(t.to_vector());
  return w;
}

TEST(GraphedStep, CpuEmulationGivesTheEagerStepsNumbersBitForBit) {
  const Batches data = make_batches(7, 4, 48, 11);
  const Tensor pos_weight = Tensor::from_vector({1, 2, 3, 1, 2, 3}, {6});
  for (DType precision : {DType::Float32, DType::BFloat16}) {
    for (MemoryFormat fmt : {MemoryFormat::Contiguous, MemoryFormat::ChannelsLast}) {
      SCOPED_TRACE(std::string(precision_name(precision)) + (fmt == MemoryFormat::ChannelsLast ? " cl" : ""));
      auto run = [&](bool graphed) {
        Generator gen(5);
        ResNeXt m(resnext_preset("resnext_mini", 6), gen);
        m.train();
        Adam opt(m.parameters(), Adam::Options{1e-3});
        GraphedStep gs(m, opt, pos_weight, precision, fmt, /*warmup=*/2);
        RunResult r;
        for (size_t i = 0; i < data.x.size(); ++i) {
          const StepResult s =
              graphed ? gs.run(data.x[i], data.y[i])
                      : train_step(m, opt, to_device_input(data.x[i], Device::cpu()).contiguous(fmt), data.y[i],
                                   pos_weight, precision, nullptr);
          EXPECT_TRUE(s.finite && s.applied);
          r.losses.push_back(s.loss);
          if (graphed && i == 2) {
            EXPECT_TRUE(gs.captured());  // after the two eager steps
          }
        }
        if (graphed) {
          EXPECT_EQ(gs.graph()->replays(), 4);
          EXPECT_GT(gs.graph()->plan().size(), 100u);
        }
        r.weights = weights_of(m);
        r.steps = opt.steps();
        return r;
      };
      const RunResult eager = run(false), graph = run(true);
      EXPECT_EQ(graph.losses, eager.losses);
      EXPECT_EQ(graph.steps, eager.steps);
      EXPECT_EQ(graph.weights, eager.weights);  // parameters and BN running statistics
    }
  }
}

TEST(GraphedStep, ANanLossIsFlaggedOnTheDeviceAndNothingIsApplied) {
  Generator gen(6);
  ResNeXt m(resnext_preset("resnext_mini", 6), gen);
  m.train();
  Adam opt(m.parameters(), Adam::Options{1e-3});
  GraphedStep gs(m, opt, Tensor(), DType::Float32, MemoryFormat::Contiguous, /*warmup=*/1);
  const Tensor x = Tensor::randn({2, 3, 40, 40}, gen), y = Tensor::zeros({2, 6});
  ASSERT_TRUE(gs.run(x, y).applied);  // eager
  ASSERT_TRUE(gs.run(x, y).applied);  // captured
  const std::vector<std::vector<double>> params_before = [&] {
    std::vector<std::vector<double>> w;
    for (const Tensor& p : m.parameters()) w.push_back(p.to_vector());
    return w;
  }();
  Tensor bad = x.clone();
  bad.data<float>()[5] = NAN;
  const StepResult r = gs.run(bad, y);
  EXPECT_FALSE(r.finite);
  EXPECT_FALSE(r.applied);
  EXPECT_TRUE(std::isnan(r.loss));
  std::vector<std::vector<double>> params_after;
  for (const Tensor& p : m.parameters()) params_after.push_back(p.to_vector());
  EXPECT_EQ(params_after, params_before);
  EXPECT_EQ(opt.steps(), 2);
  EXPECT_EQ(opt.device_count().item(), 2.0);
  const StepResult ok = gs.run(x, y);  // and the next good batch goes on
  EXPECT_TRUE(ok.applied);
  EXPECT_EQ(opt.device_count().item(), 3.0);
}

// float16 with its loss scaler on the device: the eager steps' numbers, and
// the scaler's, bit for bit, through a NaN loss (no update, scale kept), backoffs (a start at 2^20 overflows the
// float16 gradients until the scale has come down) and growth (every 2 clean
// steps here).
TEST(GraphedStep, Float16WithTheScalerOnTheDeviceGivesTheEagerNumbers) {
  Batches data = make_batches(16, 4, 40, 12);
  data.y[12].data<float>()[3] = NAN;  // a NaN loss: nothing applied, and the scaler left alone
  LossScaler::Options so;
  so.init_scale = 1048576.0;  // 2^20
  so.growth_interval = 2;
  struct Out {
    std::vector<double> losses, scales;
    std::vector<bool> applied;
    std::vector<std::vector<double>> weights;
    int64_t steps = 0;
  };
  auto run = [&](bool graphed) {
    Generator gen(9);
    ResNeXt m(resnext_preset("resnext_mini", 6), gen);
    m.train();
    Adam opt(m.parameters(), Adam::Options{1e-3});
    LossScaler scaler(so);
    GraphedStep gs(m, opt, Tensor(), DType::Float16, MemoryFormat::Contiguous, /*warmup=*/2, &scaler);
    Out o;
    for (size_t i = 0; i < data.x.size(); ++i) {
      const StepResult r = graphed ? gs.run(data.x[i], data.y[i])
                                   : train_step(m, opt, to_device_input(data.x[i], Device::cpu()), data.y[i],
                                                Tensor(), DType::Float16, &scaler);
      o.losses.push_back(r.loss);
      o.applied.push_back(r.applied);
      o.scales.push_back(scaler.scale());
    }
    o.weights = weights_of(m);
    o.steps = opt.steps();
    return o;
  };
  const Out eager = run(false), graph = run(true);
  auto nan_as_marker = [](std::vector<double> v) {  // NaN == NaN for the comparison
    for (double& x : v) x = std::isnan(x) ? -1e300 : x;
    return v;
  };
  EXPECT_EQ(nan_as_marker(graph.losses), nan_as_marker(eager.losses));
  EXPECT_EQ(graph.applied, eager.applied);
  EXPECT_EQ(graph.scales, eager.scales);
  EXPECT_EQ(graph.steps, eager.steps);
  EXPECT_EQ(graph.weights, eager.weights);
  EXPECT_TRUE(std::isnan(graph.losses[12]));
  EXPECT_EQ(graph.scales[12], graph.scales[11]);
  // the rule was exercised: some steps skipped, and the scale grew again afterwards
  EXPECT_LT(eager.steps, int64_t(data.x.size()) - 1);
  EXPECT_GT(eager.steps, 0);
  bool grew = false;
  for (size_t i = 1; i < eager.scales.size(); ++i) grew |= eager.scales[i] > eager.scales[i - 1];
  EXPECT_TRUE(grew);
}

TEST(GraphedStep, RefusesChangedShapes) {
  Generator gen(7);
  ResNeXt m(resnext_preset("resnext_mini", 6), gen);
  Adam opt(m.parameters(), Adam::Options{1e-3});
  EXPECT_NE(error_of([&] { GraphedStep(m, opt, Tensor(), DType::Float16, MemoryFormat::Contiguous); })
                .find("needs its LossScaler"),
            std::string::npos);
  GraphedStep gs(m, opt, Tensor(), DType::Float32, MemoryFormat::Contiguous, 1);
  const Tensor y = Tensor::zeros({2, 6});
  gs.run(Tensor::randn({2, 3, 40, 40}, gen), y);
  gs.run(Tensor::randn({2, 3, 40, 40}, gen), y);
  EXPECT_NE(error_of([&] { gs.run(Tensor::randn({1, 3, 40, 40}, gen), Tensor::zeros({1, 6})); })
                .find("differ from the first"),
            std::string::npos);
}

// ich-train --cuda-graph on the CPU (the emulation) writes the same
// checkpoint, bit for bit, as ich-train without it, in fp32 and in fp16.
TEST(GraphedStep, IchTrainWithCudaGraphWritesTheSameWeights) {
  const std::string dir = test::fresh_dir("ich_graph_train");
  PhantomOptions po;
  po.difficulty = "easy";  // the first phantom: bright, sharp lesions, quick to learn
  po.patients = 12;
  po.size = 48;
  po.seed = 8;
  const test::PhantomSet set = test::make_phantom_set(dir, po);
  auto train_once = [&](bool graph, const std::string& precision) {
    TrainOptions to;
    to.precision = precision;
    to.train_csv = set.train_csv;
    to.valid_csv = set.valid_csv;
    to.images = set.images;
    to.out = dir + (graph ? "/graph_" : "/eager_") + precision;
    to.size = 48;
    to.epochs = 2;
    to.max_steps_per_epoch = 6;
    to.batch = 4;
    to.lr = 1e-3;
    to.device = "cpu";
    to.workers = 1;
    to.cuda_graph = graph;
    EXPECT_EQ(train(to), 0);
    std::ifstream f(to.out + "/last.ckpt", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  for (const char* precision : {"fp32", "fp16"}) {  // fp16: the loss scale is in the checkpoint too
    const std::string eager = train_once(false, precision), graph = train_once(true, precision);
    EXPECT_GT(eager.size(), 100000u);  // weights, Adam's state, the step count
    EXPECT_TRUE(graph == eager) << precision << ": the checkpoints differ";
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ich
