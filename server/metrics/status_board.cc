#include "server/metrics/status_board.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/metrics/yolod_metrics.h"  // StateLabel

namespace yolo {
namespace {

using nlohmann::json;

double Seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

json ThresholdsJson(const Thresholds& t) {
  return {{"notice", t.notice}, {"warning", t.warning}, {"danger", t.danger}};
}

}  // namespace

StatusBoard::StatusBoard(StatusSources sources, Options options)
    : sources_(std::move(sources)), options_(options) {}

StatusBoard::~StatusBoard() { Stop(); }

void StatusBoard::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void StatusBoard::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StatusBoard::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    SampleOnce();
    lock.lock();
    cv_.wait_for(lock, options_.interval, [this] { return stop_; });
  }
}

void StatusBoard::SampleOnce() {
  Point p;
  p.wall = std::chrono::system_clock::now();
  std::map<int, std::string> names;
  if (auto s = sources_.latest ? sources_.latest() : std::nullopt) {
    p.ram_ratio = s->ram_ratio;
    p.ram_used = s->ram_used_bytes;
    p.ram_limit = s->ram_limit_bytes;
    for (const GpuInfo& g : s->gpus.value_or(std::vector<GpuInfo>{})) {
      p.gpu_ratio[g.index] =
          g.total_bytes > 0 ? static_cast<double>(g.used_bytes) / g.total_bytes : 0;
      names[g.index] = absl::StrCat(g.name, " (", g.uuid, ")");
    }
  }
  std::vector<v1::WorkerMemory> workers;
  if (sources_.workers) workers = sources_.workers();
  for (const v1::WorkerMemory& w : workers) {
    p.worker_rss[w.experiment_id()] = w.process().rss_bytes();
  }
  std::lock_guard<std::mutex> lock(mu_);
  workers_ = std::move(workers);
  for (auto& [index, name] : names) gpu_names_[index] = name;
  points_.push_back(std::move(p));
  while (!points_.empty() && points_.back().wall - points_.front().wall > options_.window) {
    points_.pop_front();
  }
}

std::vector<v1::WorkerMemory> StatusBoard::Workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_;
}

std::string StatusBoard::Json() const {
  json out;
  out["time"] = Seconds(std::chrono::system_clock::now());
  if (sources_.thresholds) {
    const auto [ram, gpu] = sources_.thresholds();
    out["thresholds"] = {{"ram", ThresholdsJson(ram)}, {"gpu", ThresholdsJson(gpu)}};
  }
  if (auto s = sources_.latest ? sources_.latest() : std::nullopt) {
    out["ram"] = {{"level", LevelName(s->ram_level)},
                  {"used_ratio", s->ram_ratio},
                  {"used_bytes", s->ram_used_bytes},
                  {"limit_bytes", s->ram_limit_bytes}};
    if (s->gpus && !s->gpus->empty()) {
      out["gpu"] = {{"level", LevelName(s->gpu_level)}, {"used_ratio", s->gpu_ratio}};
    }
    if (s->pressure) out["psi_full_avg10"] = s->pressure->full_avg10 / 100;
  }
  // The history, one array per series, with a shared time axis.
  json times = json::array(), ram = json::array();
  std::map<int, json> gpus;
  std::map<std::string, json> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < points_.size(); ++i) {
      const Point& p = points_[i];
      times.push_back(Seconds(p.wall));
      ram.push_back(p.ram_ratio);
      for (const auto& [index, ratio] : p.gpu_ratio) {
        json& series = gpus[index];
        if (series.is_null()) series = json::array();
        while (series.size() < i) series.push_back(nullptr);
        series.push_back(ratio);
      }
      for (const auto& [id, rss] : p.worker_rss) {
        json& series = workers[id];
        if (series.is_null()) series = json::array();
        while (series.size() < i) series.push_back(nullptr);
        series.push_back(rss);
      }
    }
    json gpu_series = json::array();
    for (auto& [index, series] : gpus) {
      auto name = gpu_names_.find(index);
      gpu_series.push_back({{"index", index},
                            {"name", name == gpu_names_.end() ? "" : name->second},
                            {"used_ratio", series}});
    }
    out["history"] = {{"time", times}, {"ram_used_ratio", ram}, {"gpus", gpu_series}};
  }
  json experiments = json::array();
  if (sources_.experiments) {
    for (const v1::Experiment& e : sources_.experiments()) {
      const v1::Progress& p = e.progress();
      json x = {{"id", e.id()},
                {"name", e.spec().name()},
                {"state", StateLabel(e.state())},
                {"reason", e.reason()},
                {"device", e.device()},
                {"epoch", e.state() == v1::RUNNING ? p.epoch() : e.epochs_completed()},
                {"epochs", p.epochs() > 0 ? p.epochs() : e.last_epoch().epochs()},
                {"batch_in_epoch", p.batch()},
                {"batches", p.batches()},
                {"images_per_second", e.state() == v1::RUNNING ? p.images_per_second() : 0},
                {"map50_95", e.last_epoch().map50_95()},
                {"rss_bytes", p.rss_bytes()}};
      json events = json::array();
      const int n = e.memory_actions_size();
      for (int i = std::max(0, n - 5); i < n; ++i) {
        const v1::MemoryAction& a = e.memory_actions(i);
        events.push_back(
            {{"time", a.time().seconds()}, {"kind", a.kind()}, {"message", a.message()}});
      }
      x["events"] = std::move(events);
      if (auto it = workers.find(e.id()); it != workers.end()) {
        while (it->second.size() < times.size()) it->second.push_back(nullptr);
        x["rss_history"] = it->second;
      }
      experiments.push_back(std::move(x));
    }
  }
  out["experiments"] = std::move(experiments);
  json events = json::array();
  if (sources_.events) {
    auto all = sources_.events();
    for (size_t i = all.size() > 10 ? all.size() - 10 : 0; i < all.size(); ++i) {
      events.push_back({{"time", Seconds(all[i].wall)},
                        {"kind", all[i].kind},
                        {"resource", all[i].resource},
                        {"level", LevelName(all[i].level)},
                        {"message", all[i].message}});
    }
  }
  out["events"] = std::move(events);
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace yolo
