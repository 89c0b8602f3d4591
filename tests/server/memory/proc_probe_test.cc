#include "server/memory/proc_probe.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
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

TEST(ProcProbeTest, ReadsSmapsRollupAndPressure) {
  TempDir tmp;
  tmp.Write("7/status", "Name:\tyolod\nVmHWM:\t  4096 kB\nVmRSS:\t  3072 kB\n");
  tmp.Write("7/smaps_rollup",
            "55d0-7ffe ---p 00000000 00:00 0   [rollup]\nRss:  3072 kB\nPss:  2000 kB\n"
            "Anonymous:  1500 kB\nSwap:  12 kB\n");
  tmp.Write("pressure/memory",
            "some avg10=1.50 avg60=0.75 avg300=0.10 total=123456\n"
            "full avg10=0.40 avg60=0.20 avg300=0.00 total=6543\n");
  ProcProbe probe(tmp.str());
  auto p = probe.Process(7);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->has_smaps);
  EXPECT_EQ(p->pss_bytes, 2000 * 1024);
  EXPECT_EQ(p->anon_bytes, 1500 * 1024);
  EXPECT_EQ(p->swap_bytes, 12 * 1024);
  auto psi = probe.Pressure();
  ASSERT_TRUE(psi.ok()) << psi.status();
  EXPECT_DOUBLE_EQ(psi->some_avg10, 1.5);
  EXPECT_DOUBLE_EQ(psi->full_avg60, 0.2);
  EXPECT_EQ(psi->some_total_us, 123456);
  EXPECT_EQ(psi->full_total_us, 6543);
}

TEST(ProcProbeTest, AMissingOrMalformedFileIsAnErrorNamingIt) {
  TempDir tmp;
  ProcProbe probe(tmp.str());
  EXPECT_EQ(probe.Pressure().status().code(), absl::StatusCode::kNotFound);  // absent, not zero
  tmp.Write("pressure/memory", "some avg10=lots avg60=0 total=0\n");
  auto bad = probe.Pressure();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("pressure/memory: line 1"), std::string::npos)
      << bad.status();
  tmp.Write("8/status", "Name:\tworker\nVmRSS:\t 10 kB\n");  // no smaps_rollup: PSS absent
  auto p = probe.Process(8);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->has_smaps);
  tmp.Write("meminfo", std::string(2 << 20, 'x'));  // larger than any real meminfo
  EXPECT_FALSE(probe.Host().ok());
}

TEST(ProcProbeTest, TreeSumsTheDescendantsOfEveryThread) {
  TempDir tmp;
  tmp.Write("10/status", "Name:\tyolo-worker\nVmHWM:\t 300 kB\nVmRSS:\t 200 kB\n");
  tmp.Write("10/task/10/children", "11 ");
  tmp.Write("10/task/12/children", "13 99\n");  // another thread's child; 99 is gone
  tmp.Write("11/status", "Name:\tyolo-worker\nVmHWM:\t 50 kB\nVmRSS:\t 40 kB\n");
  tmp.Write("11/task/11/children", "14");
  tmp.Write("13/status", "Name:\tyolo-worker\nVmHWM:\t 7 kB\nVmRSS:\t 5 kB\n");
  tmp.Write("14/status", "Name:\tyolo-worker\nVmHWM:\t 3 kB\nVmRSS:\t 1 kB\n");
  tmp.Write("14/task/14/children", "10");  // a loop is not followed twice
  ProcProbe probe(tmp.str());
  auto tree = probe.Tree(10);
  ASSERT_TRUE(tree.ok()) << tree.status();
  EXPECT_EQ(tree->processes, 4);
  EXPECT_EQ(tree->rss_bytes, (200 + 40 + 5 + 1) * 1024);
  EXPECT_EQ(tree->peak_rss_bytes, (300 + 50 + 7 + 3) * 1024);
  auto leaf = probe.Tree(13);
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(leaf->processes, 1);
  EXPECT_EQ(leaf->rss_bytes, 5 * 1024);
  EXPECT_EQ(probe.Tree(99).status().code(), absl::StatusCode::kNotFound);
}

TEST(ProcProbeTest, TreeCountsARealChild) {
  ProcProbe probe;
  if (!fs::exists("/proc/self/task/" + std::to_string(getpid()) + "/children")) {
    GTEST_SKIP() << "this kernel has no /proc/<pid>/task/<tid>/children";
  }
  auto alone = probe.SelfTree();
  ASSERT_TRUE(alone.ok());
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pause();
    _exit(0);
  }
  auto both = probe.SelfTree();
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(both->processes, alone->processes + 1);
  EXPECT_GT(both->rss_bytes, alone->rss_bytes);
}

}  // namespace
}  // namespace yolo
