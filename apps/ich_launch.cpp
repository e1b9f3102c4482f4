// ich-launch: start the data-parallel workers of one machine (engine/dist/launcher.h).
#include "apps/app_main.h"
#include "engine/dist/launcher.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Start N workers of a data-parallel run on this machine with torchrun's environment (RANK, LOCAL_RANK, "
      "WORLD_SIZE, MASTER_ADDR, MASTER_PORT), e.g.\n"
      "  ich-launch --nproc 2 -- ich-train --train ... --out run\n"
      "On two machines: the same command on each, with --nnodes 2 --node-rank 0|1 --master-addr <first machine>.\n"
      "A worker that fails stops the run (the others within --timeout); Ctrl-C stops every worker after its step.\n"
      "Exit codes: 0 all workers succeeded, else the first failure's (128 + signal for a killed worker), 130 "
      "interrupted, 1 the launch itself failed, 2 bad flags."};
  ich::dist::LaunchOptions o;
  app.add_option("--nproc", o.nproc, "workers on this machine (one per GPU, or CPU processes)")->capture_default_str();
  app.add_option("--nnodes", o.nnodes, "machines in the run")->capture_default_str();
  app.add_option("--node-rank", o.node_rank, "this machine's number, 0 to nnodes - 1")->capture_default_str();
  app.add_option("--master-addr", o.master_addr, "address of node 0, where rank 0 serves the rendezvous")
      ->capture_default_str();
  app.add_option("--master-port", o.master_port, "a free TCP port on node 0")->capture_default_str();
  app.add_option("--timeout", o.timeout_s,
                 "seconds a collective call may wait for the other ranks (ICH_DIST_TIMEOUT) before the run stops")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  app.add_option("command", o.command, "the worker's command line, after --")->required();
  return ich::run_app("ich-launch", app, argc, argv, [&] { return ich::dist::launch(o); });
}
