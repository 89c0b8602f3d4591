// yoloctl: the command line of yolod, in kubectl's style.
//   yoloctl start-experiment --data d/data.yaml --epochs 30 --follow
//   yoloctl get experiments | describe experiment ID | logs ID -f | stop ID | resume ID
//   yoloctl memory report | memory cleanup | memory monitor --duration 60 --interval 1
//   yoloctl config get | config set batch=4 | config profiles | version
// Exit codes: 0 success, 1 the experiment failed, 2 bad usage or a rejected request,
// 3 server unreachable.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/commands.h"
#include "common/atomic_file.h"
#include "common/state_dir.h"
#include "common/train_args.h"

namespace {
namespace fs = std::filesystem;

// --server, else $YOLOD_SERVER, else the address a local yolod wrote, else the default.
std::string DefaultServer() {
  if (const char* env = std::getenv("YOLOD_SERVER"); env && *env) return env;
  std::string addr;
  if (yolo::ReadFile(yolo::DefaultStateDir() + "/yolod.addr", &addr).ok()) {
    return std::string(absl::StripAsciiWhitespace(addr));
  }
  return "127.0.0.1:50051";
}

bool SplitKeyValue(const std::string& token, std::string* key, std::string* value) {
  const size_t eq = token.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  *key = token.substr(0, eq);
  *value = token.substr(eq + 1);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"yoloctl: drive yolod, the YOLO training daemon"};
  app.require_subcommand(1);
  // Global flags anywhere on the line, as kubectl takes them: `get experiments -o json`.
  // Subcommands made below inherit this.
  app.fallthrough();
  app.footer(
      "Exit codes: 0 success, 1 the experiment failed (--follow, logs -f), 2 bad usage or a "
      "rejected request, 3 server unreachable.");
  yolo::ClientOptions options;
  options.server = DefaultServer();
  std::string token_file;
  app.add_option("--server,-s", options.server, "yolod's address (host:port)");
  app.add_option("--token-file", token_file, "file holding the bearer token ($YOLOD_TOKEN)");
  app.add_option("--tls-ca", options.tls_ca, "PEM of the CA that signed yolod's certificate");
  app.add_option("--output,-o", options.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  app.add_option("--timeout", options.timeout_seconds, "seconds to wait for an answer");

  // start-experiment: trainer arguments as --key value flags or key=value words, or -f FILE.
  auto* start = app.add_subcommand("start-experiment", "start one experiment, or those of a file");
  std::string file, name;
  bool follow = false;
  std::vector<std::string> words;
  std::map<std::string, std::string> arg_flags;
  start->add_option("-f,--filename", file, "experiments file (YAML): one spec or a list");
  start->add_option("--name", name, "a display name");
  start->add_flag("--follow", follow, "show progress until it ends");
  bool smart = false;
  yolo::v1::SmartTraining smart_spec;
  std::string patience;
  start->add_flag("--smart", smart,
                  "train in rounds, each a fresh worker resuming the last, with a cleanup and a "
                  "memory report between rounds");
  start->add_option_function<int>(
      "--max-total-epochs", [&smart_spec](int n) { smart_spec.set_max_total_epochs(n); },
      "--smart: epochs in all (default: --epochs)");
  start->add_option_function<int>(
      "--round-epochs", [&smart_spec](int n) { smart_spec.set_round_epochs(n); },
      "--smart: epochs per round (default 10)");
  start->add_option("--patience", patience,
                    "epochs without improvement before training stops; with --smart, rounds "
                    "(0: never)");
  for (const auto& spec : yolo::AllArgSpecs()) {
    const std::string key = spec.key;
    if (yolo::IsReservedArg(key) || key == "patience") continue;
    start->add_option_function<std::string>(
        "--" + key, [&arg_flags, key](const std::string& v) { arg_flags[key] = v; }, spec.help);
  }
  start->add_option("args", words, "trainer arguments as key=value (Ultralytics names)");

  auto* get = app.add_subcommand("get", "list resources: get experiments");
  std::string get_what;
  get->add_option("resource", get_what, "experiments")
      ->required()
      ->check(CLI::IsMember({"experiments", "experiment", "exp"}));
  auto* describe = app.add_subcommand("describe", "describe experiment ID");
  std::string kind, id;
  describe->add_option("resource", kind, "experiment")
      ->required()
      ->check(CLI::IsMember({"experiment", "experiments", "exp"}));
  describe->add_option("id", id, "experiment id")->required();
  auto* logs = app.add_subcommand("logs", "print an experiment's train.log");
  logs->add_option("id", id, "experiment id")->required();
  logs->add_flag("-f,--follow", follow, "keep printing new lines until it ends");
  auto* stop = app.add_subcommand("stop", "stop an experiment (it keeps its checkpoint)");
  stop->add_option("id", id, "experiment id")->required();
  auto* resume = app.add_subcommand("resume", "resume an experiment from its checkpoint");
  resume->add_option("id", id, "experiment id")->required();
  resume->add_flag("--follow", follow, "show progress until it ends");
  auto* del = app.add_subcommand("delete", "delete an experiment and its run folder");
  del->add_option("id", id, "experiment id")->required();

  auto* memory = app.add_subcommand("memory", "memory report, cleanup and monitor");
  memory->require_subcommand(1);
  memory->add_subcommand("report",
                         "levels, host, cgroup, PSI, GPUs, yolod and workers, recent events");
  double cleanup_timeout = 10;
  memory->add_subcommand("cleanup", "free memory in yolod and every worker")
      ->add_option("--timeout-seconds", cleanup_timeout, "how long to wait for the workers");
  double duration = 0, interval = 1;
  std::string out_dir = ".";
  auto* levels = memory->add_subcommand(
      "levels", "the watchdog's thresholds: memory levels [set ram=60,70,80 gpu=80,90,95]");
  std::vector<std::string> level_pairs;
  levels->add_subcommand("set", "change them (percent; from the next sample until yolod restarts)")
      ->add_option("pairs", level_pairs, "ram=N,W,D and/or gpu=N,W,D")
      ->required();
  auto* monitor = memory->add_subcommand(
      "monitor", "a live table, saved as memory_log_*.json (and a PNG with --plot-interval)");
  monitor->add_option("--duration", duration, "seconds (0: until Ctrl-C)");
  monitor->add_option("--interval", interval, "seconds between samples");
  monitor->add_option("--out-dir", out_dir, "where memory_log_YYYYMMDD_HHMMSS.json goes");
  double plot_interval = 0;
  monitor->add_option("--plot-interval", plot_interval,
                      "seconds between refreshes of memory_log_*.png beside the log (0: no plot)");
  auto* analyze = memory->add_subcommand(
      "analyze", "min/mean/max/p95, trend, leak verdict and time at each level of a memory log");
  std::string log_file, plot_file;
  analyze->add_option("--log-file", log_file, "a memory_log_*.json (yolod's or monitor's)")
      ->required();
  analyze->add_option("--plot", plot_file, "also draw it: RAM and GPU over time, bands, events");

  auto* config = app.add_subcommand("config", "defaults for new experiments");
  config->require_subcommand(1);
  config->add_subcommand("get", "print the defaults");
  std::vector<std::string> pairs;
  config->add_subcommand("set", "set defaults: config set batch=4 workers=2")
      ->add_option("pairs", pairs, "key=value")
      ->required();
  std::vector<std::string> unset_keys;
  config->add_subcommand("unset", "remove defaults: config unset batch")
      ->add_option("keys", unset_keys, "keys")
      ->required();
  config->add_subcommand("profiles", "list the device profiles");
  app.add_subcommand("health", "ask yolod's grpc.health.v1 service: SERVING, exit 0");
  app.add_subcommand("version", "print yoloctl's version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? yolo::kExitOk : yolo::kExitUsage;
  }
  if (app.got_subcommand("version")) {
    std::printf("yoloctl %s\n", YOLOD_VERSION);
    return yolo::kExitOk;
  }
  if (token_file.empty()) {
    if (const char* t = std::getenv("YOLOD_TOKEN")) options.token = t;
  } else {
    std::string text;
    if (!yolo::ReadFile(token_file, &text).ok()) {
      std::fprintf(stderr, "error: cannot read token file %s\n", token_file.c_str());
      return yolo::kExitUsage;
    }
    options.token = std::string(absl::StripAsciiWhitespace(text));
  }
  yolo::Client client(options);

  if (start->parsed()) {
    std::vector<yolo::v1::ExperimentSpec> specs;
    if (!file.empty()) {
      if (!words.empty() || !arg_flags.empty() || smart || !patience.empty() ||
          smart_spec.max_total_epochs() != 0 || smart_spec.round_epochs() != 0) {
        std::fprintf(stderr,
                     "error: give either -f FILE or trainer arguments (and --smart ...), not both; "
                     "in a file: smart: {max_total_epochs: N, round_epochs: K, patience: P}\n");
        return yolo::kExitUsage;
      }
      auto loaded = yolo::LoadExperimentsFile(file);
      if (!loaded.ok()) {
        std::fprintf(stderr, "error: %s\n", std::string(loaded.status().message()).c_str());
        return yolo::kExitUsage;
      }
      specs = *std::move(loaded);
    } else {
      yolo::v1::ExperimentSpec spec;
      spec.set_name(name);
      for (const auto& w : words) {
        std::string key, value;
        if (!SplitKeyValue(w, &key, &value)) {
          std::fprintf(stderr, "error: '%s' is not key=value\n", w.c_str());
          return yolo::kExitUsage;
        }
        (*spec.mutable_args())[key] = value;
      }
      for (const auto& [k, v] : arg_flags) (*spec.mutable_args())[k] = v;
      if (!smart && (smart_spec.max_total_epochs() != 0 || smart_spec.round_epochs() != 0)) {
        std::fprintf(stderr, "error: --max-total-epochs and --round-epochs need --smart\n");
        return yolo::kExitUsage;
      }
      if (smart) {
        int rounds = 0;
        if (!patience.empty() && !absl::SimpleAtoi(patience, &rounds)) {
          std::fprintf(stderr, "error: --patience: '%s' is not a number of rounds\n",
                       patience.c_str());
          return yolo::kExitUsage;
        }
        smart_spec.set_patience(rounds);
        *spec.mutable_smart() = smart_spec;
      } else if (!patience.empty()) {
        (*spec.mutable_args())["patience"] = patience;
      }
      specs.push_back(spec);
    }
    return client.StartExperiments(specs, follow);
  }
  if (app.got_subcommand("health")) return client.Health();
  if (get->parsed()) return client.GetExperiments();
  if (describe->parsed()) return client.DescribeExperiment(id);
  if (logs->parsed()) return client.Logs(id, follow);
  if (stop->parsed()) return client.Stop(id);
  if (resume->parsed()) return client.Resume(id, follow);
  if (del->parsed()) return client.Delete(id);
  if (memory->parsed()) {
    if (memory->got_subcommand("report")) return client.MemoryReport();
    if (memory->got_subcommand("cleanup")) return client.MemoryCleanup(cleanup_timeout);
    if (levels->parsed()) {
      return levels->got_subcommand("set") ? client.SetMemoryLevels(level_pairs)
                                           : client.MemoryLevels();
    }
    if (analyze->parsed()) return client.MemoryAnalyze(log_file, plot_file);
    return client.MemoryMonitor(duration, interval, out_dir, plot_interval);
  }
  if (config->got_subcommand("get")) return client.ConfigGet();
  if (config->got_subcommand("profiles")) return client.ListProfiles();
  if (config->got_subcommand("unset")) return client.ConfigSet({}, unset_keys);
  std::map<std::string, std::string> set;
  for (const auto& p : pairs) {
    std::string key, value;
    if (!SplitKeyValue(p, &key, &value)) {
      std::fprintf(stderr, "error: '%s' is not key=value\n", p.c_str());
      return yolo::kExitUsage;
    }
    set[key] = value;
  }
  return client.ConfigSet(set, {});
}
