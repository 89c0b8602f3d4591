#include "server/metrics/yolod_metrics.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace yolo {
namespace {

std::string Text(prometheus::Registry& registry) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry.Collect());
  return out.str();
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}

MemorySnapshot Memory(double used_ratio) {
  MemorySnapshot s;
  MemorySample m;
  m.wall = std::chrono::system_clock::now();
  m.host = HostMemInfo{24'000'000'000, static_cast<int64_t>(24e9 * (1 - used_ratio)), 0, 0};
  m.ram_limit_bytes = 24'000'000'000;
  m.ram_used_bytes = static_cast<int64_t>(24e9 * used_ratio);
  m.ram_ratio = used_ratio;
  m.ram_level = used_ratio > 0.8 ? Level::kWarning : Level::kOk;
  GpuInfo gpu;
  gpu.index = 0;
  gpu.uuid = "GPU-1234";
  gpu.total_bytes = 80'000'000'000;
  gpu.used_bytes = 8'000'000'000;
  m.gpus = std::vector<GpuInfo>{gpu};
  m.gpu_ratio = 0.1;
  m.pressure = MemoryPressure{1.5, 0.5, 0.25, 0, 3'000'000, 1'000'000};
  s.sample = m;
  s.gpu = kDefaultGpuThresholds;
  s.watchdog.samples = 10;
  s.watchdog.sample_seconds_buckets[1] = 10;
  s.watchdog.sample_seconds_total = 0.008;
  s.cleanups.runs["warning"] = 2;
  s.cleanups.yolod_freed_bytes["warning"] = 4096;
  return s;
}

TEST(MemoryMetricsTest, ExportsLevelsThresholdsAndGpusInBaseUnits) {
  prometheus::Registry registry;
  MemoryMetrics metrics(registry);
  MemorySnapshot s = Memory(0.85);
  v1::WorkerMemory w;
  w.set_experiment_id("exp-1");
  w.mutable_process()->set_rss_bytes(500'000'000);
  w.mutable_cuda()->set_device(0);
  w.mutable_cuda()->set_reserved_bytes(2'000'000'000);
  w.mutable_cuda()->set_alloc_retries(3);
  s.workers = {w};
  metrics.Update(s);
  const std::string text = Text(registry);
  EXPECT_TRUE(Has(text, "yolod_memory_used_ratio{resource=\"ram\"} 0.85")) << text;
  EXPECT_TRUE(Has(text, "yolod_memory_level{resource=\"ram\"} 2"));
  EXPECT_TRUE(Has(text, "yolod_memory_level_state{level=\"warning\",resource=\"ram\"} 1"));
  EXPECT_TRUE(Has(text, "yolod_memory_level_state{level=\"ok\",resource=\"ram\"} 0"));
  EXPECT_TRUE(Has(text, "yolod_memory_threshold_ratio{level=\"danger\",resource=\"gpu\"} 0.95"));
  EXPECT_TRUE(Has(text, "yolod_gpu_memory_used_bytes{gpu=\"0\",uuid=\"GPU-1234\"} 8000000000"));
  EXPECT_TRUE(Has(text, "yolod_memory_pressure_ratio{kind=\"some\",window=\"10s\"} 0.015"));
  EXPECT_TRUE(Has(text, "yolod_memory_pressure_stalled_seconds_total{kind=\"some\"} 3"));
  EXPECT_TRUE(
      Has(text, "yolod_process_rss_bytes{component=\"worker\",experiment=\"exp-1\"} 500000000"));
  EXPECT_TRUE(
      Has(text, "yolod_torch_reserved_bytes{device=\"cuda:0\",experiment=\"exp-1\"} 2000000000"));
  EXPECT_TRUE(
      Has(text, "yolod_torch_alloc_retries_total{device=\"cuda:0\",experiment=\"exp-1\"} 3"));
  EXPECT_TRUE(Has(text, "yolod_cleanups_total{trigger=\"warning\"} 2"));
  EXPECT_TRUE(Has(text,
                  "yolod_cleanup_freed_bytes_total{component=\"yolod\",trigger=\"warning\"} "
                  "4096"));
  EXPECT_TRUE(Has(text, "yolod_watchdog_sample_duration_seconds_count 10"));
  EXPECT_TRUE(Has(text, "yolod_watchdog_sample_duration_seconds_bucket{le=\"0.001\"} 10"));
  EXPECT_TRUE(Has(text, "yolod_watchdog_sample_duration_seconds_bucket{le=\"0.0005\"} 0"));
}

TEST(MemoryMetricsTest, WorkerSeriesGoWithTheWorkerAndCountersStayMonotonic) {
  prometheus::Registry registry;
  MemoryMetrics metrics(registry);
  MemorySnapshot s = Memory(0.5);
  v1::WorkerMemory w;
  w.set_experiment_id("exp-1");
  w.mutable_process()->set_rss_bytes(1);
  s.workers = {w};
  metrics.Update(s);
  EXPECT_TRUE(Has(Text(registry), "experiment=\"exp-1\""));
  s.workers.clear();
  s.watchdog.samples = 12;
  s.watchdog.sample_seconds_buckets[1] = 12;
  metrics.Update(s);
  const std::string text = Text(registry);
  EXPECT_FALSE(Has(text, "experiment=\"exp-1\"")) << text;
  EXPECT_TRUE(Has(text, "yolod_watchdog_samples_total 12"));
  EXPECT_TRUE(Has(text, "yolod_watchdog_sample_duration_seconds_count 12"));
}

v1::Experiment Running(const std::string& id) {
  v1::Experiment e;
  e.set_id(id);
  e.mutable_spec()->set_name("shapes");
  e.set_state(v1::RUNNING);
  e.set_device("cpu");
  (*e.mutable_resolved_args())["model"] = "yolov8n.yaml";
  auto* p = e.mutable_progress();
  p->set_epoch(3);
  p->set_epochs(10);
  p->set_batch(4);
  p->set_batches(8);
  p->set_box_loss(1.25);
  p->set_images_per_second(12.5);
  e.set_epochs_completed(2);
  e.mutable_last_epoch()->set_map50_95(0.375);
  e.set_batch(16);
  return e;
}

TEST(ExperimentMetricsTest, ProgressStatesAndADeletedExperimentsSeriesGo) {
  prometheus::Registry registry;
  ExperimentMetrics metrics(registry);
  ExperimentSnapshot s;
  s.experiments = {Running("a"), Running("b")};
  s.experiments[1].set_state(v1::FAILED);
  s.counters.entered[v1::FAILED] = 1;
  s.counters.memory_actions["oom_resume"] = 2;
  s.counters.memory_actions["leak_suspected"] = 1;
  metrics.Update(s);
  std::string text = Text(registry);
  EXPECT_TRUE(Has(text, "yolod_experiments{state=\"running\"} 1")) << text;
  EXPECT_TRUE(Has(text, "yolod_experiments{state=\"failed\"} 1"));
  EXPECT_TRUE(Has(text, "yolod_experiments{state=\"queued\"} 0"));
  EXPECT_TRUE(Has(text, "yolod_experiment_batches_completed{experiment=\"a\"} 20"));
  EXPECT_TRUE(Has(text, "yolod_experiment_images_per_second{experiment=\"a\"} 12.5"));
  EXPECT_TRUE(Has(text, "yolod_experiment_images_per_second{experiment=\"b\"} 0"));
  EXPECT_TRUE(Has(text, "yolod_experiment_loss{experiment=\"a\",loss=\"box\"} 1.25"));
  EXPECT_TRUE(Has(text, "yolod_experiment_map50_95_ratio{experiment=\"a\"} 0.375"));
  EXPECT_TRUE(Has(text, "yolod_experiment_state{experiment=\"b\",state=\"failed\"} 1"));
  EXPECT_TRUE(Has(text,
                  "yolod_experiment_info{device=\"cpu\",experiment=\"a\",model=\"yolov8n"
                  ".yaml\",name=\"shapes\"} 1"));
  EXPECT_TRUE(Has(text, "yolod_experiment_transitions_total{state=\"failed\"} 1"));
  EXPECT_TRUE(Has(text, "yolod_oom_recoveries_total{by=\"yolod\"} 2"));
  EXPECT_TRUE(Has(text, "yolod_leaks_suspected_total 1"));

  s.experiments.pop_back();  // b deleted
  metrics.Update(s);
  text = Text(registry);
  EXPECT_FALSE(Has(text, "experiment=\"b\"")) << text;
  EXPECT_TRUE(Has(text, "yolod_experiments{state=\"failed\"} 0"));
  EXPECT_TRUE(Has(text, "yolod_experiment_transitions_total{state=\"failed\"} 1"));
}

}  // namespace
}  // namespace yolo
