// ich-train-seq: the sequence model over each series' slice embeddings
// (seq/train_seq.h).
#include <cstdio>

#include "apps/app_main.h"
#include "seq/train_seq.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Train a bidirectional LSTM or GRU over the slices of each series, on the embeddings of ich-embed, with the\n"
      "competition's loss (any x2). Writes RUN/log.csv, RUN/last.ckpt, RUN/best.ckpt (lowest validation weighted\n"
      "log loss), atomically; --resume continues RUN/last.ckpt at the next epoch.\n"
      "Exit codes: 0 done, 1 failed (bad input, NaN loss: the line says which), 2 bad flags."};
  ich::SeqTrainOptions o;
  app.add_option("--train", o.train_csv, "train.csv from ich-split (labels)")->required();
  app.add_option("--valid", o.valid_csv, "valid.csv from ich-split (labels)")->required();
  app.add_option("--embeddings", o.embeddings, "folder from ich-embed holding both splits' slices")->required();
  app.add_option("--out", o.out, "run folder (created)")->required();
  app.add_option("--cell", o.cell, "lstm or gru")->check(CLI::IsMember({"lstm", "gru"}))->capture_default_str();
  app.add_option("--layers", o.layers, "recurrent layers")->capture_default_str();
  app.add_option("--hidden", o.hidden, "hidden units per direction")->capture_default_str();
  app.add_option("--epochs", o.epochs, "epochs")->capture_default_str();
  app.add_option("--batch", o.batch, "series per step")->capture_default_str();
  app.add_option("--lr", o.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--input-dropout", o.input_dropout,
                 "training only: zero each input value with this probability (the embeddings of the training "
                 "slices come from a CNN that saw them, and are cleaner than new slices' embeddings)")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed (initialisation and the order of the series)")->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  app.add_flag("--resume", o.resume, "continue RUN/last.ckpt (same flags); a fresh start when there is none yet (one command line for a retry loop)");
  return ich::run_app("ich-train-seq", app, argc, argv, [&] {
    return ich::train_sequence(o, [](const std::string& s) { std::printf("%s\n", s.c_str()); std::fflush(stdout); });
  });
}
