#include "common/memory_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

MemoryLog Header() {
  MemoryLog log;
  log.source = "yolod";
  log.experiment_id = "exp-00000001";
  log.rss_of = "the experiment's worker";
  log.started = std::chrono::system_clock::from_time_t(1764639331);
  log.interval_seconds = 5;
  return log;
}

MemoryLogSample Sample(double t, int64_t used, const char* level = "ok") {
  MemoryLogSample s;
  s.t = t;
  s.ram_used_bytes = used;
  s.ram_limit_bytes = 1000;
  s.ram_level = level;
  s.rss_bytes = used / 2;
  return s;
}

std::string Error(const std::string& text) {
  auto log = ParseMemoryLog(text, "f.json");
  EXPECT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInvalidArgument);
  return log.ok() ? "" : std::string(log.status().message());
}

TEST(MemoryLogTest, WrittenLogReadsBackWithEverySampleAndEvent) {
  const fs::path path =
      fs::temp_directory_path() / ("memory_log_" + std::to_string(getpid()) + ".json");
  MemoryLogWriter writer(path.string(), Header());
  MemoryLogSample gpu = Sample(0, 100);
  gpu.gpus.push_back({0, 5, 10});
  gpu.gpu_level = "notice";
  gpu.psi_full_avg10 = 2.5;
  gpu.epoch = 1;
  writer.Add(gpu);
  writer.Add(Sample(5, 200, "warning"));
  writer.Add(MemoryLogEvent{3, "policy", "batch 8 -> 4", std::nullopt, std::nullopt});
  writer.Add(MemoryLogEvent{4, "epoch", "epoch 1/3", 1, 150});
  ASSERT_TRUE(writer.Flush().ok());
  auto log = ReadMemoryLog(path.string());
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(log->experiment_id, "exp-00000001");
  EXPECT_EQ(log->started, Header().started);
  ASSERT_EQ(log->samples.size(), 2u);
  EXPECT_EQ(log->samples[0].gpus.size(), 1u);
  EXPECT_EQ(*log->samples[0].gpu_level, "notice");
  EXPECT_DOUBLE_EQ(*log->samples[0].psi_full_avg10, 2.5);
  EXPECT_EQ(*log->samples[0].epoch, 1);
  EXPECT_EQ(log->samples[1].ram_level, "warning");
  EXPECT_EQ(*log->samples[1].rss_bytes, 100);
  EXPECT_FALSE(log->samples[1].gpu_level.has_value());
  ASSERT_EQ(log->events.size(), 2u);
  EXPECT_EQ(*log->events[1].rss_bytes, 150);
  // Each flush replaces the file whole: no temporary file stays beside it.
  writer.Add(Sample(10, 300));
  ASSERT_TRUE(writer.Flush().ok());
  EXPECT_EQ(ReadMemoryLog(path.string())->samples.size(), 3u);
  int files = 0;
  for (const auto& e : fs::directory_iterator(path.parent_path())) {
    files += e.path().filename().string().rfind(path.filename().string(), 0) == 0;
  }
  EXPECT_EQ(files, 1);
  fs::remove(path);
}

TEST(MemoryLogTest, ThinnedPastItsBoundWithTheIntervalDoubled) {
  const fs::path path = fs::temp_directory_path() / ("thin_" + std::to_string(getpid()) + ".json");
  MemoryLogWriter real(path.string(), Header(), 8);
  for (int i = 0; i < 100; ++i) real.Add(Sample(i, i));
  ASSERT_TRUE(real.Flush().ok());
  auto thinned = ReadMemoryLog(path.string());
  ASSERT_TRUE(thinned.ok());
  EXPECT_LT(thinned->samples.size(), 8u);
  EXPECT_GE(thinned->samples.size(), 4u);
  EXPECT_GT(thinned->interval_seconds, 5);
  for (size_t i = 1; i < thinned->samples.size(); ++i) {
    EXPECT_GT(thinned->samples[i].t, thinned->samples[i - 1].t);  // still in order
  }
  EXPECT_EQ(thinned->samples.front().t, 0);
  fs::remove(path);
}

TEST(MemoryLogTest, TruncatedForeignAndMalformedFilesAreNamed) {
  const std::string good = MemoryLogToJson([] {
    MemoryLog log = Header();
    log.samples.push_back(Sample(0, 10));
    return log;
  }());
  ASSERT_TRUE(ParseMemoryLog(good, "f.json").ok());
  const std::string truncated = Error(good.substr(0, good.size() / 2));
  EXPECT_NE(truncated.find("f.json"), std::string::npos);
  EXPECT_NE(truncated.find("truncated"), std::string::npos) << truncated;
  EXPECT_NE(Error("{\"samples\": []}").find("not a yolod memory log"), std::string::npos);
  EXPECT_NE(Error("[1, 2]").find("not a yolod memory log"), std::string::npos);
  std::string newer = good;
  newer.replace(newer.find("\"version\": 1"), 12, "\"version\": 7");
  EXPECT_NE(Error(newer).find("version 7"), std::string::npos);
  std::string wrong = good;
  wrong.replace(wrong.find("\"ram_used_bytes\":10"), 19, "\"ram_used_bytes\":\"x\"");
  EXPECT_NE(Error(wrong).find("samples[0].ram_used_bytes: must be an integer"), std::string::npos)
      << Error(wrong);
  std::string level = good;
  level.replace(level.find("\"ok\""), 4, "\"high\"");
  EXPECT_NE(Error(level).find("samples[0].ram_level"), std::string::npos);
  // Numbers a crafted file may hold: too large for a double, not integers, out of range.
  for (const char* bad : {"1e400", "1.5", "9223372036854775808", "-3"}) {
    std::string crafted = good;
    crafted.replace(crafted.find("\"ram_used_bytes\":10"), 19,
                    std::string("\"ram_used_bytes\":") + bad);
    EXPECT_NE(Error(crafted).find("f.json"), std::string::npos) << bad;
  }
  std::string far = good;
  far.replace(far.find("\"t\":0.0"), 7, "\"t\":1e300");
  EXPECT_NE(Error(far).find("samples[0].t"), std::string::npos) << Error(far);
  MemoryLog backwards = Header();
  backwards.samples = {Sample(5, 10), Sample(1, 10)};
  EXPECT_NE(Error(MemoryLogToJson(backwards)).find("samples[1].t"), std::string::npos);
  EXPECT_EQ(ReadMemoryLog("/nonexistent/memory_log.json").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(MemoryLogTest, AnalysisGivesStatsTimeAtLevelsAndTheLeakVerdict) {
  MemoryLog log = Header();
  // 20 samples a second apart: 10 ok, 5 warning, 5 danger; RAM 10 .. 200.
  for (int i = 0; i < 20; ++i) {
    log.samples.push_back(Sample(i, (i + 1) * 10, i < 10 ? "ok" : i < 15 ? "warning" : "danger"));
  }
  MemoryAnalysis a = AnalyzeMemoryLog(log);
  EXPECT_DOUBLE_EQ(a.seconds, 19);
  EXPECT_DOUBLE_EQ(a.ram_used_bytes.min, 10);
  EXPECT_DOUBLE_EQ(a.ram_used_bytes.max, 200);
  EXPECT_DOUBLE_EQ(a.ram_used_bytes.mean, 105);
  EXPECT_DOUBLE_EQ(a.ram_used_bytes.p95, 190);  // the 19th of 20
  EXPECT_DOUBLE_EQ(a.ram_used_percent.max, 20);
  EXPECT_DOUBLE_EQ(a.rss_bytes.max, 100);
  EXPECT_NEAR(a.ram_bytes_per_minute, 600, 1e-6);  // 10 bytes a second
  EXPECT_NEAR(a.ram_r2, 1, 1e-9);
  EXPECT_DOUBLE_EQ(a.ram_level_seconds[0], 10);
  EXPECT_DOUBLE_EQ(a.ram_level_seconds[2], 5);
  EXPECT_DOUBLE_EQ(a.ram_level_seconds[3], 4);  // the last sample counts nothing
  EXPECT_FALSE(a.has_gpu);
  EXPECT_NE(a.leak_verdict.find("not enough epochs"), std::string::npos);

  // Epoch ends growing 50 MB each after the warm-up: a leak; flat ones are not.
  MemoryLog leaking = Header(), flat = Header();
  for (int e = 1; e <= 8; ++e) {
    leaking.events.push_back({e * 10.0, "epoch", "", e, int64_t{500'000'000} + e * 50'000'000});
    flat.events.push_back({e * 10.0, "epoch", "", e, int64_t{500'000'000} + (e % 2) * 1'000'000});
  }
  const MemoryAnalysis leak = AnalyzeMemoryLog(leaking);
  EXPECT_TRUE(leak.leak_suspected);
  EXPECT_EQ(leak.epochs_fitted, 7);  // the first left out
  EXPECT_NEAR(leak.rss_bytes_per_epoch, 50e6, 1);
  EXPECT_NE(leak.leak_verdict.find("leak suspected"), std::string::npos);
  const MemoryAnalysis none = AnalyzeMemoryLog(flat);
  EXPECT_FALSE(none.leak_suspected);
  EXPECT_NE(none.leak_verdict.find("no leak"), std::string::npos);
  const std::string table = FormatMemoryAnalysis(log, a);
  EXPECT_NE(table.find("P95"), std::string::npos);
  EXPECT_NE(table.find("danger 4 s"), std::string::npos) << table;
}

}  // namespace
}  // namespace yolo
