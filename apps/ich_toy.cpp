// ich-toy: trains the engine's toy conv net (layers/toy.h) on synthetic
// squares-vs-bars images and prints its held-out accuracy. The smallest
// end-to-end run of the engine: a smoke test a new user can read.
#include <cstdio>

#include "apps/app_main.h"
#include "layers/toy.h"

int main(int argc, char** argv) {
  CLI::App app{"Train the toy conv net on synthetic images and print its accuracy"};
  ich::toy::ToyOptions o;
  app.add_option("--steps", o.steps, "Adam steps")->capture_default_str();
  app.add_option("--batch", o.batch, "images per step")->capture_default_str();
  app.add_option("--lr", o.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--seed", o.seed, "seed for weights and data")->capture_default_str();
  return ich::run_app("ich-toy", app, argc, argv, [&] {
    const auto r = ich::toy::train_toy(o, [&](int64_t step, double loss) {
      if (step % 25 == 0 || step + 1 == o.steps) std::printf("step %4lld  loss %.4f\n", (long long)step, loss);
    });
    std::printf("held-out accuracy %.3f on %lld images\n", r.accuracy, (long long)o.eval_images);
    return 0;
  });
}
