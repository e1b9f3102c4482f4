#include "engine/dist/launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "engine/dist/store.h"
#include "engine/error.h"

namespace ich::dist {

namespace {

std::atomic<int> g_signals{0};
void on_signal(int) { g_signals.fetch_add(1); }

using Clock = std::chrono::steady_clock;

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int s = WTERMSIG(status);
    const char* name = ::strsignal(s);
    return "was killed by signal " + std::to_string(s) + " (" + (name ? name : "?") + ")";
  }
  return "stopped (status " + std::to_string(status) + ")";
}
int code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int launch(const LaunchOptions& o) {
  ICH_CHECK(o.nproc >= 1 && o.nnodes >= 1 && o.node_rank >= 0 && o.node_rank < o.nnodes,
            "--nproc ", o.nproc, ", --nnodes ", o.nnodes, ", --node-rank ", o.node_rank, ": need nproc, nnodes >= 1 and "
            "0 <= node-rank < nnodes");
  ICH_CHECK(!o.command.empty(), "no command after '--' (e.g. ich-launch --nproc 2 -- ich-train ...)");
  ICH_CHECK(o.master_port > 0 && o.master_port < 65536, "--master-port ", o.master_port, ": 1 to 65535");
  // Rank 0's store will listen on the port: say so now, before any worker starts.
  if (o.node_rank == 0)
    ICH_CHECK(!port_in_use(o.master_port), "--master-port ", o.master_port,
              " is in use on this machine (another run, or another program): pick another");
  const int world = o.nnodes * o.nproc;
  const std::string threads = std::to_string(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN) / o.nproc));

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  std::vector<pid_t> pids(size_t(o.nproc), -1);
  std::vector<bool> running(size_t(o.nproc), false);
  for (int i = 0; i < o.nproc; ++i) {
    const int rank = o.node_rank * o.nproc + i;
    const pid_t pid = ::fork();
    ICH_CHECK(pid >= 0, "fork(): ", std::strerror(errno));
    if (pid == 0) {
      ::sigaction(SIGINT, &old_int, nullptr);
      ::sigaction(SIGTERM, &old_term, nullptr);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(i).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      ::setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(o.master_port).c_str(), 1);
      ::setenv("ICH_DIST_TIMEOUT", std::to_string(o.timeout_s).c_str(), 1);
      ::setenv("OMP_NUM_THREADS", threads.c_str(), 0);  // not when the user set it
      std::vector<char*> argv;
      for (const std::string& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "ich-launch: rank %d: cannot run '%s': %s\n", rank, argv[0], std::strerror(errno));
      ::_exit(127);
    }
    pids[size_t(i)] = pid;
    running[size_t(i)] = true;
  }
  std::fprintf(stderr, "ich-launch: %d worker(s) started on node %d of %d (ranks %d-%d of %d), master %s:%d\n", o.nproc,
               o.node_rank, o.nnodes, o.node_rank * o.nproc, o.node_rank * o.nproc + o.nproc - 1, world,
               o.master_addr.c_str(), o.master_port);

  int result = 0, left = o.nproc, seen_signals = 0;
  bool failed = false;
  Clock::time_point kill_at = Clock::time_point::max();
  auto signal_all = [&](int sig) {
    for (int i = 0; i < o.nproc; ++i)
      if (running[size_t(i)]) ::kill(pids[size_t(i)], sig);
  };
  while (left > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int i = 0; i < o.nproc; ++i) {
        if (pids[size_t(i)] != pid) continue;
        running[size_t(i)] = false;
        --left;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && !(seen_signals > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 130)) {
          std::fprintf(stderr, "ich-launch: rank %d (pid %d) %s\n", o.node_rank * o.nproc + i, int(pid),
                       describe(status).c_str());
          if (!failed && seen_signals == 0) {
            failed = true;
            result = code_of(status);
            if (result == 0) result = 1;
            // The others should fail their next collective call within the timeout.
            kill_at = Clock::now() + std::chrono::seconds(o.timeout_s + 10);
          }
        }
      }
      continue;
    }
    const int s = g_signals.load();
    if (s > seen_signals) {
      if (seen_signals == 0) {
        std::fprintf(stderr, "ich-launch: interrupted: asking every worker to stop after its step (again: kill)\n");
        signal_all(SIGINT);
        if (result == 0) result = 130;
        kill_at = std::min(kill_at, Clock::now() + std::chrono::seconds(o.timeout_s));
      } else {
        kill_at = Clock::now();
      }
      seen_signals = s;
    }
    if (Clock::now() >= kill_at) {
      for (int i = 0; i < o.nproc; ++i)
        if (running[size_t(i)])
          std::fprintf(stderr, "ich-launch: rank %d (pid %d) still running: killed\n", o.node_rank * o.nproc + i,
                       int(pids[size_t(i)]));
      signal_all(SIGKILL);
      kill_at = Clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace ich::dist
