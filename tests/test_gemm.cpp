// The BLAS-backed gemm against the plain-loop reference, every transpose
// combination, odd sizes, alpha/beta.
#include <gtest/gtest.h>

#include "engine/cpu/gemm.h"
#include "engine/random.h"
#include "tests/test_util.h"

namespace ich {
namespace {

template <class T> void compare(bool ta, bool tb, double tol) {
  Generator gen(3);
  const int64_t M = 13, N = 17, K = 29;
  std::vector<T> A(size_t(M * K)), B(size_t(K * N)), C1(size_t(M * N)), C2;
  for (auto& v : A) v = T(gen.normal());
  for (auto& v : B) v = T(gen.normal());
  for (auto& v : C1) v = T(gen.normal());
  C2 = C1;
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  cpu::gemm<T>(ta, tb, M, N, K, T(0.5), A.data(), lda, B.data(), ldb, T(2), C1.data(), N);
  cpu::gemm_reference<T>(ta, tb, M, N, K, T(0.5), A.data(), lda, B.data(), ldb, T(2), C2.data(), N);
  std::vector<double> a(C1.begin(), C1.end()), b(C2.begin(), C2.end());
  EXPECT_LE(test::max_rel_error(a, b), tol) << "trans_a " << ta << " trans_b " << tb;
}

TEST(Gemm, BlasMatchesReferenceFloat) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) compare<float>(ta, tb, 1e-5);
}
TEST(Gemm, BlasMatchesReferenceDouble) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) compare<double>(ta, tb, 1e-13);
}

}  // namespace
}  // namespace ich
