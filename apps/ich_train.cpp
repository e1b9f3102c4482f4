// ich-train: fine-tune a ResNeXt on windowed slices (train/trainer.h).
#include <cstdio>

#include "apps/app_main.h"
#include "train/trainer.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Train a ResNeXt with six sigmoid outputs (five subtypes and any), BCE with logits and Adam, as the seed.\n"
      "Writes RUN/log.csv, RUN/epoch<N>.ckpt, RUN/last.ckpt, RUN/best.ckpt (lowest validation loss), atomically.\n"
      "Ctrl-C writes RUN/last.ckpt and exits; --resume RUN/last.ckpt continues exactly where it stopped.\n"
      "Exit codes: 0 done, 1 failed (bad input, NaN loss: the line says which), 2 bad flags, 130 interrupted.\n"
      "Data-parallel: started by ich-launch (or with torchrun's RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, "
      "LOCAL_RANK), each rank trains on its shard of every epoch, gradients averaged (Gloo on CPUs, NCCL on GPUs); "
      "rank 0 writes the run folder."};
  ich::TrainOptions o;
  app.add_option("--train", o.train_csv, "train.csv from ich-split")->required();
  app.add_option("--valid", o.valid_csv, "valid.csv from ich-split")->required();
  app.add_option("--images", o.images, "folder of .npy images from ich-window")->required();
  app.add_option("--out", o.out, "run folder (created)")->required();
  app.add_option("--arch", o.arch, "resnext101_32x8d, resnext50_32x4d, resnet50 or resnext_mini")->capture_default_str();
  app.add_option("--weights", o.weights,
                 "pretrained backbone, an ich weights file of the same architecture (e.g. the WSL checkpoint "
                 "converted by ich-convert); its head is replaced by 6 outputs. Default: random initialisation");
  app.add_option("--epochs", o.epochs, "epochs")->capture_default_str();
  app.add_option("--batch", o.batch, "images per step")->capture_default_str();
  app.add_option("--lr", o.lr, "Adam learning rate (the seed: 2e-5 from pretrained weights)")->capture_default_str();
  app.add_option("--lr-schedule", o.lr_schedule,
                 "constant, or cosine: lr * (1 + cos(pi * epoch / epochs)) / 2 for each epoch (steadier last epochs)")
      ->check(CLI::IsMember({"constant", "cosine"}))
      ->capture_default_str();
  app.add_option("--context", o.context,
                 "K neighbouring slices a side as extra input channels (slices s-K..s+K of the series, ordered by "
                 "the geometry in the images' meta.csv; the ends repeat the edge slice); conv1 is widened so that "
                 "--weights start as the single-slice model")
      ->capture_default_str()
      ->check(CLI::Range(0, 8));
  app.add_option("--size", o.size, "input size (images are resized to SIZE x SIZE)")->capture_default_str();
  app.add_option("--pos-weight", o.pos_weight, "none, or auto: weigh each label's positives by negatives/positives")
      ->capture_default_str();
  app.add_option("--head-bias", o.head_bias,
                 "the new head's bias: prior (the logit of each label's training frequency, so the untrained model "
                 "predicts the prior) or zero")
      ->capture_default_str()->check(CLI::IsMember({"prior", "zero"}));
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  app.add_option("--precision", o.precision,
                 "fp32, or mixed precision: bf16, or fp16 with loss scaling (convolutions in 16 bits, float32 master "
                 "weights, optimizer and batch-norm statistics; on the CPU only emulated, for checking numerics)")
      ->capture_default_str();
  app.add_flag("--channels-last", o.channels_last,
               "activations in channels-last layout (N,H,W,C), as cuDNN's tensor-core kernels prefer; for GPUs");
  app.add_flag("--tf32", o.tf32,
               "float32 convolutions on TF32 tensor cores (10-bit mantissa products, float32 sums), as PyTorch "
               "runs them by default; off: strict float32, comparable with the CPU");
  app.add_flag("--cuda-graph", o.cuda_graph,
               "capture the training step as a CUDA graph after 3 eager steps and replay it (one launch per step "
               "instead of thousands); fixed shapes; fp16's loss scaler then works on the device; on the CPU only "
               "emulated, to check that the step is capturable");
  app.add_option("--accumulate", o.accumulate,
                 "micro-batches of --batch per optimizer step, gradients averaged (batch norm per micro-batch): a "
                 "larger step on a small GPU, and the single-process twin of as many ranks (ich-launch)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_flag("--sync-bn", o.sync_bn,
               "with several ranks: batch norm normalises by the statistics of every rank's batch together "
               "(PyTorch's SyncBatchNorm; default: each rank's own, as DDP)");
  app.add_option("--resume", o.resume, "checkpoint to continue from (same size, batch and seed); when it is not written yet, the newest epoch<N>.ckpt in --out, or a fresh start when there is none (one command line for a retry loop)");
  app.add_option("--seed", o.seed, "seed of the initialisation, data order and augmentation")->capture_default_str();
  app.add_option("--workers", o.workers, "data loading threads")->capture_default_str();
  app.add_option("--max-steps-per-epoch", o.max_steps_per_epoch, "stop each epoch after this many steps (0: all)")
      ->capture_default_str();
  bool no_augment = false;
  app.add_flag("--no-augment", no_augment, "no flips, shift-scale-rotate or brightness/contrast");
  app.add_flag("--transpose", o.transpose,
               "also transpose half of the slices (all eight flips and quarter turns: for --tta flip+transpose)");
  return ich::run_app("ich-train", app, argc, argv, [&] {
    o.augment = !no_augment;
    o.dist = ich::dist::env_from_environment();  // RANK, WORLD_SIZE, ... from ich-launch, torchrun or a scheduler
    return ich::train(o, [](const std::string& s) {
      std::fprintf(stderr, "%s\n", s.c_str());
      std::fflush(stderr);
    });
  });
}
