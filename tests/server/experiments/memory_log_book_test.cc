#include "server/experiments/memory_log_book.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

namespace yolo {
namespace {
namespace fs = std::filesystem;

class MemoryLogBookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("log_book_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::vector<fs::path> Logs() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (e.path().extension() == ".json") out.push_back(e.path());
    }
    return out;
  }
  static MemoryLogSource Source(Level level) {
    return {[level] {
              MemorySample s;
              s.wall = std::chrono::system_clock::now();
              s.host = HostMemInfo{1000, 400, 0, 0};
              s.ram_limit_bytes = 1000;
              s.ram_used_bytes = 600;
              s.ram_level = level;
              return std::optional<MemorySample>(s);
            },
            [] {
              return std::make_pair(Thresholds{0.6, 0.7, 0.8}, kDefaultGpuThresholds);
            }};
  }
  fs::path dir_;
};

TEST_F(MemoryLogBookTest, ARunningWorkerIsSampledWithItsEventsAndTheLogClosesWhole) {
  std::vector<fs::path> logs;
  {
    MemoryLogBook book(std::make_shared<ProcProbe>(), std::chrono::milliseconds(100));
    book.SetSource(Source(Level::kWarning));
    book.Open("exp-00000001", dir_.string());
    book.SetWorker("exp-00000001", ::getpid());  // this process stands in for the worker
    book.SetEpoch("exp-00000001", 2);
    book.Event("exp-00000001", "epoch", "epoch 1/3", 1, 123456789);
    book.Event("not-open", "epoch", "dropped");
    std::this_thread::sleep_for(std::chrono::milliseconds(450));
    logs = Logs();
    ASSERT_EQ(logs.size(), 1u);
    auto running = ReadMemoryLog(logs[0].string());
    ASSERT_TRUE(running.ok()) << running.status();
    EXPECT_GE(running->samples.size(), 2u);
    book.Event("exp-00000001", "state", "SUCCEEDED: done");
    book.Close("exp-00000001");
  }  // the destructor writes what was queued
  EXPECT_EQ(Logs().size(), 1u);
  auto log = ReadMemoryLog(logs[0].string());
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(log->experiment_id, "exp-00000001");
  EXPECT_EQ(log->ram_thresholds, (std::vector<double>{60, 70, 80}));
  const MemoryLogSample& s = log->samples.front();
  EXPECT_EQ(s.ram_level, "warning");
  EXPECT_EQ(s.ram_used_bytes, 600);
  ASSERT_TRUE(s.rss_bytes.has_value());
  EXPECT_GT(*s.rss_bytes, 0);  // this process's RSS, read from /proc
  EXPECT_EQ(*s.epoch, 2);
  ASSERT_EQ(log->events.size(), 2u);
  EXPECT_EQ(*log->events[0].rss_bytes, 123456789);
  EXPECT_EQ(log->events[1].message, "SUCCEEDED: done");
}

TEST_F(MemoryLogBookTest, NoWorkerNoSamplesAndForgetWritesNothing) {
  MemoryLogBook book(std::make_shared<ProcProbe>(), std::chrono::milliseconds(100));
  book.SetSource(Source(Level::kOk));
  book.Open("exp-00000002", dir_.string());
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  ASSERT_EQ(Logs().size(), 1u);
  auto log = ReadMemoryLog(Logs()[0].string());
  ASSERT_TRUE(log.ok());
  EXPECT_TRUE(log->samples.empty());  // queued between rounds: nothing to sample
  book.Forget("exp-00000002");
  fs::remove(Logs()[0]);
  book.Event("exp-00000002", "state", "gone");
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  EXPECT_TRUE(Logs().empty());
}

}  // namespace
}  // namespace yolo
