#include "server/memory/proc_probe.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/temp_dir.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

TEST(ProcProbeTest, ReadsFixtureFiles) {
  TempDir tmp;
  const fs::path root = tmp.str();
  fs::create_directories(root / "42");
  std::ofstream(root / "meminfo") << "MemTotal:       24534124 kB\nMemFree:   100 kB\n"
                                     "MemAvailable:   20000000 kB\nSwapTotal: 0 kB\n"
                                     "SwapFree: 0 kB\n";
  std::ofstream(root / "42" / "status") << "Name:\tyolo-worker\nVmHWM:\t  2048 kB\n"
                                           "VmRSS:\t  1024 kB\n";
  ProcProbe probe(root.string());
  auto host = probe.Host();
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->total_bytes, 24534124LL * 1024);
  EXPECT_EQ(host->available_bytes, 20000000LL * 1024);
  auto p = probe.Process(42);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, "yolo-worker");
  EXPECT_EQ(p->rss_bytes, 1024 * 1024);
  EXPECT_EQ(p->peak_rss_bytes, 2048 * 1024);
  EXPECT_EQ(probe.Process(43).status().code(), absl::StatusCode::kNotFound);
  std::ofstream(root / "meminfo") << "MemTotal: 1 kB\n";
  EXPECT_FALSE(probe.Host().ok());
}

TEST(ProcProbeTest, ReadsThisMachine) {
  ProcProbe probe;
  auto host = probe.Host();
  ASSERT_TRUE(host.ok());
  EXPECT_GT(host->total_bytes, host->available_bytes);
  auto self = probe.Self();
  ASSERT_TRUE(self.ok());
  EXPECT_GT(self->rss_bytes, 0);
}

}  // namespace
}  // namespace yolo
