#!/usr/bin/env python3
"""Breaks each backward rule and optimizer step in turn and checks that the
tests catch it.

For every mutation below, the script copies the source tree to a scratch
folder, applies one small edit to one backward (a dropped term, a wrong
factor, a wrong index), builds the gradient-check and reference test
binaries, and runs them, stopping at the first suite that fails (the fast
ones first). A mutation that leaves every test green is a hole in the tests;
the script then exits 1. Takes a few minutes on 2 cores. With --full every
suite runs for every mutation, and the script also reports which mutations
the float32 twenty-step training run catches on its own.

    scripts/mutation_check.py [--keep] [--full]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (what is broken, file, exact original text, replacement)
MUTATIONS = [
    ("conv2d backward data", "engine/cpu/conv2d.cpp",
     "gemm_sum_blocked<T>(true, false, g.K, g.P, g.Og, T(1), w_g, g.K, dy_g, g.P, T(0), col.data(), g.P);",
     "gemm_sum_blocked<T>(true, false, g.K, g.P, g.Og, T(0.999), w_g, g.K, dy_g, g.P, T(0), col.data(), g.P);"),
    ("conv2d backward data, 1x1 path", "engine/cpu/conv2d.cpp",
     "gemm_sum_blocked<T>(true, false, g.K, g.P, g.Og, T(1), w_g, g.K, dy_g, g.P, T(0), dx_c, g.P);",
     "gemm_sum_blocked<T>(true, false, g.K, g.P, g.Og, T(0.999), w_g, g.K, dy_g, g.P, T(0), dx_c, g.P);"),
    ("conv2d backward filter", "engine/cpu/conv2d.cpp", "gwp[i] = s;", "gwp[i] = s * T(1.001);"),
    ("conv2d backward data, direct grouped 3x3 (taps not flipped)", "engine/cpu/conv2d_direct.cpp",
     "* 9 + 8 - t];", "* 9 + t];"),
    ("conv2d backward filter, direct grouped 3x3", "engine/cpu/conv2d_direct.cpp",
     "gw_g[o * g.K + k] = total[size_t(k * g.Og + o)];", "gw_g[o * g.K + k] = total[size_t(k * g.Og + o)] * T(1.001);"),
    ("conv2d backward bias", "engine/cpu/conv2d.cpp", "out[o] = T(s);", "out[o] = T(s * 1.001);"),
    ("batchnorm backward dx (mean term)", "engine/cpu/batch_norm.cpp",
     "(M * double(gyp[i]) - sum_dy - xhat * sum_dy_xhat)", "(M * double(gyp[i]) - xhat * sum_dy_xhat)"),
    ("batchnorm backward dx (variance term)", "engine/cpu/batch_norm.cpp",
     "(M * double(gyp[i]) - sum_dy - xhat * sum_dy_xhat)", "(M * double(gyp[i]) - sum_dy)"),
    ("batchnorm backward dx (eval)", "engine/cpu/batch_norm.cpp",
     "gxp[i] = T(k1 * double(gyp[i]));", "gxp[i] = T(double(gyp[i]) * is);"),
    ("batchnorm backward dgamma", "engine/cpu/batch_norm.cpp", "ggp[c] = P(sum_dy_xhat);", "ggp[c] = P(sum_dy);"),
    ("batchnorm backward dbeta", "engine/cpu/batch_norm.cpp", "gbp[c] = P(sum_dy);", "gbp[c] = P(sum_dy * 1.001);"),
    ("relu backward", "engine/cpu/elementwise.cpp",
     "return A(yp[i]) > A(0) ? gi : T(A(0));", "return A(yp[i]) >= A(0) ? gi : T(A(0));"),
    ("sigmoid backward", "engine/cpu/elementwise.cpp",
     "return g[i] * yp[i] * (T(1) - yp[i]);", "return g[i] * yp[i];"),
    ("sum backward", "engine/ops/elementwise.cpp",
     "fill_like_scalar, gy.contiguous(), 1.0, gx);", "fill_like_scalar, gy.contiguous(), 1.001, gx);"),
    ("scale backward", "engine/ops/elementwise.cpp",
     "ICH_DISPATCH(gy.device(), scale_forward, L.in(gy), s, gx);",
     "ICH_DISPATCH(gy.device(), scale_forward, L.in(gy), s * 1.001, gx);"),
    ("mul backward", "engine/ops/elementwise.cpp",
     "ICH_DISPATCH(gy.device(), mul_forward, gy, bs, ga);", "ICH_DISPATCH(gy.device(), mul_forward, gy, as, ga);"),
    ("add backward", "engine/ops/elementwise.cpp",
     "return std::vector<Tensor>{gy, gy.contiguous(fb)};", "return std::vector<Tensor>{gy, Tensor()};"),
    ("max pool backward (overlapping windows)", "engine/cpu/pool.cpp",
     "if (a >= 0) dx[a] += A(g[plane * HWo + q]);", "if (a >= 0) dx[a] = A(g[plane * HWo + q]);"),
    ("adaptive avg pool backward", "engine/cpu/pool.cpp",
     "/ double((h1 - h0) * (w1 - w0)));\n            for (int64_t ih", "/ double((h1 - h0) * (w1 - w0) + 1));\n            for (int64_t ih"),
    ("linear backward input", "engine/cpu/linear.cpp",
     "gemm<T>(false, false, N, in, out, T(1),", "gemm<T>(false, false, N, in, out, T(1.001),"),
    ("linear backward weight", "engine/cpu/linear.cpp",
     "gemm<T>(true, false, out, in, N, T(1),", "gemm<T>(true, false, out, in, N, T(1.001),"),
    ("linear backward bias", "engine/cpu/linear.cpp", "bp[o] = T(s);", "bp[o] = T(s * 1.001);"),
    ("bce backward (pos_weight)", "engine/cpu/loss.cpp",
     "out[i] = T(g * v * ((1.0 - t) - (1.0 + (w - 1.0) * t) * sig_neg));",
     "out[i] = T(g * v * ((1.0 - t) - (1.0 + w * t) * sig_neg));"),
    ("fused batch norm + ReLU: residual gradient", "engine/ops/batch_norm.cpp",
     "need[3] ? gz.contiguous(fr) : Tensor()", "need[3] ? gy.contiguous(fr) : Tensor()"),
    ("fused batch norm + ReLU: the mask", "engine/ops/batch_norm.cpp",
     "ICH_DISPATCH(gy.device(), relu_backward, gy, y_saved, gz);", "gz = gy;"),
    ("autograd: joined branches add", "engine/autograd.cpp",
     "it->second = sum_of(it->second, gi);", "it->second = gi;"),
    ("autograd: leaf gradients accumulate", "engine/autograd.cpp",
     "ICH_DISPATCH(acc.device(), add_inplace, acc, L.in(g));", "acc.copy_(L.in(g));"),
    ("lstm backward (forget gate)", "engine/cpu/rnn.cpp",
     "d[H + j] = dct * cpt[q] * f * (T(1) - f);", "d[H + j] = dct * f * (T(1) - f);"),
    ("lstm backward (cell state through time)", "engine/cpu/rnn.cpp", "dcp[q] = dct * f;", "dcp[q] = dct;"),
    ("gru backward (reset gate into the hidden projection)", "engine/cpu/rnn.cpp",
     "y[2 * H + j] = dan * r;", "y[2 * H + j] = dan;"),
    ("gru backward (state through the update gate)", "engine/cpu/rnn.cpp", "dhp[q] = dht * z;", "dhp[q] = dht;"),
    ("rnn backward through time (the recurrent product)", "engine/ops/rnn.cpp",
     "ICH_DISPATCH(dev, add_inplace, dh, back);", "(void)back;"),
    ("select_rows backward", "engine/cpu/rnn.cpp",
     "std::copy(g + m * C, g + (m + 1) * C, out + r[m] * C);", "std::copy(g + m * C, g + (m + 1) * C, out + m * C);"),
    ("adam: first moment", "engine/cpu/optim.cpp",
     "m[i] = m[i] * b1 + gi * one_minus_b1;", "m[i] = m[i] * b1 + gi;"),
    ("adam: second moment's bias correction", "engine/cpu/optim.cpp",
     "bc2_sqrt = T(std::sqrt(bc2));", "bc2_sqrt = T(1);"),
    ("adam: 1-b2 formed in float32 (an accuracy loss, not a wrong rule)", "engine/cpu/optim.cpp",
     "one_minus_b2 = T(1.0 - a.beta2);", "one_minus_b2 = T(1) - b2;"),
]
TESTS = ["test_gradcheck", "test_reference_ops", "test_autograd", "test_optim", "test_train_reference",
         "test_float32_accuracy", "test_rnn"]
# Executables the suites run (test_rnn converts a PyTorch state_dict).
TOOLS = ["ich-convert"]
# Reference data these suites read from the build folder (ctest makes it as
# fixtures; here it is made once, before the first build).
GENERATORS = [("tests/reference/gen_train_reference.py", "train_ref"),
              ("tests/reference/gen_accuracy_reference.py", "accuracy_ref"),
              ("tests/reference/gen_rnn_reference.py", "rnn_ref")]
# Reported apart: whether the float32 training run alone catches a mutation
# (an optimizer with scale-free updates cannot see a gradient off by 0.1%;
# the gradient checks and the float64 run do).
FLOAT32_RUN = "TrainReference.TwentyStepsFloat32AsAccurateAsPyTorch"
TORCH_PYTHON = "/usr/bin/python3"  # Debian's, with PyTorch (docs: GUIDE, reference tools)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--full", action="store_true", help="run every suite for every mutation")
    args = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="ich_mutation_")
    src = os.path.join(scratch, "src")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns("build*", ".git"))
    build = os.path.join(scratch, "build")
    subprocess.run(["cmake", "-S", src, "-B", build, "-G", "Ninja", "-DICH_ENABLE_CUDA=OFF"], check=True,
                   stdout=subprocess.DEVNULL)
    env = dict(os.environ)  # one suite at a time: OpenMP's default wait (a passive one made them 3-4x slower)
    for script, folder in GENERATORS:
        subprocess.run([TORCH_PYTHON, os.path.join(src, script), "--out", os.path.join(build, folder)], check=True,
                       stdout=subprocess.DEVNULL)

    spent = {"build": 0.0, "tests": 0.0}
    suite_time = {t: 0.0 for t in TESTS}

    def build_and_test(full):
        """The suites that fail (only the first, unless full), and the float32 twenty-step test's verdict."""
        t0 = time.time()
        subprocess.run(["cmake", "--build", build, "--target", *TESTS, *TOOLS], check=True, stdout=subprocess.DEVNULL)
        t1 = time.time()
        spent["build"] += t1 - t0
        failing, f32 = [], False
        for t in sorted(TESTS, key=suite_time.get):  # the fastest first (timed by the unmutated run)
            t_start = time.time()
            r = subprocess.run([os.path.join(build, "bin", t), "--gtest_brief=1"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
            if full:
                suite_time[t] = time.time() - t_start
            if r.returncode:
                failing.append(t)
                f32 |= "[  FAILED  ] " + FLOAT32_RUN in r.stdout
                if not full:
                    break
        spent["tests"] += time.time() - t1
        return failing, f32

    assert build_and_test(True) == ([], False), "tests fail before any mutation"
    survivors, by_float32 = [], 0
    for what, rel, old, new in MUTATIONS:
        path = os.path.join(src, rel)
        text = open(path).read()
        assert text.count(old) >= 1, f"mutation '{what}': text not found in {rel}"
        open(path, "w").write(text.replace(old, new))
        try:
            failing, f32 = build_and_test(args.full)
        finally:
            open(path, "w").write(text)
        by_float32 += f32
        print(f"{'caught' if failing else 'MISSED'}  {what:45s} {'float32-run ' if f32 else ''}{' '.join(failing)}",
              flush=True)
        if not failing:
            survivors.append(what)
    if not args.keep:
        shutil.rmtree(scratch)
    print("suites, unmutated: " + ", ".join(f"{t} {suite_time[t]:.0f} s" for t in TESTS))
    print(f"time: building {spent['build']:.0f} s, running the suites {spent['tests']:.0f} s")
    print(f"{len(MUTATIONS) - len(survivors)} of {len(MUTATIONS)} broken rules caught" +
          (f" ({by_float32} of them by the float32 training run alone)" if args.full else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
