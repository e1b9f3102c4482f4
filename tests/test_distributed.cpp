// Data-parallel training (engine/dist/, train/data_parallel.h): the shards of
// an epoch, Gloo's collectives between ranks, two ranks making the same steps
// as one process accumulating two micro-batches (float64 in-process within
// 1e-9, and ich-launch's processes in float32 within 1e-5), resume, and the
// faults: a missing rank, a killed worker, Ctrl-C, a port in use.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include "data/dataset.h"
#include "engine/dist/communicator.h"
#include "engine/dist/store.h"
#include "engine/ops.h"
#include "engine/ops/optim.h"
#include "layers/layers.h"
#include "layers/resnext.h"
#include "tests/phantom_fixture.h"
#include "tests/test_util.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/step.h"

namespace ich {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
const std::string kBin = ICH_BIN_DIR;

// A port nobody holds now, for one test's run: below the kernel's ephemeral
// range, as tests/serve_util.py's free_port(). A port of the kernel's pick
// is one it also hands to outgoing connections, and the suite makes
// thousands (the hostile-peer tests): one took a rank's MASTER_PORT between
// the pick and rank 0's bind ("is in use on this machine").
int free_port() {
  int low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low;
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(std::max(1024, low - 12000), low - 1);
  for (int tries = 0; tries < 1000; ++tries) {
    const int port = pick(rng);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as the store binds
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(uint16_t(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return port;
  }
  ADD_FAILURE() << "no free port below " << low;
  return 0;
}

// Another program listening on a port (IPv4: every machine has it), until
// the end of the scope.
struct PortHolder {
  int fd = -1, port = 0;
  PortHolder() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 1) != 0) ADD_FAILURE() << "bind";
    socklen_t n = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
    port = ntohs(a.sin_port);
  }
  ~PortHolder() { ::close(fd); }
  PortHolder(const PortHolder&) = delete;
  PortHolder& operator=(const PortHolder&) = delete;
};

dist::DistEnv env_of(int rank, int world, int port, int timeout_s = 30) {
  dist::DistEnv e;
  e.rank = rank;
  e.world = world;
  e.master_port = port;
  e.timeout = std::chrono::seconds(timeout_s);
  return e;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs body(rank, port) for ranks 0 and 1 on two threads (two ranks of one
// run on a fresh port); returns their results, an error of either as a test
// failure.
std::vector<std::vector<double>> on_two_ranks(const std::function<std::vector<double>(int rank, int port)>& body) {
  const int port = free_port();
  std::vector<std::vector<double>> got(2);
  std::vector<std::string> errors(2);
  auto rank = [&](int r) {
    try {
      got[size_t(r)] = body(r, port);
    } catch (const std::exception& e) {
      errors[size_t(r)] = e.what();
    }
  };
  std::thread t0(rank, 0), t1(rank, 1);
  t0.join();
  t1.join();
  for (int r = 0; r < 2; ++r) EXPECT_EQ(errors[size_t(r)], "") << "rank " << r;
  return got;
}

// Every value of the tensors, one after another.
std::vector<double> flat(const std::vector<Tensor>& ts) {
  std::vector<double> w;
  for (const Tensor& t : ts) {
    const std::vector<double> v = t.to_vector();
    w.insert(w.end(), v.begin(), v.end());
  }
  return w;
}

// `n` steps of two float64 micro-batches of 4 random slices and labels.
std::vector<std::vector<MicroBatch>> random_steps(uint64_t seed, size_t n) {
  Generator data(seed);
  std::vector<std::vector<MicroBatch>> steps(n);
  for (auto& s : steps)
    for (int k = 0; k < 2; ++k) {
      std::vector<double> y(4 * 6);
      for (double& v : y) v = double(data.below(2));
      s.push_back({test::leaf64({4, 3, 32, 32}, data).detach(), Tensor::from_vector(y, {4, 6}, DType::Float64)});
    }
  return steps;
}

std::shared_ptr<ResNeXt> mini64() {
  Generator gen(7);
  auto m = std::make_shared<ResNeXt>(resnext_preset("resnext_mini", 6), gen);
  m->to(DType::Float64);
  m->train();
  return m;
}

TEST(DataParallelShard, EveryIndexOnceAcrossTheParts) {
  for (const size_t n : {1u, 10u, 11u, 13u, 64u})
    for (const int parts : {1, 2, 3, 4}) {
      SCOPED_TRACE("n " + std::to_string(n) + ", parts " + std::to_string(parts));
      const std::vector<size_t> order = epoch_order(n, 5, 2, true);
      std::map<size_t, int> train_seen, valid_seen;
      size_t len = 0;
      for (int p = 0; p < parts; ++p) {
        const std::vector<size_t> t = shard_order(order, {p, parts, true});
        if (p == 0) len = t.size();
        EXPECT_EQ(t.size(), len);  // every rank takes as many steps
        for (size_t i : t) ++train_seen[i];
        for (size_t i : shard_order(order, {p, parts, false})) ++valid_seen[i];
      }
      const size_t padded = (n + size_t(parts) - 1) / size_t(parts) * size_t(parts);
      EXPECT_EQ(len * size_t(parts), padded);
      ASSERT_EQ(train_seen.size(), n);  // every sample, once (the padding repeats the epoch's first ones)
      size_t extra = 0;
      for (const auto& [i, c] : train_seen) extra += size_t(c - 1);
      EXPECT_EQ(extra, padded - n);
      std::map<size_t, int> want;  // each once, and the padding: the epoch's first ones again, in order
      for (size_t k = 0; k < padded; ++k) ++want[order[k % n]];
      EXPECT_EQ(train_seen, want);
      ASSERT_EQ(valid_seen.size(), n);
      for (const auto& [i, c] : valid_seen) EXPECT_EQ(c, 1) << i;  // validation: exactly once
    }
}

TEST(Gloo, AllReduceBroadcastAndBarrierBetweenTwoRanks) {
  const auto got = on_two_ranks([](int r, int port) {
    auto c = dist::make_communicator(env_of(r, 2, port), Device::cpu());
    EXPECT_EQ(c->backend(), "gloo");
    Tensor a = Tensor::from_vector({1.0 + r, 10.0 * r, -3.0}, {3}, DType::Float32);
    c->all_reduce_sum(a, "test all-reduce");
    Tensor b = Tensor::from_vector({0.1 * (r + 1), 1e300}, {2}, DType::Float64);
    c->all_reduce_sum(b, "test all-reduce 64");
    Tensor i = Tensor::from_vector({double(7 + r), double(-r)}, {2}, DType::Int64);
    c->broadcast(i, 1, "test broadcast");
    c->barrier("test barrier");
    return flat({a, b, i});
  });
  for (int r = 0; r < 2; ++r)  // the sums, and rank 1's broadcast
    EXPECT_EQ(got[size_t(r)], (std::vector<double>{3, 10, -6, 0.1 + 0.2, 2e300, 8, -1})) << "rank " << r;
}

TEST(Gloo, AMissingRankIsAnErrorWithinTheTimeout) {
  const auto t0 = Clock::now();
  try {
    (void)dist::make_communicator(env_of(0, 2, free_port(), 2), Device::cpu());  // rank 1 never comes
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("within 2 s"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10.0);
}

// A peer that dies closes its sockets; the rank that writes to one next must
// get an error line, not be killed by SIGPIPE (Gloo's TCP pair writes without
// MSG_NOSIGNAL; ich-launch once reported rank 0 "killed by signal 13" when
// rank 1 was killed). In a child process, SIGPIPE at its default as in a
// fresh ich-train: making the communicator must ignore it, and rank 0's
// all-reduces after rank 1 closed must end in an Error naming rank 0.
TEST(Gloo, APeerThatClosesItsSocketsIsAnErrorNotSigpipe) {
  const int port = free_port();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::signal(SIGPIPE, SIG_DFL);
    int code = 0;
    bool r1_failed = false;  // (rank 1's thread's own; read after it is joined)
    std::thread r1([&] {
      try {
        auto c = dist::make_communicator(env_of(1, 2, port, 5), Device::cpu());
        c->barrier("test barrier");
      } catch (const std::exception&) {
        r1_failed = true;
      }
    });  // rank 1's communicator is destroyed here: its sockets close
    try {
      auto c = dist::make_communicator(env_of(0, 2, port, 5), Device::cpu());
      struct sigaction now {};
      ::sigaction(SIGPIPE, nullptr, &now);
      if (now.sa_handler != SIG_IGN) code = 2;
      c->barrier("test barrier");
      r1.join();
      if (r1_failed && code == 0) code = 3;
      Tensor big = Tensor::zeros({1 << 22}, DType::Float32);  // 16 MB: more than the sockets' buffers
      for (int i = 0; i < 20 && code == 0; ++i) c->all_reduce_sum(big, "test all-reduce");
      if (code == 0) code = 4;  // no error at all
    } catch (const Error& e) {
      if (r1.joinable()) r1.join();
      if (r1_failed && code == 0) code = 3;
      if (code == 0 && std::string(e.what()).find("rank 0 of 2: test all-reduce failed") == std::string::npos) code = 5;
    }
    std::_Exit(code);
  }
  int status = 0;
  const auto t0 = Clock::now();
  while (::waitpid(pid, &status, WNOHANG) != pid) {
    if (Clock::now() - t0 > std::chrono::seconds(60)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "the ranks did not finish within 60 s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(WIFSIGNALED(status)) << "killed by signal " << WTERMSIG(status) << " (" << strsignal(WTERMSIG(status))
                                    << ")";
  const int code = WEXITSTATUS(status);
  EXPECT_NE(code, 2) << "SIGPIPE is not ignored after make_communicator";
  EXPECT_NE(code, 3) << "rank 1 failed before closing";
  EXPECT_NE(code, 4) << "rank 0's all-reduces with a closed peer did not fail";
  EXPECT_NE(code, 5) << "rank 0's error does not name the rank and the operation";
  EXPECT_EQ(code, 0);
}

TEST(Gloo, APortInUseIsOneClearError) {
  const PortHolder held;
  const int port = held.port;
  try {
    dist::TcpStore s("127.0.0.1", port, /*serve=*/true, std::chrono::seconds(2));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MASTER_PORT " + std::to_string(port) + " is in use"), std::string::npos)
        << e.what();
  }
}

// The arithmetic of a data-parallel step, in float64: two ranks (threads
// with Gloo between them) each with one micro-batch, against one process
// with both as accumulated micro-batches; three Adam steps of resnext_mini
// in train mode. The gradients are summed in the same order and scaled alike,
// so the claim is 1e-9 (rounding of a different summation order, were there one).
TEST(DataParallel, TwoRanksMakeTheStepsOfOneProcessAccumulatingTwoFloat64) {
  const std::vector<std::vector<MicroBatch>> steps = random_steps(4, 3);
  auto run = [&](DataParallel& dp, int part) {  // part < 0: both micro-batches
    auto m = mini64();
    Adam opt(m->parameters(), Adam::Options{1e-3});
    std::vector<double> losses;
    for (size_t s = 0; s < steps.size(); ++s) {
      std::vector<MicroBatch> micro = part < 0 ? steps[s] : std::vector<MicroBatch>{steps[s][size_t(part)]};
      const StepResult r = parallel_step(*m, opt, micro, Tensor(), DType::Float32, nullptr, dp, int64_t(s + 1), false);
      EXPECT_TRUE(r.applied);
      losses.push_back(r.loss);
    }
    std::vector<double> w = flat(m->parameters());
    w.insert(w.end(), losses.begin(), losses.end());
    return w;
  };
  DataParallel single(dist::DistEnv{}, 2, Device::cpu());
  const std::vector<double> want = run(single, -1);
  const auto got = on_two_ranks([&](int r, int port) {
    DataParallel dp(env_of(r, 2, port), 1, Device::cpu());
    return run(dp, r);
  });
  for (int r = 0; r < 2; ++r) EXPECT_LE(test::max_rel_error(got[size_t(r)], want), 1e-9) << "rank " << r;
  // and the steps moved the weights (the comparison is not of two starts)
  const std::vector<double> start = flat(mini64()->parameters());
  EXPECT_GT(test::max_rel_error(std::vector<double>(want.begin(), want.begin() + long(start.size())), start), 1e-4);
}

// Two halves of a batch (along N) as one tensor.
Tensor cat0(const Tensor& a, const Tensor& b) {
  std::vector<double> v = a.to_vector();
  const std::vector<double> w = b.to_vector();
  v.insert(v.end(), w.begin(), w.end());
  Shape s = a.shape();
  s[0] += b.size(0);
  return Tensor::from_vector(v, s, a.dtype());
}

// SyncBatchNorm's op: two ranks with half a batch each give, in float64,
// batch norm's output on the whole batch, its running statistics, the
// input's gradient, and (summed over the ranks) gamma's and beta's.
TEST(SyncBatchNorm, TwoHalvesOfABatchGiveBatchNormOfTheWhole) {
  Generator gen(12);
  const int64_t C = 5;
  const Tensor x = test::leaf64({6, C, 3, 4}, gen, 2.0).detach(), w = test::leaf64({6, C, 3, 4}, gen).detach();
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector();
  auto half = [&](const std::vector<double>& v, int r) {
    const size_t n = v.size() / 2;
    return Tensor::from_vector(std::vector<double>(v.begin() + long(r * n), v.begin() + long((r + 1) * n)),
                               {3, C, 3, 4}, DType::Float64);
  };
  auto affine = [&] {
    Generator g(3);
    Tensor gamma = test::leaf64({C}, g), beta = test::leaf64({C}, g);
    return std::pair{gamma, beta};
  };
  // the whole batch, one process
  auto [gamma, beta] = affine();
  Tensor rm = Tensor::zeros({C}, DType::Float64), rv = Tensor::ones({C}, DType::Float64);
  Tensor xl = x.clone();
  xl.set_requires_grad(true);
  sum(mul(batch_norm2d(xl, gamma, beta, rm, rv, true, 0.1, 1e-5), w)).backward();
  const auto got = on_two_ranks([&](int r, int port) {
    auto comm = dist::make_communicator(env_of(r, 2, port), Device::cpu());
    auto [g, b] = affine();
    Tensor m = Tensor::zeros({C}, DType::Float64), v = Tensor::ones({C}, DType::Float64);
    Tensor xr = half(xv, r);
    xr.set_requires_grad(true);
    const StatsReducer reduce = [&](std::vector<double>& s) {
      Tensor t = Tensor::from_vector(s, {int64_t(s.size())}, DType::Float64);
      comm->all_reduce_sum(t, "test statistics");
      s = t.to_vector();
    };
    const Tensor y = sync_batch_norm2d(xr, g, b, m, v, 0.1, 1e-5, reduce);
    sum(mul(y, half(wv, r))).backward();
    Tensor gg = g.grad().clone(), gb = b.grad().clone();
    comm->all_reduce_sum(gg, "gamma's gradient");
    comm->all_reduce_sum(gb, "beta's gradient");
    return flat({y.detach(), xr.grad(), gg, gb, m, v});
  });
  // the whole batch's numbers, laid out as the ranks' (rank 0's half first)
  Tensor rm2 = Tensor::zeros({C}, DType::Float64), rv2 = Tensor::ones({C}, DType::Float64);
  const Tensor y_all = batch_norm2d(x, gamma.detach(), beta.detach(), rm2, rv2, true, 0.1, 1e-5);
  const std::vector<double> yv = y_all.to_vector(), gx = xl.grad().to_vector();
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    std::vector<double> want;
    const size_t n = yv.size() / 2;
    want.insert(want.end(), yv.begin() + long(r * n), yv.begin() + long((r + 1) * n));
    want.insert(want.end(), gx.begin() + long(r * n), gx.begin() + long((r + 1) * n));
    for (const Tensor& t : {gamma.grad(), beta.grad(), rm, rv}) {
      const std::vector<double> e = t.to_vector();
      want.insert(want.end(), e.begin(), e.end());
    }
    EXPECT_LE(test::max_rel_error(got[size_t(r)], want), 1e-10);
  }
}

// The step with --sync-bn: two ranks with a batch of 4 each make, in
// float64, the steps of one process with the batch of 8 they share.
TEST(DataParallel, TwoRanksWithSyncBatchNormMakeTheStepsOfOneProcessWithTheWholeBatch) {
  const std::vector<std::vector<MicroBatch>> halves = random_steps(5, 3);
  auto run = [&](DataParallel& dp, int part) {  // part < 0: the whole batch in one micro-batch
    auto m = mini64();
    if (part >= 0) set_sync_batch_norm(*m, [&dp](std::vector<double>& v) { v = dp.sum(v, "statistics"); });
    Adam opt(m->parameters(), Adam::Options{1e-3});
    for (size_t s = 0; s < halves.size(); ++s) {
      const std::vector<MicroBatch> micro =
          part < 0 ? std::vector<MicroBatch>{{cat0(halves[s][0].x, halves[s][1].x), cat0(halves[s][0].y, halves[s][1].y)}}
                   : std::vector<MicroBatch>{halves[s][size_t(part)]};
      EXPECT_TRUE(parallel_step(*m, opt, micro, Tensor(), DType::Float32, nullptr, dp, int64_t(s + 1), false).applied);
    }
    std::vector<Tensor> state;  // parameters and the running statistics
    for (const auto& [name, t] : m->state_dict()) state.push_back(t);
    return flat(state);
  };
  DataParallel single(dist::DistEnv{}, 1, Device::cpu());
  const std::vector<double> want = run(single, -1);
  const auto got = on_two_ranks([&](int r, int port) {
    DataParallel dp(env_of(r, 2, port), 1, Device::cpu());
    return run(dp, r);
  });
  for (int r = 0; r < 2; ++r) EXPECT_LE(test::max_rel_error(got[size_t(r)], want), 1e-9) << "rank " << r;
}

// The all-reduce overlapped with backward (small buckets, so that there are
// many): every bucket is launched from inside backward, and the steps are
// those of the all-reduce after backward, bit for bit (the same sums).
TEST(DataParallel, OverlappedAllReduceMakesTheSameStepsBitForBit) {
  const std::vector<std::vector<MicroBatch>> steps = random_steps(6, 3);
  std::map<bool, std::vector<std::vector<double>>> got;
  std::vector<DataParallel::OverlapStats> stats(2);
  for (const bool overlap : {false, true})
    got[overlap] = on_two_ranks([&](int r, int port) {
      DataParallel dp(env_of(r, 2, port), 1, Device::cpu());
      dp.set_overlap(overlap);
      dp.set_bucket_bytes(16 << 10);
      auto m = mini64();
      Adam opt(m->parameters(), Adam::Options{1e-3});
      for (size_t s = 0; s < steps.size(); ++s)
        parallel_step(*m, opt, {steps[s][size_t(r)]}, Tensor(), DType::Float32, nullptr, dp, int64_t(s + 1), false);
      if (overlap) stats[size_t(r)] = dp.last_overlap();
      return flat(m->parameters());
    });
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(got[true][size_t(r)] == got[false][size_t(r)]) << "rank " << r;
    EXPECT_GT(stats[size_t(r)].buckets, 10);
    std::printf("rank %d: %lld buckets, %lld all-reduced before backward ended\n", r,
                (long long)stats[size_t(r)].buckets, (long long)stats[size_t(r)].done_during_backward);
  }
}

// ---- ich-launch and ich-train as processes -----------------------------------

const test::PhantomSet& phantom() {
  static const test::PhantomSet set = [] {
    PhantomOptions po;
    po.difficulty = "easy";
    po.patients = 12;
    po.size = 48;
    po.seed = 9;
    return test::make_phantom_set(test::fresh_dir("ich_dist"), po);
  }();
  static const struct Cleanup {  // the folder goes when the tests end
    std::string dir;
    ~Cleanup() { fs::remove_all(dir); }
  } cleanup{fs::path(set.images).parent_path().string()};
  return set;
}

// steps: per epoch (0: whole epochs)
std::string train_args(const std::string& out, int epochs, const std::string& more = "", int steps = 6, int batch = 4) {
  const test::PhantomSet& s = phantom();
  return kBin + "/ich-train --train " + s.train_csv + " --valid " + s.valid_csv + " --images " + s.images +
         " --arch resnext_mini --size 48 --batch " + std::to_string(batch) + " --lr 1e-3 --device cpu --seed 2 --workers 1 --epochs " +
         std::to_string(epochs) + " --max-steps-per-epoch " + std::to_string(steps) + " --out " + out + " " + more;
}
std::string launch(int nproc, int port, const std::string& cmd, int timeout_s = 60) {
  return kBin + "/ich-launch --nproc " + std::to_string(nproc) + " --master-port " + std::to_string(port) +
         " --timeout " + std::to_string(timeout_s) + " -- " + cmd;
}
int sh(const std::string& cmd, const std::string& err_file) {
  const int s = std::system((cmd + " > /dev/null 2> " + err_file).c_str());
  return WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s);
}

std::vector<double> parameters_of(const std::string& ckpt) { return flat(load_checkpoint(ckpt).model->parameters()); }

TEST(IchLaunch, TwoRanksTrainAsOneProcessAccumulatingTwo) {
  const std::string dir = fs::path(phantom().images).parent_path().string();
  // One thread, as each rank gets from ich-launch on 2 cores: results are
  // reproducible per thread count, and these compare the arithmetic of the
  // step, not OpenBLAS's split of a product over threads.
  ASSERT_EQ(sh("OMP_NUM_THREADS=1 " + train_args(dir + "/acc2", 2, "--accumulate 2"), dir + "/acc2.txt"), 0)
      << slurp(dir + "/acc2.txt");
  ASSERT_EQ(sh("OMP_NUM_THREADS=1 " + launch(2, free_port(), train_args(dir + "/ddp2", 2)), dir + "/ddp2.txt"), 0)
      << slurp(dir + "/ddp2.txt");
  const std::vector<double> a = parameters_of(dir + "/acc2/last.ckpt"), d = parameters_of(dir + "/ddp2/last.ckpt");
  ASSERT_EQ(a.size(), d.size());
  EXPECT_LE(test::max_rel_error(d, a), 1e-5);
  // the same training losses, epoch by epoch (log.csv's third column), written once, by rank 0
  auto losses = [](const std::string& log) {
    std::vector<std::string> out;
    for (const auto& r : read_csv(log).rows) out.push_back(r[2]);
    return out;
  };
  EXPECT_EQ(losses(dir + "/ddp2/log.csv"), losses(dir + "/acc2/log.csv"));
  EXPECT_EQ(load_checkpoint(dir + "/ddp2/last.ckpt").meta.world, 2);
  // and a 1-rank run with one micro-batch takes other steps (the test can tell)
  ASSERT_EQ(sh(train_args(dir + "/one", 2), dir + "/one.txt"), 0);
  EXPECT_GT(test::max_rel_error(parameters_of(dir + "/one/last.ckpt"), a), 1e-3);
}

// srun starts the workers itself and tells each its place in SLURM's
// variables (no SLURM here: set by hand, as srun would for two tasks on one
// node): the two tasks train exactly as ich-launch's two ranks do.
TEST(Slurm, TwoTasksStartedAsSrunTrainAsIchLaunchsTwoRanks) {
  const std::string dir = fs::path(phantom().images).parent_path().string();
  const int port = free_port();
  std::string both;
  for (int r = 0; r < 2; ++r)
    both += "env -u WORLD_SIZE -u RANK -u LOCAL_RANK -u MASTER_ADDR OMP_NUM_THREADS=1 SLURM_NTASKS=2 SLURM_PROCID=" +
            std::to_string(r) + " SLURM_LOCALID=" + std::to_string(r) +
            " SLURM_JOB_NODELIST='localhost' SLURM_JOB_ID=4242 MASTER_PORT=" + std::to_string(port) + " " +
            train_args(dir + "/srun2", 2) + " > /dev/null 2>> " + dir + "/srun2.txt & ";
  ASSERT_EQ(sh("(" + both + "wait)", dir + "/srun2.sh.txt"), 0) << slurp(dir + "/srun2.txt");
  ASSERT_EQ(sh("OMP_NUM_THREADS=1 " + launch(2, free_port(), train_args(dir + "/launch2", 2)), dir + "/launch2.txt"), 0)
      << slurp(dir + "/launch2.txt");
  EXPECT_EQ(load_checkpoint(dir + "/srun2/last.ckpt").meta.world, 2);
  EXPECT_EQ(parameters_of(dir + "/srun2/last.ckpt"), parameters_of(dir + "/launch2/last.ckpt"));
}

// The environment as srun sets it, read as torchrun's; torchrun's wins where
// both are set; the node list's first host is rank 0's.
TEST(Slurm, EnvironmentIsReadAsTorchrunsAndTheFirstNodeIsRankZeros) {
  const char* names[] = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS",
                         "SLURM_PROCID", "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_ID"};
  std::vector<std::pair<std::string, std::string>> saved;
  for (const char* n : names)
    if (const char* v = std::getenv(n)) saved.emplace_back(n, v);
  auto clear = [&] {
    for (const char* n : names) ::unsetenv(n);
  };
  clear();
  ::setenv("SLURM_NTASKS", "8", 1);
  ::setenv("SLURM_PROCID", "5", 1);
  ::setenv("SLURM_LOCALID", "1", 1);
  ::setenv("SLURM_JOB_NODELIST", "gpu[07-10],cpu1", 1);
  ::setenv("SLURM_JOB_ID", "123456", 1);
  dist::DistEnv e = dist::env_from_environment();
  EXPECT_EQ(e.world, 8);
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "gpu07");
  EXPECT_EQ(e.master_port, 29500 + 456);
  ::setenv("MASTER_ADDR", "10.0.0.9", 1);
  ::setenv("MASTER_PORT", "31000", 1);
  e = dist::env_from_environment();
  EXPECT_EQ(e.master_addr, "10.0.0.9");
  EXPECT_EQ(e.master_port, 31000);
  ::setenv("WORLD_SIZE", "2", 1);  // torchrun inside an allocation: its variables
  ::setenv("RANK", "1", 1);
  e = dist::env_from_environment();
  EXPECT_EQ(e.world, 2);
  EXPECT_EQ(e.rank, 1);
  clear();
  ::setenv("SLURM_NTASKS", "2", 1);  // no SLURM_PROCID: not started by srun
  EXPECT_THROW(dist::env_from_environment(), Error);
  ::setenv("SLURM_PROCID", "2", 1);  // out of range
  EXPECT_THROW(dist::env_from_environment(), Error);
  clear();
  ::setenv("SLURM_NTASKS", "1", 1);  // one task: one process, no rendezvous
  e = dist::env_from_environment();
  EXPECT_FALSE(e.distributed());
  clear();
  for (const auto& [n, v] : saved) ::setenv(n.c_str(), v.c_str(), 1);
  EXPECT_EQ(dist::first_slurm_host("node001"), "node001");
  EXPECT_EQ(dist::first_slurm_host("a1,a2"), "a1");
  EXPECT_EQ(dist::first_slurm_host("rack-n[005,007-009]"), "rack-n005");
  EXPECT_EQ(dist::first_slurm_host("n[1-2]-ib,m[3-4]"), "n1-ib");
  EXPECT_THROW(dist::first_slurm_host("n[x-y]"), Error);
  EXPECT_THROW(dist::first_slurm_host("n[1-2"), Error);
  EXPECT_THROW(dist::first_slurm_host(""), Error);
}

// --sync-bn as processes: two ranks with batches of 4 see, at their first
// step, the loss of one process with the batch of 8 they share (the same
// images: rank r's batch s is the epoch's samples 8s + 2j + r). Only the
// forward's float32 rounding separates them (the statistics pass through
// each rank's float32 mean and inverse std, as in PyTorch's SyncBatchNorm),
// so 1e-5; later steps drift apart by Adam's amplification of rounding
// (docs/engine.md), which the float64 test above excludes. The flag is in
// the checkpoint and a resume without it is refused.
TEST(IchLaunch, SyncBatchNormOnTwoRanksSeesTheWholeBatch) {
  const std::string dir = fs::path(phantom().images).parent_path().string();
  auto first_loss = [](const std::string& log) { return std::stod(read_csv(log).rows.at(0).at(2)); };
  ASSERT_EQ(sh("OMP_NUM_THREADS=1 " + train_args(dir + "/b8", 1, "", 1, 8), dir + "/b8.txt"), 0)
      << slurp(dir + "/b8.txt");
  ASSERT_EQ(sh(launch(2, free_port(), train_args(dir + "/sb4", 1, "--sync-bn", 1)), dir + "/sb4.txt"), 0)
      << slurp(dir + "/sb4.txt");
  ASSERT_EQ(sh(launch(2, free_port(), train_args(dir + "/pb4", 1, "", 1)), dir + "/pb4.txt"), 0);
  const double whole = first_loss(dir + "/b8/log.csv"), synced = first_loss(dir + "/sb4/log.csv"),
               per_replica = first_loss(dir + "/pb4/log.csv");
  EXPECT_NEAR(synced, whole, 1e-5 * whole);
  EXPECT_GT(std::fabs(per_replica - whole), 1e-4 * whole);  // without --sync-bn the statistics are each rank's
  EXPECT_EQ(load_checkpoint(dir + "/sb4/last.ckpt").meta.sync_bn, 1);
  EXPECT_EQ(sh(launch(2, free_port(), train_args(dir + "/sb4", 2, "--resume " + dir + "/sb4/last.ckpt", 1)),
               dir + "/sb4r.txt"),
            1);
  EXPECT_NE(slurp(dir + "/sb4r.txt").find("trained with --sync-bn"), std::string::npos) << slurp(dir + "/sb4r.txt");
}

TEST(IchLaunch, ResumeOfTwoRanksEqualsAnUninterruptedRun) {
  const std::string dir = fs::path(phantom().images).parent_path().string();
  ASSERT_EQ(sh(launch(2, free_port(), train_args(dir + "/straight", 2)), dir + "/s.txt"), 0) << slurp(dir + "/s.txt");
  ASSERT_EQ(sh(launch(2, free_port(), train_args(dir + "/resumed", 1)), dir + "/r1.txt"), 0) << slurp(dir + "/r1.txt");
  ASSERT_EQ(sh(launch(2, free_port(), train_args(dir + "/resumed", 2, "--resume " + dir + "/resumed/last.ckpt")),
               dir + "/r2.txt"),
            0)
      << slurp(dir + "/r2.txt");
  EXPECT_TRUE(slurp(dir + "/straight/last.ckpt") == slurp(dir + "/resumed/last.ckpt")) << "the checkpoints differ";
  // another world size: one clear line
  EXPECT_EQ(sh(train_args(dir + "/resumed", 2, "--resume " + dir + "/resumed/epoch1.ckpt"), dir + "/r3.txt"), 1);
  EXPECT_NE(slurp(dir + "/r3.txt").find("trained on 2 rank(s) x 1 micro-batch(es) a step, this run has 1 x 1"),
            std::string::npos)
      << slurp(dir + "/r3.txt");
}

// The launcher in the background: its pid, and its workers' pids by rank.
struct Launched {
  pid_t pid = -1;
  std::string err;
};
Launched start(const std::string& cmd, const std::string& err_file) {
  Launched l{::fork(), err_file};
  if (l.pid == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > /dev/null 2> " + err_file).c_str(), (char*)nullptr);
    ::_exit(127);
  }
  return l;
}
std::map<int, pid_t> workers_of(pid_t launcher) {
  std::map<int, pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = slurp(e.path().string() + "/stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    int ppid = 0;
    char state = 0;
    if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) != 2 || ppid != launcher) continue;
    const std::string env = slurp(e.path().string() + "/environ");
    const size_t at = env.find(std::string("\0RANK=", 6));
    if (at != std::string::npos) out[std::atoi(env.c_str() + at + 6)] = pid_t(std::stoi(name));
  }
  return out;
}
// Waits for the process to end, at most `seconds`; its exit code, or -1.
int wait_for(pid_t pid, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}
// Waits until the run has taken some steps (rank 0 reports every 10th batch);
// false when the launcher ended or the time passed.
bool training(const Launched& l, double seconds) {
  const std::string& err_file = l.err;
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    if (::kill(l.pid, 0) != 0) return false;
    int status = 0;
    if (::waitpid(l.pid, &status, WNOHANG) == l.pid) return false;
    if (slurp(err_file).find(" batch ") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST(IchLaunch, AWorkerKilledMidEpochStopsTheOthersWithinTheTimeout) {
  const std::string dir = fs::path(phantom().images).parent_path().string();
  const int timeout = 10;
  Launched l = start(launch(2, free_port(), train_args(dir + "/killed", 1000, "", 0), timeout),
                     dir + "/killed.txt");
  ASSERT_TRUE(training(l, 60)) << slurp(l.err);
  const std::map<int, pid_t> w = workers_of(l.pid);
  ASSERT_EQ(w.size(), 2u);
  const auto t0 = Clock::now();
  ::kill(w.at(1), SIGKILL);
  const int rc = wait_for(l.pid, timeout + 20);
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  if (rc < 0) ::kill(l.pid, SIGKILL), ::kill(w.at(0), SIGKILL);
  ASSERT_GE(rc, 0) << "the launcher did not return within " << timeout + 20 << " s";
  EXPECT_NE(rc, 0);
  const std::string err = slurp(l.err);
  EXPECT_NE(err.find("rank 1 (pid " + std::to_string(w.at(1)) + ") was killed by signal 9"), std::string::npos) << err;
  // rank 0 found out by itself (not killed by the launcher), naming itself and the operation
  EXPECT_NE(err.find("ich-train: error: rank 0 of 2: "), std::string::npos) << err;
  EXPECT_EQ(err.find("still running: killed"), std::string::npos) << err;
  EXPECT_LT(took, timeout + 5.0);
  std::printf("a worker killed: the run stopped %.1f s later (timeout %d s)\n", took, timeout);
}

// A worker that hangs (stopped, its sockets open): the other's next
// collective call times out; the launcher kills the hung one after the
// timeout and its grace, and returns non-zero.
TEST(IchLaunch, AHungWorkerStopsTheOthersWithinTheTimeout) {
  const std::string dir = fs::path(phantom().images).parent_path().string();
  const int timeout = 3;
  Launched l = start(launch(2, free_port(), train_args(dir + "/hung", 1000, "", 0), timeout), dir + "/hung.txt");
  ASSERT_TRUE(training(l, 60)) << slurp(l.err);
  const std::map<int, pid_t> w = workers_of(l.pid);
  ASSERT_EQ(w.size(), 2u);
  ::kill(w.at(1), SIGSTOP);
  const int rc = wait_for(l.pid, timeout + 30);
  if (rc < 0) ::kill(l.pid, SIGKILL), ::kill(w.at(0), SIGKILL), ::kill(w.at(1), SIGKILL);
  ASSERT_GE(rc, 0) << "the launcher did not return";
  EXPECT_NE(rc, 0);
  const std::string err = slurp(l.err);
  EXPECT_NE(err.find("ich-train: error: rank 0 of 2: "), std::string::npos) << err;
  EXPECT_NE(err.find("within 3 s"), std::string::npos) << err;
  EXPECT_NE(err.find("rank 1 (pid " + std::to_string(w.at(1)) + ") still running: killed"), std::string::npos) << err;
}

TEST(IchLaunch, CtrlCStopsEveryWorkerAndLeavesRankZerosCheckpointWhole) {
  const std::string dir = fs::path(phantom().images).parent_path().string();
  Launched l = start(launch(2, free_port(), train_args(dir + "/ctrlc", 1000, "", 0)),
                     dir + "/ctrlc.txt");
  ASSERT_TRUE(training(l, 60)) << slurp(l.err);
  ::kill(l.pid, SIGINT);
  const int rc = wait_for(l.pid, 60);
  ASSERT_EQ(rc, 130) << slurp(l.err);
  const LoadedCheckpoint c = load_checkpoint(dir + "/ctrlc/last.ckpt");  // whole: its CRCs hold
  EXPECT_GT(c.meta.step, 0);
  EXPECT_NE(slurp(l.err).find("interrupted: wrote"), std::string::npos) << slurp(l.err);
}

TEST(IchLaunch, APortInUseIsOneClearLine) {
  const PortHolder held;
  const int port = held.port;
  const std::string dir = fs::path(phantom().images).parent_path().string();
  EXPECT_EQ(sh(launch(2, port, train_args(dir + "/port", 1)), dir + "/port.txt"), 1);
  EXPECT_NE(slurp(dir + "/port.txt").find("--master-port " + std::to_string(port) + " is in use"), std::string::npos)
      << slurp(dir + "/port.txt");
  EXPECT_FALSE(fs::exists(dir + "/port"));  // no worker started
}

}  // namespace
}  // namespace ich
