// op_cases.h: the op table. Every case the op tests check, in one list, as
// PyTorch's OpInfo: the op with its parameters fixed, its inputs, and which
// checks it takes part in. The suites iterate it:
//
//   kGradcheck  tests/test_gradcheck.cpp         float64, analytic backward
//                                                against central differences
//   kReference  tests/test_reference_ops.cpp     float32 against PyTorch 1.13
//                                                (tests/fixtures/ops.ichw)
//   kAccuracy   tests/test_float32_accuracy.cpp  float32 against float64 and
//                                                beside PyTorch's float32
//   kCuda       tests/test_cuda.cpp              the GPU against the CPU on
//                                                the same float32 inputs
//   kHalf       tests/test_activations16.cpp     bfloat16 and float16 against
//                                                float64 on the same values,
//                                                by the case's rounding rules
//
// A case's name is "<op>/<case>", <op> the file engine/ops/<op>.cpp (so
// scripts/check_layout.py --ops finds every op's rows). Generated inputs
// (gradcheck, CUDA) come from the case's seed, in the order listed; the
// fixture suites read each input by its name under the case's fixture
// prefix. What does not fit one op on one set of inputs stays a test of its
// own beside the table: several steps of batch norm's running statistics,
// the fused op against the separate ops bit for bit, ReLU and NaN, a
// residual block, the optimizers, the 16-bit rounding claims (each op's
// claim differs: exact, rounded once, rounded once of a sum: the kHalf rows
// say which, result by result).
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops.h"
#include "engine/random.h"

namespace ich::test {

enum OpCheck : unsigned { kGradcheck = 1, kReference = 2, kAccuracy = 4, kCuda = 8, kHalf = 16 };

// One input of a case.
struct OpInput {
  enum Kind { Normal, Uniform, Binary, Fixed, Bytes };
  std::string name;  // the fixtures' name: a, b, c... (bce: x, target, pos_weight; batch norm: rm0, rv0)
  Shape shape;       // generated inputs' shape
  Kind kind = Normal;
  double p = 1, q = 0;          // Normal: standard deviation p, mean q; Uniform: [p, q); Binary: 1 with probability p
  std::vector<double> values;   // Fixed: the values (one value: every element)
  bool grad = true;             // differentiated (and its gradient compared)
  bool optional = false;        // a fixture may lack it (then undefined)
};

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// What a 16-bit result must be against the float64 op on the same values:
// equal (exact), or that value rounded once to the format, plus 2^-18 of
// `factor` times the largest |value| of what it was computed from
// (float32's arithmetic inside the op): input `of` or, with kOfGy, the
// incoming gradient (tests/test_activations16.cpp explains the bound).
struct HalfRule {
  static constexpr int kNone = -1, kOfGy = -2;
  std::string result;  // "y" or "g_<input>"
  bool exact = false;
  double factor = 0;
  int of = kNone;
};

struct OpCase {
  std::string name;  // "<op>/<case>"
  unsigned checks = 0;
  std::vector<OpInput> inputs;
  OpFn op;
  uint64_t seed = 1;
  std::string fixture;         // the prefix in the fixture file ("" = name)
  std::vector<double> params;  // what the fixture's "params" must hold (empty: not checked)
  // Inputs updated in place and compared after the call as results, as
  // {result name, input index} (batch norm's running statistics).
  std::vector<std::pair<std::string, size_t>> state;
  // kAccuracy: for each result ("y", "g_a", ...) the number of products its
  // elements sum, for the rounding bound of a sum (none: not a sum).
  std::function<std::vector<std::pair<std::string, int64_t>>(const std::vector<Tensor>& in, const Tensor& y)> sum_terms;

  std::vector<HalfRule> half;  // kHalf: the rule of each result

  const std::string& prefix() const { return fixture.empty() ? name : fixture; }
};

const std::vector<OpCase>& op_cases();
std::vector<OpCase> op_cases_with(unsigned check);

// The case's inputs generated in dtype on the CPU (Bytes stay uint8), leaves
// requiring grad where the input is differentiated.
std::vector<Tensor> generate_inputs(const OpCase& c, DType dt);

inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }
// gtest's parameter name: the case's name with '/' as '_'.
std::string op_case_test_name(const ::testing::TestParamInfo<OpCase>& i);

}  // namespace ich::test
