#include "server/daemon/daemon_config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/state_dir.h"
#include "common/yaml_file.h"
#include "server/memory/levels.h"

namespace yolo {
namespace fs = std::filesystem;

absl::Status LoadDaemonConfigFile(const std::string& path, DaemonConfig* config) {
  auto loaded = LoadYamlFile(path);
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("config file: ", loaded.status().message()));
  }
  const YAML::Node root = *loaded;
  if (root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected key: value"));
  std::string key;
  try {
    for (const auto& kv : root) {
      key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == "listen")
        config->listen = v.as<std::string>();
      else if (key == "state_dir")
        config->state_dir = v.as<std::string>();
      else if (key == "max_running_per_device")
        config->max_running_per_device = v.as<int>();
      else if (key == "worker_nice")
        config->worker_nice = v.as<int>();
      else if (key == "log_level")
        config->log_level = v.as<std::string>();
      else if (key == "log_format")
        config->log_format = v.as<std::string>();
      else if (key == "worker")
        config->worker = v.as<std::string>();
      else if (key == "tls_cert")
        config->tls_cert = v.as<std::string>();
      else if (key == "tls_key")
        config->tls_key = v.as<std::string>();
      else if (key == "token_file")
        config->token_file = v.as<std::string>();
      else if (key == "open_reads")
        config->open_reads = v.as<bool>();
      else if (key == "metrics_listen")
        config->metrics_listen = v.as<std::string>();
      else if (key == "metrics_open")
        config->metrics_open = v.as<bool>();
      else if (key == "allowed_roots")
        config->allowed_roots = v.as<std::vector<std::string>>();
      else if (key == "ram_levels")
        config->ram_levels = v.as<std::string>();
      else if (key == "gpu_levels")
        config->gpu_levels = v.as<std::string>();
      else if (key == "watchdog_interval")
        config->watchdog_interval = v.as<double>();
      else if (key == "memory_log_interval")
        config->memory_log_interval = v.as<double>();
      else if (key == "danger_grace")
        config->danger_grace = v.as<double>();
      else if (key == "psi_full_limit")
        config->psi_full_limit = v.as<double>();
      else if (key == "oom_retries")
        config->oom_retries = v.as<int>();
      else if (key == "enable_fault_injection")
        config->enable_fault_injection = v.as<bool>();
      else
        return absl::InvalidArgumentError(absl::StrCat(path, ": unknown key '", key, "'"));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": key '", key, "' (line ", e.mark.line + 1, "): bad value"));
  }
  return absl::OkStatus();
}

bool IsLoopbackAddress(const std::string& listen) {
  return absl::StartsWith(listen, "127.") || absl::StartsWith(listen, "localhost:") ||
         absl::StartsWith(listen, "[::1]:") || absl::StartsWith(listen, "unix:");
}

absl::Status FinishDaemonConfig(DaemonConfig* config) {
  if (config->state_dir.empty()) config->state_dir = DefaultStateDir();
  if (config->max_running_per_device < 1) {
    return absl::InvalidArgumentError("max_running_per_device: must be >= 1");
  }
  if (config->worker_nice < 0 || config->worker_nice > 19) {
    return absl::InvalidArgumentError("worker_nice: must be in 0..19");
  }
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
  if (!kLevels.count(config->log_level)) {
    return absl::InvalidArgumentError(absl::StrCat("log_level: '", config->log_level,
                                                   "' is not trace, debug, info, warn or error"));
  }
  if (config->log_format != "text" && config->log_format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("log_format: '", config->log_format, "' is not text or json"));
  }
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"ram_levels", &config->ram_levels},
        {"gpu_levels", &config->gpu_levels}}) {
    if (auto t = ParseThresholds(*value, field); !t.ok()) return t.status();
  }
  if (!(config->memory_log_interval >= 0.1 && config->memory_log_interval <= 3600)) {
    return absl::InvalidArgumentError("memory_log_interval: must be in [0.1, 3600] seconds");
  }
  if (!(config->watchdog_interval >= 0.05 && config->watchdog_interval <= 3600)) {
    return absl::InvalidArgumentError("watchdog_interval: must be in [0.05, 3600] seconds");
  }
  if (!(config->danger_grace >= 0 && config->danger_grace <= 86400)) {
    return absl::InvalidArgumentError("danger_grace: must be in [0, 86400] seconds");
  }
  if (!(config->psi_full_limit >= 0 && config->psi_full_limit <= 100)) {
    return absl::InvalidArgumentError("psi_full_limit: must be in [0, 100] percent");
  }
  if (config->oom_retries < 0 || config->oom_retries > 10) {
    return absl::InvalidArgumentError("oom_retries: must be in 0..10");
  }
  if (config->tls_cert.empty() != config->tls_key.empty()) {
    return absl::InvalidArgumentError("tls_cert and tls_key go together");
  }
  if (!IsLoopbackAddress(config->listen) &&
      (config->tls_cert.empty() || config->token_file.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen: ", config->listen,
        " is reachable from other hosts; yolod serves it only with TLS (--tls-cert, --tls-key) "
        "and a token (--token-file)"));
  }
  if (config->metrics_listen != "off" && !IsLoopbackAddress(config->metrics_listen)) {
    if (config->tls_cert.empty() || config->token_file.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics_listen: ", config->metrics_listen,
                       " is reachable from other hosts; yolod serves /metrics there only with TLS "
                       "(--tls-cert, --tls-key) and a token (--token-file)"));
    }
    if (config->metrics_open) {
      return absl::InvalidArgumentError(
          "metrics_open: leaves /metrics without a token, which yolod allows on loopback only");
    }
  }
  if (absl::StartsWith(config->metrics_listen, "unix:")) {
    return absl::InvalidArgumentError("metrics_listen: expected HOST:PORT, not a unix socket");
  }
  for (const auto& f : {config->tls_cert, config->tls_key, config->token_file}) {
    if (!f.empty() && !fs::is_regular_file(f)) {
      return absl::NotFoundError(absl::StrCat("file '", f, "' does not exist"));
    }
  }
  if (config->worker.empty()) {
    // Beside yolod when installed; in the build tree, server/worker/yolo-worker.
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec).parent_path();
    for (const fs::path& p : {self / "yolo-worker", self / ".." / "worker" / "yolo-worker"}) {
      if (fs::exists(p)) {
        config->worker = fs::weakly_canonical(p).string();
        break;
      }
    }
    if (config->worker.empty()) {
      return absl::NotFoundError("yolo-worker not found beside yolod: give --worker");
    }
  }
  if (access(config->worker.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("worker '", config->worker, "' is not executable"));
  }
  return absl::OkStatus();
}

}  // namespace yolo
