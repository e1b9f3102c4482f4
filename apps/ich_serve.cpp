// ich-serve: a DICOM node that triages head CT studies as they arrive and
// sends the results back to the PACS (serve/server.h, docs/serve.md).
#include <dcmtk/config/osconfig.h>
#include <dcmtk/oflog/oflog.h>

#include <csignal>

#include "apps/app_main.h"
#include "serve/server.h"

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "A DICOM storage SCP (C-ECHO; C-STORE of CT and Enhanced CT) that triages head CT studies for intracranial\n"
      "hemorrhage. Instances are stored under --work as they arrive, grouped by study; a study with no new instance\n"
      "for --stable-seconds is processed (windowing, the slice model, the series model when given) and its results\n"
      "go back into the study with C-STORE to the destination: a Comprehensive SR (finding, probabilities, key\n"
      "slices) and Secondary Capture key images (Grad-CAM), and one line per study in WORK/results.jsonl.\n"
      "Killed at any moment, a restart on the same --work goes on where each study was; results are sent once.\n"
      "Stops on SIGINT/SIGTERM after the studies in hand. Exit codes: 0 stopped by a signal, 1 failed (bad\n"
      "checkpoint, busy port, unusable --work), 2 bad flags."};
  ich::ServeOptions o;
  app.add_option("--aet", o.aet, "this node's AE title")->capture_default_str();
  app.add_option("--port", o.port, "TCP port to listen on")->capture_default_str()->check(CLI::Range(1, 65535));
  app.add_option("--checkpoint", o.checkpoint, "slice model from ich-train")->required();
  app.add_option("--sequence", o.sequence, "series model(s) from ich-train-seq on this CNN's embeddings (averaged)");
  app.add_option("--work", o.work, "folder for received studies, their state and results (results.jsonl)")->required();
  app.add_option("--dest-aet", o.dest.aet, "AE title of the destination (the PACS)")->required();
  app.add_option("--dest-host", o.dest.host, "host of the destination")->required();
  app.add_option("--dest-port", o.dest.port, "port of the destination")->required()->check(CLI::Range(1, 65535));
  app.add_option("--stable-seconds", o.stable_seconds, "a study is complete after this long without a new instance")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--threshold", o.threshold, "p(any) at or above which the SR says hemorrhage present")->capture_default_str();
  app.add_option("--key-images", o.key_images, "key images per study (the highest p(any))")->capture_default_str();
  app.add_option("--workers", o.workers, "studies processed at once, in arrival order (each worker loads its own copy of the models)")->capture_default_str();
  app.add_option("--max-pending", o.max_pending,
                 "studies received but not yet processed at which new associations are refused (rejected-transient)")
      ->capture_default_str();
  app.add_option("--max-associations", o.max_associations, "associations served at once")->capture_default_str();
  app.add_option("--min-free-mb", o.min_free_mb, "free space in --work below which instances are refused")->capture_default_str();
  app.add_option("--retry-max-seconds", o.retry_max_seconds,
                 "longest wait between two tries to send to a destination that is down (the first is 2 s, doubling)")
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or auto")->capture_default_str();
  app.add_option("--batch", o.batch, "slices per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  return ich::run_app("ich-serve", app, argc, argv, [&] {
    o.dest.calling_aet = o.aet;
    OFLog::configure(OFLogger::WARN_LOG_LEVEL);  // DCMTK's per-message lines off; ours name each study
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    ich::run_server(o, g_stop);
    return 0;
  });
}
