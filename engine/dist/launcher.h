// launcher.h: ich-launch, torchrun's job for ich: start the workers of one
// machine with the environment a data-parallel ich-train reads, watch them,
// and stop them all when one fails or the user presses Ctrl-C.
//
// Worker i of node r gets RANK = r x nproc + i, LOCAL_RANK = i, WORLD_SIZE =
// nnodes x nproc, LOCAL_WORLD_SIZE = nproc, MASTER_ADDR, MASTER_PORT,
// ICH_DIST_TIMEOUT, and (unless set) OMP_NUM_THREADS = cores / nproc, as
// torchrun limits threads so that workers do not oversubscribe the cores.
//
// A worker that exits non-zero or dies by a signal is reported in one line
// naming its rank; the others are expected to notice within the timeout
// (their collective calls fail) and are killed when they have not stopped
// by then. Ctrl-C (SIGINT) or SIGTERM is passed on to every worker as
// SIGINT, so ich-train finishes its step and rank 0 writes last.ckpt; a
// second Ctrl-C, or the timeout, kills them.
#pragma once
#include <string>
#include <vector>

namespace ich::dist {

struct LaunchOptions {
  int nproc = 1, nnodes = 1, node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int timeout_s = 300;
  std::vector<std::string> command;
};

// Returns 0 when every worker succeeded; else the first failure's exit code
// (128 + signal for a killed worker, 130 after Ctrl-C).
int launch(const LaunchOptions& o);

}  // namespace ich::dist
