// yoloctl: memory and config verbs, and the experiments file.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/commands.h"
#include "client/memory_plot.h"
#include "common/atomic_file.h"
#include "common/memory_log.h"
#include "common/status_macros.h"
#include "common/yaml_file.h"

namespace yolo {
namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

namespace {

// "ok", "notice", ...: the enum's name without its prefix.
std::string LevelWord(v1::MemoryLevel l) {
  if (l == v1::MEMORY_LEVEL_UNSPECIFIED) return "-";
  return absl::AsciiStrToLower(absl::StripPrefix(v1::MemoryLevel_Name(l), "MEMORY_"));
}

std::string Thresholds(const v1::LevelThresholds& t) {
  return absl::StrCat(t.notice_percent(), ",", t.warning_percent(), ",", t.danger_percent());
}

void PrintLevel(const char* name, const v1::ResourceLevel& l) {
  std::printf("%-6s %-8s %s%s%.1f %% of %s (levels %s %%)\n", name, LevelWord(l.level()).c_str(),
              l.marker().c_str(), l.marker().empty() ? "" : " ", l.used_ratio() * 100,
              HumanBytes(l.limit_bytes()).c_str(), Thresholds(l.thresholds()).c_str());
}

void PrintReport(const v1::MemoryReport& r) {
  PrintLevel("RAM", r.ram());
  if (r.has_gpu()) PrintLevel("GPU", r.gpu());
  const auto& h = r.host();
  std::printf("host     total %s  available %s  used %.1f%%\n", HumanBytes(h.total_bytes()).c_str(),
              HumanBytes(h.available_bytes()).c_str(), h.used_ratio() * 100);
  if (r.has_cgroup()) {
    const auto& c = r.cgroup();
    std::printf("cgroup   v%d %s  usage %s  working set %s  limit %s  oom kills %lld\n",
                c.version(), c.path().c_str(), HumanBytes(c.usage_bytes()).c_str(),
                HumanBytes(c.working_set_bytes()).c_str(),
                c.limit_bytes() > 0 ? HumanBytes(c.limit_bytes()).c_str() : "none",
                static_cast<long long>(c.oom_kill_events()));
  }
  if (r.has_pressure()) {
    std::printf("pressure some %.2f%% / full %.2f%% of the last 10 s waiting for memory\n",
                r.pressure().some_avg10(), r.pressure().full_avg10());
  }
  for (const auto& g : r.gpus()) {
    std::printf("gpu %-4d %s %s  used %s of %s (%.1f%%)\n", g.index(), g.name().c_str(),
                g.uuid().c_str(), HumanBytes(g.used_bytes()).c_str(),
                HumanBytes(g.total_bytes()).c_str(), g.used_ratio() * 100);
  }
  if (r.trend().samples() >= 2) {
    std::printf("trend    RAM %+.1f MB/s over the last %.0f s\n",
                r.trend().ram_bytes_per_second() / 1e6, r.trend().window_seconds());
  }
  if (r.watchdog().starts_held()) std::printf("new experiments are held (danger level)\n");
  std::printf("%-24s %8s %12s %12s %12s %12s %12s\n", "COMPONENT", "PID", "RSS", "PSS", "PEAK RSS",
              "CPU CACHE", "GPU RESERVED");
  std::printf("%-24s %8d %12s %12s %12s %12s %12s\n", "yolod", r.daemon().pid(),
              HumanBytes(r.daemon().rss_bytes()).c_str(),
              HumanBytes(r.daemon().pss_bytes()).c_str(),
              HumanBytes(r.daemon().peak_rss_bytes()).c_str(), "-", "-");
  for (const auto& w : r.workers()) {
    std::string name = "worker/" + w.experiment_id();
    if (w.process().processes() > 1) {  // data-parallel: the worker and its ranks, summed
      name += " (" + std::to_string(w.process().processes()) + " processes)";
    }
    std::printf(
        "%-24s %8d %12s %12s %12s %12s %12s\n", name.c_str(), w.process().pid(),
        HumanBytes(w.process().rss_bytes()).c_str(), HumanBytes(w.process().pss_bytes()).c_str(),
        HumanBytes(w.process().peak_rss_bytes()).c_str(), HumanBytes(w.cpu_cached_bytes()).c_str(),
        HumanBytes(w.gpu_reserved_bytes()).c_str());
    if (w.has_cuda()) {
      const v1::CudaAllocatorStats& c = w.cuda();
      std::printf(
          "  cuda:%d allocator: allocated %s (peak %s), reserved %s (peak %s), active %s, "
          "inactive split %s, %lld alloc retries, %lld OOMs\n",
          c.device(), HumanBytes(c.allocated_bytes()).c_str(),
          HumanBytes(c.allocated_peak_bytes()).c_str(), HumanBytes(c.reserved_bytes()).c_str(),
          HumanBytes(c.reserved_peak_bytes()).c_str(), HumanBytes(c.active_bytes()).c_str(),
          HumanBytes(c.inactive_split_bytes()).c_str(), static_cast<long long>(c.alloc_retries()),
          static_cast<long long>(c.ooms()));
    }
  }
  bool any_run = false;
  for (const auto& w : r.workers()) {
    if (w.policy().empty() && !w.rss_trend().leak_suspected() && w.batch() <= 0) continue;
    if (!any_run) std::printf("experiments:\n");
    any_run = true;
    std::printf("  %s  batch %d%s%s\n", w.experiment_id().c_str(), w.batch(),
                w.policy().empty() ? "" : ("  policy: " + w.policy()).c_str(),
                w.rss_trend().leak_suspected() ? ("  " + w.rss_trend().message()).c_str() : "");
  }
  if (r.recommendations_size() > 0) {
    std::printf("recommendations:\n");
    for (const auto& line : r.recommendations()) std::printf("  - %s\n", line.c_str());
  }
  if (r.events_size() > 0) {
    std::printf("recent memory events:\n");
    for (const auto& e : r.events()) {
      std::printf("  %s  %s\n", TimeUtil::ToString(e.time()).substr(0, 19).c_str(),
                  e.message().c_str());
    }
  }
  for (const auto& e : r.watchdog().probe_errors()) std::printf("probe error: %s\n", e.c_str());
}

}  // namespace

int Client::MemoryReport() {
  v1::MemoryReport report;
  grpc::Status s = memory_->GetMemoryReport(Context().get(), {}, &report);
  if (!s.ok()) return Fail(s);
  if (options_.output == "json") {
    std::printf("%s\n", ToJson(report).c_str());
  } else {
    PrintReport(report);
  }
  return kExitOk;
}

int Client::MemoryLevels() {
  v1::MemoryLevels levels;
  grpc::Status s = memory_->GetMemoryLevels(Context().get(), {}, &levels);
  if (!s.ok()) return Fail(s);
  if (options_.output == "json") {
    std::printf("%s\n", ToJson(levels).c_str());
  } else {
    std::printf("%-4s %8s %8s %8s\n", "", "NOTICE", "WARNING", "DANGER");
    for (const auto& [name, t] :
         {std::pair<const char*, const v1::LevelThresholds*>{"ram", &levels.ram()},
          {"gpu", &levels.gpu()}}) {
      std::printf("%-4s %7g%% %7g%% %7g%%\n", name, t->notice_percent(), t->warning_percent(),
                  t->danger_percent());
    }
  }
  return kExitOk;
}

int Client::SetMemoryLevels(const std::vector<std::string>& pairs) {
  v1::SetMemoryLevelsRequest request;
  for (const std::string& p : pairs) {
    const size_t eq = p.find('=');
    const std::string key = p.substr(0, eq);
    v1::LevelThresholds* t = key == "ram"   ? request.mutable_ram()
                             : key == "gpu" ? request.mutable_gpu()
                                            : nullptr;
    std::vector<std::string> parts;
    if (eq != std::string::npos) parts = absl::StrSplit(p.substr(eq + 1), ',');
    double v[3] = {0, 0, 0};
    const bool numbers = parts.size() == 3 && absl::SimpleAtod(parts[0], &v[0]) &&
                         absl::SimpleAtod(parts[1], &v[1]) && absl::SimpleAtod(parts[2], &v[2]);
    if (t == nullptr || !numbers) {
      std::fprintf(stderr,
                   "error: '%s': expected ram=N,W,D or gpu=N,W,D (percentages for notice, "
                   "warning and danger)\n",
                   p.c_str());
      return kExitUsage;
    }
    t->set_notice_percent(v[0]);
    t->set_warning_percent(v[1]);
    t->set_danger_percent(v[2]);
  }
  v1::MemoryLevels levels;
  grpc::Status s = memory_->SetMemoryLevels(Context().get(), request, &levels);
  if (!s.ok()) return Fail(s);
  if (options_.output == "json") {
    std::printf("%s\n", ToJson(levels).c_str());
  } else {
    std::printf("ram %s %%, gpu %s %% (from the next sample)\n", Thresholds(levels.ram()).c_str(),
                Thresholds(levels.gpu()).c_str());
  }
  return kExitOk;
}

int Client::MemoryCleanup(double timeout_seconds) {
  v1::ForceCleanupRequest request;
  request.set_timeout_seconds(timeout_seconds);
  v1::ForceCleanupResponse response;
  auto ctx = Context();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>((timeout_seconds + 30) * 1000)));
  grpc::Status s = memory_->ForceCleanup(ctx.get(), request, &response);
  if (!s.ok()) return Fail(s);
  if (options_.output == "json") {
    std::printf("%s\n", ToJson(response).c_str());
    return kExitOk;
  }
  std::printf("%-24s %8s %12s %12s %12s  %s\n", "COMPONENT", "PID", "RSS BEFORE", "RSS AFTER",
              "FREED", "DETAIL");
  for (const auto& r : response.results()) {
    std::printf("%-24s %8d %12s %12s %12s  %s\n", r.component().c_str(), r.pid(),
                HumanBytes(r.rss_before_bytes()).c_str(), HumanBytes(r.rss_after_bytes()).c_str(),
                r.answered() ? HumanBytes(r.freed_bytes()).c_str() : "no answer",
                r.detail().c_str());
  }
  std::printf("total freed: %s\n", HumanBytes(response.total_freed_bytes()).c_str());
  return kExitOk;
}

namespace {

// The log's level word; a level yolod did not set (no sample yet) counts as ok.
std::string LogLevel(v1::MemoryLevel level) {
  return level == v1::MEMORY_LEVEL_UNSPECIFIED ? "ok" : LevelWord(level);
}

std::vector<double> Percents(const v1::LevelThresholds& t) {
  return {t.notice_percent(), t.warning_percent(), t.danger_percent()};
}

std::chrono::system_clock::time_point WallOf(const google::protobuf::Timestamp& t) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(TimeUtil::TimestampToNanoseconds(t))));
}

}  // namespace

int Client::MemoryMonitor(double duration_seconds, double interval_seconds,
                          const std::string& out_dir, double plot_interval_seconds) {
  std::error_code dir_ec;
  if (!fs::is_directory(out_dir, dir_ec)) {
    std::fprintf(stderr, "error: --out-dir %s: not a folder\n", out_dir.c_str());
    return kExitUsage;
  }
  v1::WatchMemoryRequest request;
  request.set_duration_seconds(duration_seconds);
  request.set_interval_seconds(interval_seconds);
  auto ctx = Context(/*stream=*/true);
  auto reader = memory_->WatchMemory(ctx.get(), request);
  const auto started = std::chrono::system_clock::now();
  const std::string path = (fs::path(out_dir) / MemoryLogFileName(started)).string();
  const std::string png = path.substr(0, path.size() - 5) + ".png";
  std::unique_ptr<MemoryLogWriter> writer;
  MemoryLog header;
  header.source = "yoloctl memory monitor";
  header.rss_of = "yolod and its workers";
  header.interval_seconds = interval_seconds > 0 ? interval_seconds : 1;  // yolod's default
  int64_t last_event_ns = 0;
  auto last_plot = std::chrono::steady_clock::now();
  v1::MemoryReport report;
  int n = 0;
  if (options_.output != "json") {
    std::printf("%-20s %10s %12s %12s %12s %8s\n", "TIME", "HOST USED", "AVAILABLE", "YOLOD RSS",
                "WORKERS RSS", "WORKERS");
  }
  while (reader->Read(&report)) {
    int64_t workers = 0;
    for (const auto& w : report.workers()) workers += w.process().rss_bytes();
    if (!writer) {  // the thresholds as yolod has them when the first sample comes
      header.ram_thresholds = Percents(report.ram().thresholds());
      if (report.has_gpu()) header.gpu_thresholds = Percents(report.gpu().thresholds());
      header.started = WallOf(report.time());  // yolod's clock, as the samples' times are
      writer = std::make_unique<MemoryLogWriter>(path, header);
    }
    MemoryLogSample sample;
    sample.t = writer->Seconds(WallOf(report.time()));
    sample.ram_used_bytes = report.ram().used_bytes();
    sample.ram_limit_bytes = report.ram().limit_bytes();
    sample.ram_level = LogLevel(report.ram().level());
    sample.rss_bytes = report.daemon().rss_bytes() + workers;
    for (const auto& g : report.gpus()) {
      sample.gpus.push_back({g.index(), g.used_bytes(), g.total_bytes()});
    }
    if (report.has_gpu()) sample.gpu_level = LogLevel(report.gpu().level());
    if (report.has_pressure()) sample.psi_full_avg10 = report.pressure().full_avg10();
    writer->Add(std::move(sample));
    for (const auto& e : report.events()) {  // the newest 20: those not logged yet
      const int64_t ns = TimeUtil::TimestampToNanoseconds(e.time());
      if (ns <= last_event_ns) continue;
      last_event_ns = ns;
      writer->Add(MemoryLogEvent{writer->Seconds(WallOf(e.time())), e.kind(), e.message(),
                                 std::nullopt, std::nullopt});
    }
    // Every sample: the file is whole whenever this process stops.
    if (absl::Status w = writer->Flush(); !w.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(w.message()).c_str());
      ctx->TryCancel();
      return kExitUsage;
    }
    ++n;
    if (plot_interval_seconds > 0 && std::chrono::steady_clock::now() - last_plot >=
                                         std::chrono::duration<double>(plot_interval_seconds)) {
      last_plot = std::chrono::steady_clock::now();
      if (absl::Status plotted = PlotMemoryLog(writer->log(), png, path); !plotted.ok()) {
        std::fprintf(stderr, "warning: no plot: %s\n", std::string(plotted.message()).c_str());
      }
    }
    if (options_.output == "json") {
      std::printf("%s\n", ToJson(report, false).c_str());
    } else {
      std::printf("%-20s %9.1f%% %12s %12s %12s %8d\n",
                  TimeUtil::ToString(report.time()).substr(0, 19).c_str(),
                  report.host().used_ratio() * 100,
                  HumanBytes(report.host().available_bytes()).c_str(),
                  HumanBytes(report.daemon().rss_bytes()).c_str(), HumanBytes(workers).c_str(),
                  report.workers_size());
    }
    std::fflush(stdout);
  }
  grpc::Status s = reader->Finish();
  if (n > 0) {
    if (plot_interval_seconds > 0 && PlotMemoryLog(writer->log(), png, path).ok()) {
      std::fprintf(stderr, "plot saved to %s\n", png.c_str());
    }
    std::fprintf(stderr, "%d samples saved to %s\n", n, path.c_str());
  }
  return s.ok() || s.error_code() == grpc::StatusCode::CANCELLED ? kExitOk : Fail(s);
}

int Client::MemoryAnalyze(const std::string& log_file, const std::string& plot_path) {
  auto log = ReadMemoryLog(log_file);
  if (!log.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(log.status().message()).c_str());
    return kExitUsage;
  }
  const MemoryAnalysis a = AnalyzeMemoryLog(*log);
  if (options_.output == "json") {
    auto stats = [](const SeriesStats& s) {
      return nlohmann::ordered_json{
          {"count", s.count}, {"min", s.min}, {"mean", s.mean}, {"max", s.max}, {"p95", s.p95}};
    };
    auto levels = [](const double* seconds) {
      return nlohmann::ordered_json{{"ok", seconds[0]},
                                    {"notice", seconds[1]},
                                    {"warning", seconds[2]},
                                    {"danger", seconds[3]}};
    };
    nlohmann::ordered_json j = {{"log_file", log_file},
                                {"source", log->source},
                                {"experiment_id", log->experiment_id},
                                {"samples", log->samples.size()},
                                {"events", log->events.size()},
                                {"seconds", a.seconds},
                                {"ram_used_bytes", stats(a.ram_used_bytes)},
                                {"ram_used_percent", stats(a.ram_used_percent)},
                                {"rss_bytes", stats(a.rss_bytes)},
                                {"gpu_used_bytes", stats(a.gpu_used_bytes)},
                                {"gpu_used_percent", stats(a.gpu_used_percent)},
                                {"trend",
                                 {{"ram_bytes_per_minute", a.ram_bytes_per_minute},
                                  {"ram_r2", a.ram_r2},
                                  {"rss_bytes_per_minute", a.rss_bytes_per_minute},
                                  {"rss_r2", a.rss_r2}}},
                                {"leak",
                                 {{"suspected", a.leak_suspected},
                                  {"epochs_fitted", a.epochs_fitted},
                                  {"rss_bytes_per_epoch", a.rss_bytes_per_epoch},
                                  {"r2", a.epoch_r2},
                                  {"verdict", a.leak_verdict}}},
                                {"ram_level_seconds", levels(a.ram_level_seconds)}};
    if (a.has_gpu) j["gpu_level_seconds"] = levels(a.gpu_level_seconds);
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s", FormatMemoryAnalysis(*log, a).c_str());
  }
  std::fflush(stdout);
  if (!plot_path.empty()) {
    if (absl::Status plotted = PlotMemoryLog(*log, plot_path, log_file); !plotted.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(plotted.message()).c_str());
      return kExitUsage;
    }
    std::fprintf(stderr, "plot saved to %s\n", plot_path.c_str());
  }
  return kExitOk;
}

int Client::ConfigGet() {
  v1::TrainingConfig config;
  grpc::Status s = config_->GetTrainingConfig(Context().get(), {}, &config);
  if (!s.ok()) return Fail(s);
  if (options_.output == "json") {
    std::printf("%s\n", ToJson(config).c_str());
    return kExitOk;
  }
  if (config.defaults().empty()) std::printf("(no defaults set: Ultralytics' apply)\n");
  for (const auto& [k, v] :
       std::map<std::string, std::string>(config.defaults().begin(), config.defaults().end())) {
    std::printf("%s=%s\n", k.c_str(), v.c_str());
  }
  return kExitOk;
}

int Client::ConfigSet(const std::map<std::string, std::string>& set,
                      const std::vector<std::string>& unset) {
  v1::UpdateTrainingConfigRequest request;
  for (const auto& [k, v] : set) (*request.mutable_set())[k] = v;
  for (const auto& k : unset) request.add_unset(k);
  v1::TrainingConfig config;
  grpc::Status s = config_->UpdateTrainingConfig(Context().get(), request, &config);
  if (!s.ok()) return Fail(s);
  return ConfigGet();
}

int Client::ListProfiles() {
  v1::ListDeviceProfilesResponse response;
  grpc::Status s = config_->ListDeviceProfiles(Context().get(), {}, &response);
  if (!s.ok()) return Fail(s);
  if (options_.output == "json") {
    std::printf("%s\n", ToJson(response).c_str());
    return kExitOk;
  }
  for (const auto& p : response.profiles()) {
    std::string args;
    for (const auto& [k, v] :
         std::map<std::string, std::string>(p.args().begin(), p.args().end())) {
      absl::StrAppend(&args, args.empty() ? "" : " ", k, "=", v);
    }
    std::printf("%-5s %-10s %-45s %s\n", p.name().c_str(), p.available() ? "available" : "-",
                args.c_str(), p.note().c_str());
  }
  return kExitOk;
}

namespace {

// smart: {max_total_epochs: 30, round_epochs: 5, patience: 2}; yolod checks the values.
absl::StatusOr<v1::SmartTraining> SmartFromYaml(const YAML::Node& node, const std::string& where) {
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": 'smart' must be a map {max_total_epochs: N, round_epochs: K, patience: P}"));
  }
  v1::SmartTraining smart;
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    int value = 0;
    if (!kv.second.IsScalar() || !absl::SimpleAtoi(kv.second.as<std::string>(), &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": 'smart.", key, "' must be an integer"));
    }
    if (key == "max_total_epochs") {
      smart.set_max_total_epochs(value);
    } else if (key == "round_epochs") {
      smart.set_round_epochs(value);
    } else if (key == "patience") {
      smart.set_patience(value);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unknown key 'smart.", key, "' (max_total_epochs, round_epochs, patience)"));
    }
  }
  return smart;
}

}  // namespace

absl::StatusOr<std::vector<v1::ExperimentSpec>> LoadExperimentsFile(const std::string& path) {
  auto loaded = LoadYamlFile(path, 16u << 20);
  if (!loaded.ok()) return loaded.status();
  const YAML::Node root = *loaded;
  YAML::Node list = root.IsMap() && root["experiments"] ? root["experiments"] : root;
  std::vector<YAML::Node> items;
  if (list.IsSequence()) {
    for (const auto& item : list) items.push_back(item);
  } else if (list.IsMap()) {
    items.push_back(list);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected a spec, a list of specs or 'experiments: [...]'"));
  }
  std::vector<v1::ExperimentSpec> specs;
  try {
    for (size_t i = 0; i < items.size(); ++i) {
      const YAML::Node& item = items[i];
      const std::string where = absl::StrCat(path, ": experiment ", i + 1);
      if (!item.IsMap()) return absl::InvalidArgumentError(absl::StrCat(where, ": not a map"));
      v1::ExperimentSpec spec;
      for (const auto& kv : item) {
        const std::string key = kv.first.as<std::string>();
        if (key == "smart") {
          ASSIGN_OR_RETURN(*spec.mutable_smart(), SmartFromYaml(kv.second, where));
          continue;
        }
        if (!kv.second.IsScalar() && !kv.second.IsNull()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": '", key, "' must be a single value"));
        }
        const std::string value = kv.second.IsNull() ? "" : kv.second.as<std::string>();
        if (key == "name") {
          spec.set_name(value);
        } else {
          (*spec.mutable_args())[key] = value;
        }
      }
      specs.push_back(std::move(spec));
    }
  } catch (const YAML::Exception& e) {  // a key or value of the wrong kind
    return absl::InvalidArgumentError(absl::StrCat(path, ": line ", e.mark.line + 1, ": ", e.msg));
  }
  if (specs.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no experiments"));
  return specs;
}

}  // namespace yolo
