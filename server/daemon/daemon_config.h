// yolod's settings: flags over a YAML file over the defaults.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace yolo {

struct DaemonConfig {
  std::string listen = "127.0.0.1:50051";  // port 0 picks a free one, written to yolod.addr
  std::string state_dir;                   // default: $XDG_STATE_HOME/yolod
  int max_running_per_device = 1;
  int worker_nice = 10;             // workers' niceness, 0..19: below yolod's
  std::string log_level = "info";   // trace, debug, info, warn, error
  std::string log_format = "text";  // text or json (one object per line)
  std::string worker;               // yolo-worker; default: beside yolod
  std::string tls_cert, tls_key;    // PEM files
  std::string token_file;           // one line: the bearer token
  bool open_reads = false;          // with a token: read-only calls need none
  // /metrics and the status page; port 0 picks a free one (written to metrics.addr); "off"
  // serves none. Off loopback, the same TLS and token as gRPC.
  std::string metrics_listen = "127.0.0.1:9464";
  bool metrics_open = false;               // with a token: /metrics needs none (loopback only)
  std::vector<std::string> allowed_roots;  // data and weights must lie under these
  // The memory watchdog.
  std::string ram_levels = "70,80,90";  // notice, warning, danger: percent of the RAM limit
  std::string gpu_levels = "80,90,95";  // of each GPU's memory
  double watchdog_interval = 1;         // seconds between samples
  double memory_log_interval = 5;       // seconds between the samples of experiments' memory logs
  double danger_grace = 30;             // seconds of danger before the newest run stops; 0 never
  double psi_full_limit = 20;           // PSI full avg10 (percent) that raises RAM's level; 0 off
  int oom_retries = 2;                  // resumes at half the batch after a worker's OOM
  bool enable_fault_injection = false;  // specs may use fault_leak_mb and fault_oom_epoch
};

// The YAML file uses the flags' names with underscores (state_dir: /var/lib/yolod). Unknown keys
// and bad values are errors naming the file and key.
absl::Status LoadDaemonConfigFile(const std::string& path, DaemonConfig* config);

// Fills in defaults and checks the whole: a non-loopback address needs TLS and a token.
absl::Status FinishDaemonConfig(DaemonConfig* config);

bool IsLoopbackAddress(const std::string& listen);

}  // namespace yolo
