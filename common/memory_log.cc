#include "common/memory_log.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/leak.h"
#include "common/line_fit.h"
#include "common/status_macros.h"

namespace yolo {

namespace {

using Json = nlohmann::ordered_json;
constexpr size_t kMaxLogBytes = 32u << 20;  // yolod's logs stay near 1 MB
constexpr const char* kLevels[] = {"ok", "notice", "warning", "danger"};

std::string Rfc3339(std::chrono::system_clock::time_point when) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromChrono(when), absl::UTCTimeZone());
}

Json SampleJson(const MemoryLogSample& s) {
  Json j = {{"t", std::round(s.t * 1000) / 1000},
            {"ram_used_bytes", s.ram_used_bytes},
            {"ram_limit_bytes", s.ram_limit_bytes},
            {"ram_level", s.ram_level}};
  if (s.rss_bytes) j["rss_bytes"] = *s.rss_bytes;
  Json gpus = Json::array();
  for (const auto& g : s.gpus) {
    gpus.push_back(
        {{"index", g.index}, {"used_bytes", g.used_bytes}, {"total_bytes", g.total_bytes}});
  }
  j["gpus"] = std::move(gpus);
  if (s.gpu_level) j["gpu_level"] = *s.gpu_level;
  if (s.psi_full_avg10) j["psi_full_avg10"] = *s.psi_full_avg10;
  if (s.epoch) j["epoch"] = *s.epoch;
  return j;
}

Json EventJson(const MemoryLogEvent& e) {
  Json j = {{"t", std::round(e.t * 1000) / 1000}, {"kind", e.kind}, {"message", e.message}};
  if (e.epoch) j["epoch"] = *e.epoch;
  if (e.rss_bytes) j["rss_bytes"] = *e.rss_bytes;
  return j;
}

// Field readers: an error names the field's path in the file.
class Fields {
 public:
  // `where` starts with the file's name: "f.json: samples[3]."
  Fields(const Json& object, std::string where) : o_(object), where_(std::move(where)) {}
  // A finite number within +-1e15 (seconds, percentages).
  absl::Status Number(const char* key, double* out, bool required = true) const {
    auto it = o_.find(key);
    if (it == o_.end()) return required ? Missing(key) : absl::OkStatus();
    if (!it->is_number()) return Wrong(key, "a number");
    const double v = it->get<double>();
    if (!std::isfinite(v) || std::abs(v) > 1e15) return Wrong(key, "a number within +-1e15");
    *out = v;
    return absl::OkStatus();
  }
  // An integer in [0, 2^62] (bytes, epochs, indices, versions).
  absl::Status Int(const char* key, int64_t* out, bool required = true) const {
    auto it = o_.find(key);
    if (it == o_.end()) return required ? Missing(key) : absl::OkStatus();
    if (!it->is_number_integer()) return Wrong(key, "an integer");
    if (it->is_number_unsigned() ? it->get<uint64_t>() > (uint64_t{1} << 62)
                                 : it->get<int64_t>() < 0) {
      return Wrong(key, "an integer in [0, 2^62]");
    }
    *out = it->get<int64_t>();
    return absl::OkStatus();
  }
  absl::Status OptionalInt(const char* key, std::optional<int64_t>* out) const {
    if (!o_.contains(key)) return absl::OkStatus();
    int64_t v = 0;
    RETURN_IF_ERROR(Int(key, &v));
    *out = v;
    return absl::OkStatus();
  }
  absl::Status OptionalInt(const char* key, std::optional<int>* out) const {
    std::optional<int64_t> v;
    RETURN_IF_ERROR(OptionalInt(key, &v));
    if (v && *v > 1000000000) return Wrong(key, "an integer up to 1e9");
    if (v) *out = static_cast<int>(*v);
    return absl::OkStatus();
  }
  absl::Status String(const char* key, std::string* out, bool required = true) const {
    auto it = o_.find(key);
    if (it == o_.end()) return required ? Missing(key) : absl::OkStatus();
    if (!it->is_string()) return Wrong(key, "a string");
    *out = it->get<std::string>();
    return absl::OkStatus();
  }
  absl::Status Level(const char* key, std::string* out) const {
    if (absl::Status s = String(key, out); !s.ok()) return s;
    if (MemoryLevelIndex(*out) < 0) return Wrong(key, "ok, notice, warning or danger");
    return absl::OkStatus();
  }
  absl::Status Array(const char* key, const Json** out, bool required = true) const {
    auto it = o_.find(key);
    if (it == o_.end()) return required ? Missing(key) : absl::OkStatus();
    if (!it->is_array()) return Wrong(key, "an array");
    *out = &*it;
    return absl::OkStatus();
  }

 private:
  absl::Status Missing(const char* key) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, key, ": missing"));
  }
  absl::Status Wrong(const char* key, const char* what) const {
    return absl::InvalidArgumentError(absl::StrCat(where_, key, ": must be ", what));
  }
  const Json& o_;
  std::string where_;
};

absl::StatusOr<std::vector<double>> Thresholds(const Json& j, const std::string& where) {
  if (!j.is_array() || j.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": must be [notice, warning, danger]"));
  }
  std::vector<double> out;
  for (const auto& v : j) {
    if (!v.is_number()) return absl::InvalidArgumentError(absl::StrCat(where, ": must be numbers"));
    out.push_back(v.get<double>());
  }
  return out;
}

SeriesStats Stats(std::vector<double> v) {
  SeriesStats s;
  if (v.empty()) return s;
  s.count = static_cast<int>(v.size());
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / v.size();
  // Nearest rank.
  const size_t rank = static_cast<size_t>(std::ceil(0.95 * v.size()));
  s.p95 = v[std::clamp<size_t>(rank, 1, v.size()) - 1];
  return s;
}

}  // namespace

int MemoryLevelIndex(const std::string& level) {
  for (int i = 0; i < 4; ++i) {
    if (level == kLevels[i]) return i;
  }
  return -1;
}

std::string MemoryLogFileName(std::chrono::system_clock::time_point when) {
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm local{};
  localtime_r(&t, &local);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &local);
  return absl::StrCat("memory_log_", stamp, ".json");
}

MemoryLogWriter::MemoryLogWriter(std::string path, MemoryLog header, size_t max_samples)
    : path_(std::move(path)),
      log_(std::move(header)),
      max_samples_(std::max<size_t>(max_samples, 2)) {
  log_.samples.clear();
  log_.events.clear();
}

double MemoryLogWriter::Seconds(std::chrono::system_clock::time_point when) const {
  return std::chrono::duration<double>(when - log_.started).count();
}

void MemoryLogWriter::Add(MemoryLogSample sample) {
  if (offered_++ % stride_ != 0) return;
  log_.samples.push_back(std::move(sample));
  if (log_.samples.size() < max_samples_) return;
  // Thinned: every other sample goes, the interval doubles, and so does the stride.
  std::vector<MemoryLogSample> kept;
  kept.reserve(log_.samples.size() / 2 + 1);
  for (size_t i = 0; i < log_.samples.size(); i += 2) kept.push_back(std::move(log_.samples[i]));
  log_.samples = std::move(kept);
  log_.interval_seconds *= 2;
  stride_ *= 2;  // the samples kept are those whose number is a multiple of it
}

void MemoryLogWriter::Add(MemoryLogEvent event) {
  log_.events.push_back(std::move(event));
  if (log_.events.size() > max_samples_) log_.events.erase(log_.events.begin());
}

absl::Status MemoryLogWriter::Flush() {
  const std::string text = MemoryLogToJson(log_);
  bytes_ = text.size();
  return WriteFileAtomic(path_, text);
}

std::string MemoryLogToJson(const MemoryLog& log) {
  Json j = {{"schema", kMemoryLogSchema}, {"version", kMemoryLogVersion}, {"source", log.source}};
  if (!log.experiment_id.empty()) j["experiment_id"] = log.experiment_id;
  j["rss_of"] = log.rss_of;
  j["started"] = Rfc3339(log.started);
  j["interval_seconds"] = log.interval_seconds;
  j["thresholds"] = {{"ram", log.ram_thresholds}, {"gpu", log.gpu_thresholds}};
  Json samples = Json::array(), events = Json::array();
  for (const auto& s : log.samples) samples.push_back(SampleJson(s));
  for (const auto& e : log.events) events.push_back(EventJson(e));
  j["samples"] = std::move(samples);
  j["events"] = std::move(events);
  // One sample per line: readable, and diffable.
  std::string out = "{\n";
  bool first = true;
  for (const auto& [key, value] : j.items()) {
    absl::StrAppend(&out, first ? "" : ",\n", "  ", Json(key).dump(), ": ");
    first = false;
    if (value.is_array() && (key == "samples" || key == "events")) {
      out += "[";
      for (size_t i = 0; i < value.size(); ++i) {
        absl::StrAppend(&out, i ? ",\n    " : "\n    ",
                        value[i].dump(-1, ' ', false, Json::error_handler_t::replace));
      }
      out += value.empty() ? "]" : "\n  ]";
    } else {
      out += value.dump(-1, ' ', false, Json::error_handler_t::replace);
    }
  }
  out += "\n}\n";
  return out;
}

absl::StatusOr<MemoryLog> ReadMemoryLog(const std::string& path) {
  std::string text;
  if (absl::Status s = ReadFile(path, &text, kMaxLogBytes); !s.ok()) return s;
  return ParseMemoryLog(text, path);
}

absl::StatusOr<MemoryLog> ParseMemoryLog(const std::string& text, const std::string& name) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    const bool at_end = e.byte >= text.size();
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": not valid JSON", at_end ? " (it ends early: truncated?)" : "", ": ", e.what()));
  } catch (const Json::exception& e) {  // a number out of range, and the like
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a memory log: ", e.what()));
  }
  if (!j.is_object() || !j.contains("schema") || j["schema"] != kMemoryLogSchema) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not a yolod memory log (no \"schema\": \"", kMemoryLogSchema,
                     "\"; yolod and `yoloctl memory monitor` write memory_log_*.json)"));
  }
  MemoryLog log;
  const Fields top(j, absl::StrCat(name, ": "));
  int64_t version = 0;
  RETURN_IF_ERROR(top.Int("version", &version));
  if (version < 1 || version > kMemoryLogVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": memory log version ", version, "; this build reads version ", kMemoryLogVersion));
  }
  log.version = static_cast<int>(version);
  RETURN_IF_ERROR(top.String("source", &log.source, false));
  RETURN_IF_ERROR(top.String("experiment_id", &log.experiment_id, false));
  RETURN_IF_ERROR(top.String("rss_of", &log.rss_of, false));
  std::string started;
  RETURN_IF_ERROR(top.String("started", &started));
  absl::Time when;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, started, &when, &err)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": started: '", started, "': ", err));
  }
  log.started = absl::ToChronoTime(when);
  RETURN_IF_ERROR(top.Number("interval_seconds", &log.interval_seconds, false));
  if (j.contains("thresholds")) {
    const Json& t = j["thresholds"];
    if (!t.is_object())
      return absl::InvalidArgumentError(absl::StrCat(name, ": thresholds: must be an object"));
    for (const char* key : {"ram", "gpu"}) {
      if (!t.contains(key)) continue;
      auto v = Thresholds(t[key], absl::StrCat(name, ": thresholds.", key));
      if (!v.ok()) return v.status();
      (std::string(key) == "ram" ? log.ram_thresholds : log.gpu_thresholds) = *v;
    }
  }
  const Json* samples = nullptr;
  RETURN_IF_ERROR(top.Array("samples", &samples));
  for (size_t i = 0; i < samples->size(); ++i) {
    const Json& o = (*samples)[i];
    const std::string where = absl::StrCat(name, ": samples[", i, "].");
    if (!o.is_object())
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": samples[", i, "]: must be an object"));
    const Fields f(o, where);
    MemoryLogSample s;
    RETURN_IF_ERROR(f.Number("t", &s.t));
    RETURN_IF_ERROR(f.Int("ram_used_bytes", &s.ram_used_bytes));
    RETURN_IF_ERROR(f.Int("ram_limit_bytes", &s.ram_limit_bytes));
    RETURN_IF_ERROR(f.Level("ram_level", &s.ram_level));
    RETURN_IF_ERROR(f.OptionalInt("rss_bytes", &s.rss_bytes));
    RETURN_IF_ERROR(f.OptionalInt("epoch", &s.epoch));
    if (o.contains("gpu_level")) {
      std::string level;
      RETURN_IF_ERROR(f.Level("gpu_level", &level));
      s.gpu_level = level;
    }
    if (o.contains("psi_full_avg10")) {
      double psi = 0;
      RETURN_IF_ERROR(f.Number("psi_full_avg10", &psi));
      s.psi_full_avg10 = psi;
    }
    const Json* gpus = nullptr;
    RETURN_IF_ERROR(f.Array("gpus", &gpus, false));
    for (size_t g = 0; gpus != nullptr && g < gpus->size(); ++g) {
      const Json& go = (*gpus)[g];
      if (!go.is_object())
        return absl::InvalidArgumentError(absl::StrCat(where, "gpus[", g, "]: must be an object"));
      const Fields gf(go, absl::StrCat(where, "gpus[", g, "]."));
      MemoryLogGpu gpu;
      int64_t index = 0;
      RETURN_IF_ERROR(gf.Int("index", &index));
      if (index > 4096) {
        return absl::InvalidArgumentError(absl::StrCat(where, "gpus[", g, "].index: above 4096"));
      }
      gpu.index = static_cast<int>(index);
      RETURN_IF_ERROR(gf.Int("used_bytes", &gpu.used_bytes));
      RETURN_IF_ERROR(gf.Int("total_bytes", &gpu.total_bytes));
      s.gpus.push_back(gpu);
    }
    if (!log.samples.empty() && s.t < log.samples.back().t) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "t: ", s.t, " is before the sample ahead of it (",
                       log.samples.back().t, "): samples are in time order"));
    }
    log.samples.push_back(std::move(s));
  }
  const Json* events = nullptr;
  RETURN_IF_ERROR(top.Array("events", &events, false));
  for (size_t i = 0; events != nullptr && i < events->size(); ++i) {
    const Json& o = (*events)[i];
    if (!o.is_object())
      return absl::InvalidArgumentError(absl::StrCat(name, ": events[", i, "]: must be an object"));
    const Fields f(o, absl::StrCat(name, ": events[", i, "]."));
    MemoryLogEvent e;
    RETURN_IF_ERROR(f.Number("t", &e.t));
    RETURN_IF_ERROR(f.String("kind", &e.kind));
    RETURN_IF_ERROR(f.String("message", &e.message, false));
    RETURN_IF_ERROR(f.OptionalInt("epoch", &e.epoch));
    RETURN_IF_ERROR(f.OptionalInt("rss_bytes", &e.rss_bytes));
    log.events.push_back(std::move(e));
  }
  return log;
}

MemoryAnalysis AnalyzeMemoryLog(const MemoryLog& log) {
  MemoryAnalysis a;
  std::vector<double> ram, ram_pct, rss, gpu, gpu_pct, t_ram, t_rss;
  for (size_t i = 0; i < log.samples.size(); ++i) {
    const MemoryLogSample& s = log.samples[i];
    ram.push_back(static_cast<double>(s.ram_used_bytes));
    t_ram.push_back(s.t / 60);
    if (s.ram_limit_bytes > 0) ram_pct.push_back(100.0 * s.ram_used_bytes / s.ram_limit_bytes);
    if (s.rss_bytes) {
      rss.push_back(static_cast<double>(*s.rss_bytes));
      t_rss.push_back(s.t / 60);
    }
    double used = 0, total = 0;
    for (const auto& g : s.gpus) used += g.used_bytes, total += g.total_bytes;
    if (!s.gpus.empty()) {
      a.has_gpu = true;
      gpu.push_back(used);
      if (total > 0) gpu_pct.push_back(100.0 * used / total);
    }
    // Time at a level: from this sample to the next (the last one counts nothing).
    if (i + 1 < log.samples.size()) {
      const double dt = std::max(0.0, log.samples[i + 1].t - s.t);
      const int r = MemoryLevelIndex(s.ram_level);
      if (r >= 0) a.ram_level_seconds[r] += dt;
      if (s.gpu_level) {
        const int g = MemoryLevelIndex(*s.gpu_level);
        if (g >= 0) a.gpu_level_seconds[g] += dt;
      }
    }
  }
  if (!log.samples.empty()) a.seconds = log.samples.back().t - log.samples.front().t;
  a.ram_used_bytes = Stats(ram);
  a.ram_used_percent = Stats(ram_pct);
  a.rss_bytes = Stats(rss);
  a.gpu_used_bytes = Stats(gpu);
  a.gpu_used_percent = Stats(gpu_pct);
  const LineFit ram_fit = FitLeastSquares(t_ram, ram);
  a.ram_bytes_per_minute = ram_fit.slope, a.ram_r2 = ram_fit.r2;
  const LineFit rss_fit = FitLeastSquares(t_rss, rss);
  a.rss_bytes_per_minute = rss_fit.slope, a.rss_r2 = rss_fit.r2;

  // The leak rule over the epoch ends, as yolod applies it while the run trains: each worker
  // (a round, split at its "exit" event) fitted on its own, its first epoch (the warm-up:
  // allocator and caches fill) left out. The reported fit is a suspected one, else the longest.
  std::vector<std::vector<std::pair<double, double>>> rounds(1);
  bool warm_up = true;
  for (const auto& e : log.events) {
    if (e.kind == "exit") {
      if (!rounds.back().empty()) rounds.emplace_back();
      warm_up = true;
    } else if (e.kind == "epoch" && e.epoch && e.rss_bytes) {
      if (!warm_up) rounds.back().emplace_back(*e.epoch, static_cast<double>(*e.rss_bytes));
      warm_up = false;
    }
  }
  const LeakCriteria criteria;
  LeakFit fit;
  for (const auto& round : rounds) {
    const LeakFit f = FitLeak(round, criteria);
    if ((f.suspected && !fit.suspected) ||
        (f.suspected == fit.suspected && f.epochs > fit.epochs)) {
      fit = f;
    }
  }
  a.epochs_fitted = fit.epochs;
  a.rss_bytes_per_epoch = fit.bytes_per_epoch;
  a.epoch_r2 = fit.r2;
  a.leak_suspected = fit.suspected;
  if (fit.epochs < criteria.min_epochs) {
    a.leak_verdict = absl::StrFormat(
        "not enough epochs to judge: the longest worker has %d epoch ends after "
        "its first, %d needed (each worker, a smart round too, is fitted on its "
        "own, as yolod does)",
        fit.epochs, criteria.min_epochs);
  } else if (fit.suspected) {
    a.leak_verdict = absl::StrCat("leak suspected: ", DescribeLeak(fit));
  } else {
    a.leak_verdict = absl::StrFormat(
        "no leak: RSS at epoch ends changes %+.1f MB per epoch (R² %.2f over %d epochs; a leak "
        "is more than %.0f MB per epoch with R² >= %.1f)",
        fit.bytes_per_epoch / 1e6, fit.r2, fit.epochs, criteria.min_bytes_per_epoch / 1e6,
        criteria.min_r2);
  }
  return a;
}

std::string FormatMemoryAnalysis(const MemoryLog& log, const MemoryAnalysis& a) {
  auto shown = [](std::string text) {  // the file's own text, without control characters
    for (char& c : text) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    }
    return text;
  };
  std::string out = absl::StrFormat(
      "%s%s: %d samples over %.0f s (every %g s), %d events%s\n",
      log.source.empty() ? "memory log" : shown(log.source),
      log.experiment_id.empty() ? "" : absl::StrCat(", experiment ", shown(log.experiment_id)),
      log.samples.size(), a.seconds, log.interval_seconds, log.events.size(),
      log.rss_of.empty() ? "" : absl::StrCat("; RSS of ", shown(log.rss_of)));
  absl::StrAppend(&out,
                  absl::StrFormat("%-18s %12s %12s %12s %12s\n", "", "MIN", "MEAN", "MAX", "P95"));
  auto row = [&](const std::string& label, const SeriesStats& s, double scale, const char* unit) {
    if (s.count == 0) return;
    absl::StrAppend(&out, absl::StrFormat("%-18s %9.1f %-2s %9.1f %-2s %9.1f %-2s %9.1f %-2s\n",
                                          label, s.min / scale, unit, s.mean / scale, unit,
                                          s.max / scale, unit, s.p95 / scale, unit));
  };
  row("RAM used", a.ram_used_bytes, 1e6, "MB");
  row("RAM used of limit", a.ram_used_percent, 1, "%");
  row("RSS", a.rss_bytes, 1e6, "MB");
  row("GPU used", a.gpu_used_bytes, 1e6, "MB");
  row("GPU used of total", a.gpu_used_percent, 1, "%");
  absl::StrAppend(&out, absl::StrFormat("trend: RAM used %+.2f MB/min (R² %.2f)",
                                        a.ram_bytes_per_minute / 1e6, a.ram_r2));
  if (a.rss_bytes.count > 0) {
    absl::StrAppend(&out, absl::StrFormat(", RSS %+.2f MB/min (R² %.2f)",
                                          a.rss_bytes_per_minute / 1e6, a.rss_r2));
  }
  absl::StrAppend(&out, "\nleak: ", a.leak_verdict, "\n");
  auto levels = [&](const char* resource, const double* seconds) {
    absl::StrAppend(&out, "time at each ", resource, " level:");
    for (int i = 0; i < 4; ++i) {
      const double share = a.seconds > 0 ? 100 * seconds[i] / a.seconds : 0;
      absl::StrAppend(&out, absl::StrFormat(" %s %.0f s (%.0f %%)", kLevels[i], seconds[i], share));
    }
    out += "\n";
  };
  levels("RAM", a.ram_level_seconds);
  if (a.has_gpu) levels("GPU", a.gpu_level_seconds);
  return out;
}

}  // namespace yolo
