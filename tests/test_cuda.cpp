// The CUDA backend against the CPU reference: every op's output and
// gradients on the same random inputs (float32, TF32 off, 1e-5 relative),
// the optimizer steps, a few training steps, and the caching allocator.
// Without a GPU (or without the CUDA backend in the build) every test here
// skips with the reason.
#include <unistd.h>

#include "engine/ops/amp.h"
#include "engine/dist/communicator.h"
#include "engine/kernels.h"
#include "engine/ops/optim.h"
#include "engine/ops/rnn.h"
#include "layers/resnext.h"
#include "layers/toy.h"
#include "tests/op_cases.h"
#include "tests/test_util.h"
#include "train/graph_step.h"
#include "train/step.h"
#ifdef ICH_WITH_CUDA
#include "engine/cuda/runtime.h"
#endif

namespace ich {
namespace {

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef ICH_WITH_CUDA
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device on this machine (CUDA backend compiled, not run)";
    cuda::set_allow_tf32(false);
#else
    GTEST_SKIP() << "this build has no CUDA backend (CUDA toolkit or cuDNN not found at configure time)";
#endif
  }
};

constexpr double kTol = 1e-5;

// Runs f on CPU leaves and on CUDA copies of them, backpropagates the same
// random weighting of the output (when some input is differentiated), and
// compares outputs, gradients, and the inputs listed in `state` (updated in
// place: running statistics) after the call.
void compare_backends(std::vector<Tensor> cpu_in, const std::function<Tensor(const std::vector<Tensor>&)>& f,
                      double tol = kTol, const std::vector<std::pair<std::string, size_t>>& state = {}) {
  std::vector<Tensor> gpu_in;
  for (Tensor& t : cpu_in) {
    if (!t.defined()) {
      gpu_in.emplace_back();
      continue;
    }
    Tensor g = t.to(Device::cuda()).detach();
    if (t.requires_grad()) g.set_requires_grad(true);
    gpu_in.push_back(g);
  }
  // a 16-bit result (autocast) is compared, and differentiated, as float32
  const auto wide = [](const Tensor& y) { return is_16bit(y.dtype()) ? cast(y, DType::Float32) : y; };
  Tensor y_cpu = wide(f(cpu_in)), y_gpu = wide(f(gpu_in));
  ASSERT_TRUE(y_gpu.device().is_cuda());
  EXPECT_CLOSE(y_gpu, y_cpu, tol);
  for (const auto& [name, k] : state) {
    SCOPED_TRACE(name);
    EXPECT_CLOSE(gpu_in[k], cpu_in[k], tol);
  }
  if (!y_cpu.requires_grad()) return;
  Generator gen(4);
  const Tensor r = Tensor::randn(y_cpu.shape(), gen, y_cpu.dtype());
  sum(mul(y_cpu, r)).backward();
  sum(mul(y_gpu, r.to(Device::cuda()))).backward();
  for (size_t i = 0; i < cpu_in.size(); ++i) {
    if (!cpu_in[i].defined() || !cpu_in[i].requires_grad()) continue;
    SCOPED_TRACE("gradient of input " + std::to_string(i));
    EXPECT_CLOSE(gpu_in[i].grad(), cpu_in[i].grad(), tol);
  }
}

Tensor leaf32(const Shape& s, Generator& gen) { return Tensor::randn(s, gen).set_requires_grad(true); }

// NCCL with one rank (all a 1-GPU machine can run): the rendezvous through
// the TCP store, an all-reduce (the sum of one rank is itself, through
// NCCL's kernels), a broadcast, a barrier, each waited for with a deadline.
TEST_F(Cuda, NcclWorldOfOneAllReducesAndBroadcasts) {
  dist::DistEnv env;
  env.master_port = 29400 + int(::getpid() % 500);
  env.timeout = std::chrono::seconds(60);
  std::unique_ptr<dist::Communicator> c;
  try {
    c = dist::make_communicator(env, Device::cuda(0));
  } catch (const Error& e) {
    FAIL() << e.what();
  }
  EXPECT_EQ(c->backend(), "nccl");
  Tensor a = Tensor::from_vector({1.5, -2, 3}, {3}).to(Device::cuda(0));
  c->all_reduce_sum(a, "test all-reduce");
  EXPECT_EQ(a.to(Device::cpu()).to_vector(), (std::vector<double>{1.5, -2, 3}));
  Tensor b = Tensor::from_vector({7, 8}, {2}, DType::Float64).to(Device::cuda(0));
  c->broadcast(b, 0, "test broadcast");
  EXPECT_EQ(b.to(Device::cpu()).to_vector(), (std::vector<double>{7, 8}));
  c->barrier("test barrier");
  Tensor host = Tensor::zeros({2});
  EXPECT_THROW(c->all_reduce_sum(host, "a CPU tensor"), Error);  // NCCL takes device tensors
}

// The row selection and the class-weighted loss of the sequence model
// (LSTM and GRU themselves are rows of the op table: cuBLAS products and one
// fused cell kernel per step on the GPU, both directions, ragged lengths).
TEST_F(Cuda, SelectRowsAndWeightedBceMatchCpu) {
  Generator gen(12);
  const Tensor target = (Tensor::uniform({4, 6}, 0, 1, gen)), w = Tensor::uniform({6}, 0.5, 2, gen);
  std::vector<double> tv = target.to_vector();
  for (double& v : tv) v = v > 0.7 ? 1 : 0;
  const Tensor t01 = Tensor::from_vector(tv, {4, 6});
  compare_backends({leaf32({7, 6}, gen)}, [&](const std::vector<Tensor>& t) {
    const bool gpu = t[0].device().is_cuda();
    const Tensor rows = select_rows(t[0], {6, 0, 3, 2});
    return bce_with_logits(rows, gpu ? t01.to(Device::cuda()) : t01, Tensor(), gpu ? w.to(Device::cuda()) : w);
  });
}

// Every case of the op table marked kCuda: the same float32 inputs on both
// devices, outputs, gradients and updated state compared.
class OpCuda : public Cuda, public ::testing::WithParamInterface<test::OpCase> {};
TEST_P(OpCuda, MatchesCpu) {
  const test::OpCase& c = GetParam();
  compare_backends(test::generate_inputs(c, DType::Float32), c.op, kTol, c.state);
}
INSTANTIATE_TEST_SUITE_P(Ops, OpCuda, ::testing::ValuesIn(test::op_cases_with(test::kCuda)), test::op_case_test_name);

template <class Opt, class Options> void optimizer_matches(Options o) {
  Generator gen(8);
  Tensor p_c = Tensor::randn({1000}, gen).set_requires_grad(true);
  Tensor p_g = p_c.to(Device::cuda()).detach().set_requires_grad(true);
  Opt oc({p_c}, o), og({p_g}, o);
  for (int i = 0; i < 5; ++i) {
    const Tensor g = Tensor::randn({1000}, gen);
    p_c.set_grad(g.clone());
    p_g.set_grad(g.to(Device::cuda()));
    oc.step();
    og.step();
  }
  EXPECT_CLOSE(p_g, p_c, 1e-6);
}
TEST_F(Cuda, AdamMatchesCpu) { optimizer_matches<Adam>(Adam::Options{1e-2, 0.9, 0.999, 1e-8, 1e-2}); }
TEST_F(Cuda, SgdMatchesCpu) { optimizer_matches<Sgd>(Sgd::Options{0.1, 0.9, 0.0, 1e-4, true}); }

// Three Adam steps of resnext_mini on the same batch, CPU vs CUDA: losses
// and final weights. Differences grow with steps; 1e-4 bounds them here.
TEST_F(Cuda, ResNeXtMiniTrainingStepsMatchCpu) {
  auto run = [](Device d) {
    Generator gen(9);
    ResNeXt m(resnext_preset("resnext_mini", 6), gen);
    m.to(d);
    Adam opt(m.parameters(), Adam::Options{1e-3});
    Generator data(10);
    const Tensor x = Tensor::randn({4, 3, 64, 64}, data).to(d);
    const Tensor y = Tensor::uniform({4, 6}, 0, 1, data).to(d);
    std::vector<double> losses;
    for (int s = 0; s < 3; ++s) {
      opt.zero_grad();
      Tensor loss = bce_with_logits(m(x), y);
      loss.backward();
      opt.step();
      losses.push_back(loss.item());
    }
    return std::make_pair(losses, m.state_dict().front().second.to(Device::cpu()));
  };
  const auto [lc, wc] = run(Device::cpu());
  const auto [lg, wg] = run(Device::cuda());
  for (size_t i = 0; i < lc.size(); ++i) EXPECT_NEAR(lg[i], lc[i], 1e-4 * std::fabs(lc[i])) << "step " << i;
  EXPECT_CLOSE(wg, wc, 1e-4);
}

#ifdef ICH_WITH_CUDA
TEST_F(Cuda, CachingAllocatorStopsCallingCudaMallocOnceWarm) {
  Generator gen(11);
  ResNeXt m(resnext_preset("resnext_mini", 6), gen);
  m.to(Device::cuda());
  Adam opt(m.parameters(), Adam::Options{1e-3});
  const Tensor x = Tensor::randn({4, 3, 64, 64}, gen).to(Device::cuda());
  const Tensor y = Tensor::zeros({4, 6}).to(Device::cuda());
  auto step = [&] {
    opt.zero_grad();
    bce_with_logits(m(x), y).backward();
    opt.step();
  };
  step();
  step();
  const int64_t warm = cuda::device_malloc_count();
  for (int i = 0; i < 3; ++i) step();
  EXPECT_EQ(cuda::device_malloc_count(), warm);
  const AllocatorStats s = cuda::allocator(0).stats();
  EXPECT_GT(s.peak_bytes, s.bytes_in_use);
  std::printf("resnext_mini step: %.1f MiB peak, %.1f MiB in use between steps\n", double(s.peak_bytes) / (1 << 20),
              double(s.bytes_in_use) / (1 << 20));
}
#endif

// Mixed precision (engine/ops/amp.h): the conversions and the two AMP kernels
// give the CPU's numbers; a convolution under bf16/fp16 autocast, which runs
// natively in 16 bits through cuDNN on the GPU, agrees with the CPU's
// emulation up to accumulation order (a unit of the low precision).
TEST_F(Cuda, MixedPrecisionKernelsMatchCpu) {
  Generator gen(21);
  const Tensor x = Tensor::randn({1000}, gen);
  Tensor xs = scale(x, 70000);  // past float16's range too
  for (DType lp : {DType::BFloat16, DType::Float16}) {
    SCOPED_TRACE(dtype_name(lp));
    const Tensor cpu = xs.to(lp).to(DType::Float32);
    const Tensor gpu = xs.to(Device::cuda()).to(lp).to(DType::Float32).to(Device::cpu());
    EXPECT_EQ(gpu.to_vector(), cpu.to_vector());
    Tensor r = xs.to(Device::cuda()).clone();
    ICH_DISPATCH(r.device(), round_to_precision_, r, lp);
    EXPECT_EQ(r.to(Device::cpu()).to_vector(), rounded(xs, lp).to_vector());
  }
  Tensor g = x.to(Device::cuda()).clone(), found = Tensor::zeros({1}, DType::Float32, Device::cuda());
  ICH_DISPATCH(g.device(), unscale_check_, g, 1.0 / 1024, found);
  EXPECT_EQ(found.item(), 0);
  EXPECT_CLOSE(g.to(Device::cpu()), scale(x, 1.0 / 1024), 1e-7);
  g.fill_(INFINITY);
  ICH_DISPATCH(g.device(), unscale_check_, g, 0.5, found);
  EXPECT_EQ(found.item(), 1);
}

TEST_F(Cuda, AutocastConvolutionMatchesCpuEmulation) {
  Generator gen(22);
  Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  p.groups = 32;
  for (DType lp : {DType::BFloat16, DType::Float16}) {
    SCOPED_TRACE(dtype_name(lp));
    AutocastGuard g(lp);
    compare_backends({leaf32({2, 64, 14, 14}, gen), leaf32({64, 2, 3, 3}, gen), Tensor()},
                     [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], p); },
                     lp == DType::BFloat16 ? 1e-2 : 2e-3);
  }
}

// 16-bit activations (engine/ops/amp.h): batch norm (training, with the running
// statistics, and eval), the fused batch norm + add + ReLU, ReLU, add and
// both pools on bfloat16/float16 tensors, forward and backward, against the
// CPU's emulation. Our CUDA kernels round at the CPU's points; what differs
// is the order of batch norm's float64 sums, which can move a result by one
// unit of the 16-bit format (2^-8 / 2^-11 relative).
TEST_F(Cuda, SixteenBitActivationsMatchCpuEmulation) {
  Generator gen(23);
  Pool2dParams mp;
  mp.kernel_h = mp.kernel_w = 3;
  mp.stride_h = mp.stride_w = 2;
  mp.pad_h = mp.pad_w = 1;
  for (DType lp : {DType::BFloat16, DType::Float16}) {
    SCOPED_TRACE(dtype_name(lp));
    const double tol = lp == DType::BFloat16 ? 1e-2 : 2e-3;
    const auto low = [lp](const Tensor& t) { return cast(t, lp); };
    for (bool training : {true, false}) {
      Tensor rm_c = Tensor::zeros({16}), rv_c = Tensor::ones({16});
      Tensor rm_g = rm_c.to(Device::cuda()), rv_g = rv_c.to(Device::cuda());
      int call = 0;
      compare_backends({leaf32({4, 16, 7, 5}, gen), leaf32({16}, gen), leaf32({16}, gen), leaf32({4, 16, 7, 5}, gen)},
                       [&](const std::vector<Tensor>& in) {
                         Tensor& rm = call == 0 ? rm_c : rm_g;
                         Tensor& rv = call++ == 0 ? rv_c : rv_g;
                         const Tensor bn = batch_norm2d(low(in[0]), in[1], in[2], rm, rv, training);
                         return relu(add(bn, low(in[3])));
                       },
                       tol);
      EXPECT_CLOSE(rm_g.to(Device::cpu()), rm_c, 1e-6);
      EXPECT_CLOSE(rv_g.to(Device::cpu()), rv_c, 1e-6);
    }
    Tensor rm_c = Tensor::zeros({16}), rv_c = Tensor::ones({16});
    Tensor rm_g = rm_c.to(Device::cuda()), rv_g = rv_c.to(Device::cuda());
    int call = 0;
    compare_backends({leaf32({4, 16, 7, 5}, gen), leaf32({16}, gen), leaf32({16}, gen), leaf32({4, 16, 7, 5}, gen)},
                     [&](const std::vector<Tensor>& in) {
                       Tensor& rm = call == 0 ? rm_c : rm_g;
                       Tensor& rv = call++ == 0 ? rv_c : rv_g;
                       return batch_norm_relu(low(in[0]), in[1], in[2], rm, rv, true, 0.1, 1e-5, low(in[3]));
                     },
                     tol);
    compare_backends({leaf32({2, 8, 11, 9}, gen)},
                     [&](const std::vector<Tensor>& in) { return max_pool2d(low(in[0]), mp); }, tol);
    compare_backends({leaf32({2, 8, 5, 7}, gen)},
                     [&](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(low(in[0]), 3, 2); }, tol);
  }
}

// A few bf16 and fp16 training steps of resnext_mini through train_step()
// on the GPU follow the CPU's emulation.
// Three train_step()s of resnext_mini (Adam, random batch of 4 at 64x64)
// on device d in a precision and a layout: the losses.
std::vector<double> mini_step_losses(Device d, uint64_t seed, DType precision, MemoryFormat layout) {
  Generator gen(seed);
  ResNeXt m(resnext_preset("resnext_mini", 6), gen);
  m.to(d);
  m.train();
  Adam opt(m.parameters(), Adam::Options{1e-3});
  LossScaler scaler;
  const Tensor x = Tensor::randn({4, 3, 64, 64}, gen).to(d).contiguous(layout);
  const Tensor y = Tensor::uniform({4, 6}, 0, 1, gen).to(d);
  std::vector<double> losses;
  for (int s = 0; s < 3; ++s)
    losses.push_back(train_step(m, opt, x, y, Tensor(), precision, precision == DType::Float16 ? &scaler : nullptr).loss);
  return losses;
}

TEST_F(Cuda, MixedPrecisionTrainingStepsFollowCpu) {
  for (DType lp : {DType::BFloat16, DType::Float16}) {
    SCOPED_TRACE(dtype_name(lp));
    const std::vector<double> cpu = mini_step_losses(Device::cpu(), 5, lp, MemoryFormat::Contiguous);
    const std::vector<double> gpu = mini_step_losses(Device::cuda(), 5, lp, MemoryFormat::Contiguous);
    for (size_t s = 0; s < cpu.size(); ++s) EXPECT_NEAR(gpu[s], cpu[s], 2e-2 * cpu[s]);
  }
}

// Byte batches: uploaded asynchronously through pinned memory and
// normalised on the GPU, the same floats as on the CPU; twice in a row (the
// staging buffer is reused).
TEST_F(Cuda, ByteBatchesUploadAndNormaliseAsOnTheCpu) {
  Generator gen(23);
  for (int round = 0; round < 2; ++round) {
    Tensor b = Tensor::empty({3, 3, 17, 19}, DType::UInt8);
    for (int64_t i = 0; i < b.numel(); ++i) b.data<uint8_t>()[i] = uint8_t(gen.below(256));
    const Tensor gpu = to_device_input(b, Device::cuda());
    ASSERT_TRUE(gpu.device().is_cuda());
    EXPECT_EQ(gpu.to(Device::cpu()).to_vector(), to_device_input(b, Device::cpu()).to_vector());
  }
}

// The all-parameters Adam (chunk tables in the launch parameters, 768
// chunks a launch) gives the per-parameter kernel's numbers bit for bit, on
// sizes that cross chunk boundaries and with more chunks than one launch takes.
TEST_F(Cuda, AdamForAllParametersAtOnceEqualsOnePerParameter) {
#ifdef ICH_WITH_CUDA
  Generator gen(24);
  std::vector<AdamSlot> one, all;
  std::vector<int64_t> sizes{7, 262144, 262145, 600000};
  sizes.resize(sizes.size() + 800, 5);  // 800 small parameters: two launches
  for (int64_t n : sizes) {
    const Tensor p = Tensor::randn({n}, gen).to(Device::cuda()), g = Tensor::randn({n}, gen).to(Device::cuda());
    const Tensor m = Tensor::randn({n}, gen).to(Device::cuda()), v = Tensor::uniform({n}, 0, 1, gen).to(Device::cuda());
    one.push_back({p.clone(), g, m.clone(), v.clone()});
    all.push_back({p.clone(), g, m.clone(), v.clone()});
  }
  AdamParams a;
  a.lr = 1e-3, a.weight_decay = 0.01, a.step = 3;
  for (AdamSlot& s : one) cuda::adam_step(s.param, s.grad, s.exp_avg, s.exp_avg_sq, a);
  cuda::adam_step_all(all, a);
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(all[i].param.to(Device::cpu()).to_vector(), one[i].param.to(Device::cpu()).to_vector()) << i;
    EXPECT_EQ(all[i].exp_avg_sq.to(Device::cpu()).to_vector(), one[i].exp_avg_sq.to(Device::cpu()).to_vector()) << i;
  }
#endif
}

// Channels-last on the GPU: cuDNN convolutions (grouped, strided, 1x1) and
// batch norm take N,H,W,C tensors natively and the pointwise kernels walk
// them as they are; outputs and gradients match the CPU's N,C,H,W numbers
// and keep the layout.
TEST_F(Cuda, ChannelsLastConvolutionBatchNormAndPointwiseMatchCpu) {
  Generator gen(25);
  for (int64_t groups : {int64_t(1), int64_t(32)}) {
    SCOPED_TRACE("groups " + std::to_string(groups));
    Conv2dParams p;
    p.pad_h = p.pad_w = 1;
    p.stride_h = p.stride_w = groups == 1 ? 2 : 1;
    p.groups = groups;
    Tensor x = Tensor::randn({2, 64, 12, 12}, gen).contiguous(MemoryFormat::ChannelsLast).set_requires_grad(true);
    compare_backends({x, leaf32({64, 64 / groups, 3, 3}, gen), leaf32({64}, gen), leaf32({64}, gen)},
                     [&](const std::vector<Tensor>& in) {
                       Tensor rm = Tensor::zeros({64}, DType::Float32, in[0].device());
                       Tensor rv = Tensor::ones({64}, DType::Float32, in[0].device());
                       const Tensor y = relu(add(batch_norm2d(conv2d(in[0], in[1], Tensor(), p), in[2], in[3], rm, rv,
                                                              true, 0.1, 1e-5),
                                                 Tensor::zeros({2, 64, p.stride_h == 2 ? 6 : 12, p.stride_h == 2 ? 6 : 12},
                                                               DType::Float32, in[0].device())));
                       if (in[0].device().is_cuda()) {
                         EXPECT_EQ(memory_format_of(y), MemoryFormat::ChannelsLast);
                       }
                       return y;
                     },
                     1e-4);
  }
}

TEST_F(Cuda, ChannelsLastTrainingStepsFollowCpu) {
  const std::vector<double> cpu = mini_step_losses(Device::cpu(), 6, DType::Float32, MemoryFormat::ChannelsLast);
  const std::vector<double> gpu = mini_step_losses(Device::cuda(), 6, DType::Float32, MemoryFormat::ChannelsLast);
  for (size_t s = 0; s < cpu.size(); ++s) EXPECT_NEAR(gpu[s], cpu[s], 1e-4 * std::max(1.0, cpu[s]));
}

// A captured training step (engine/graph.h, train/graph_step.h), in fp32,
// bf16 and fp16 (its loss scaler on the device): after two eager steps the
// step is captured and replayed; the losses and weights
// follow the eager steps' (same kernels and algorithms; Adam's count on the
// device), and a replay allocates nothing from the caching allocator.
TEST_F(Cuda, CapturedTrainingStepFollowsTheEagerSteps) {
#ifdef ICH_WITH_CUDA
  Generator data(31);
  std::vector<Tensor> xs, ys;
  for (int i = 0; i < 8; ++i) {
    Tensor x = Tensor::empty({4, 3, 64, 64}, DType::UInt8);
    for (int64_t k = 0; k < x.numel(); ++k) x.data<uint8_t>()[k] = uint8_t(data.below(256));
    xs.push_back(x);
    ys.push_back(Tensor::uniform({4, 6}, 0, 1, data));
  }
  for (DType precision : {DType::Float32, DType::BFloat16, DType::Float16}) {
    for (MemoryFormat fmt : {MemoryFormat::Contiguous, MemoryFormat::ChannelsLast}) {
      SCOPED_TRACE(std::string(precision_name(precision)) + (fmt == MemoryFormat::ChannelsLast ? " cl" : ""));
      auto run = [&](bool graphed, int64_t* replay_allocations) {
        Generator gen(32);
        ResNeXt m(resnext_preset("resnext_mini", 6), gen);
        m.to(Device::cuda());
        m.train();
        Adam opt(m.parameters(), Adam::Options{1e-3});
        LossScaler scaler;  // float16's, on the device in the graphed run
        LossScaler* sc = precision == DType::Float16 ? &scaler : nullptr;
        GraphedStep gs(m, opt, Tensor(), precision, fmt, /*warmup=*/2, sc);
        std::vector<double> losses;
        int64_t before = 0;
        for (size_t i = 0; i < xs.size(); ++i) {
          if (i == 4) before = cuda::allocator(0).stats().allocations;  // after the capture
          losses.push_back(graphed ? gs.run(xs[i], ys[i]).loss
                                   : train_step(m, opt, to_device_input(xs[i], Device::cuda()).contiguous(fmt),
                                                ys[i].to(Device::cuda()), Tensor(), precision, sc)
                                         .loss);
        }
        if (replay_allocations) *replay_allocations = cuda::allocator(0).stats().allocations - before;
        EXPECT_EQ(opt.steps(), int64_t(xs.size()));
        return std::make_pair(losses, m.state_dict().front().second.to(Device::cpu()));
      };
      int64_t replay_allocations = -1;
      const auto [le, we] = run(false, nullptr);
      const auto [lg, wg] = run(true, &replay_allocations);
      for (size_t i = 0; i < le.size(); ++i) EXPECT_NEAR(lg[i], le[i], 1e-4 * std::max(1.0, le[i])) << "step " << i;
      EXPECT_CLOSE(wg, we, 1e-4);
      EXPECT_EQ(replay_allocations, 0);
    }
  }
#endif
}

}  // namespace
}  // namespace ich
