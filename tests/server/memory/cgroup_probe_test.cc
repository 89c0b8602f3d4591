#include "server/memory/cgroup_probe.h"

#include <gtest/gtest.h>

#include "tests/temp_dir.h"

namespace yolo {
namespace {

TEST(CgroupProbeTest, ReadsVersion2AndComputesTheWorkingSet) {
  TempDir tmp;
  tmp.Write("proc/self/cgroup", "0::/yolod.slice\n");
  const std::string g = "sys/yolod.slice/";
  tmp.Write(g + "memory.current", "1000000\n");
  tmp.Write(g + "memory.max", "4000000\n");
  tmp.Write(g + "memory.high", "max\n");
  tmp.Write(g + "memory.stat",
            "anon 600000\nfile 400000\nactive_file 100000\n"
            "inactive_file 300000\n");
  tmp.Write(g + "memory.events", "low 0\nhigh 2\nmax 5\noom 1\noom_kill 1\n");
  tmp.Write(g + "memory.pressure",
            "some avg10=3.00 avg60=1.00 avg300=0.00 total=10\n"
            "full avg10=2.00 avg60=0.50 avg300=0.00 total=5\n");
  CgroupProbe probe((tmp / "sys").string(), (tmp / "proc").string());
  auto m = probe.Read();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->version, 2);
  EXPECT_EQ(m->usage_bytes, 1000000);
  ASSERT_TRUE(m->limit_bytes.has_value());
  EXPECT_EQ(*m->limit_bytes, 4000000);
  EXPECT_FALSE(m->high_bytes.has_value());  // "max"
  EXPECT_EQ(m->working_set_bytes, 700000);  // usage - inactive_file, as the kubelet counts
  EXPECT_EQ(m->oom_kill_events, 1);
  EXPECT_EQ(m->max_events, 5);
  ASSERT_TRUE(m->pressure.has_value());
  EXPECT_DOUBLE_EQ(m->pressure->full_avg10, 2.0);
}

TEST(CgroupProbeTest, UnlimitedVersion2HasNoLimit) {
  TempDir tmp;
  tmp.Write("proc/self/cgroup", "0::/\n");
  tmp.Write("sys/memory.current", "5\n");
  tmp.Write("sys/memory.stat", "anon 5\n");
  CgroupProbe probe((tmp / "sys").string(), (tmp / "proc").string());
  auto m = probe.Read();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->limit_bytes.has_value());  // the root group has no memory.max
}

TEST(CgroupProbeTest, FallsBackToVersion1) {
  TempDir tmp;
  tmp.Write("proc/self/cgroup", "9:name=systemd:/\n4:memory:/job/42\n0::/\n");
  const std::string g = "sys/memory/job/42/";
  tmp.Write(g + "memory.usage_in_bytes", "2000\n");
  tmp.Write(g + "memory.limit_in_bytes", "9223372036854771712\n");  // v1's "no limit"
  tmp.Write(g + "memory.stat",
            "cache 10\nrss 20\ntotal_cache 1000\ntotal_rss 900\n"
            "total_inactive_file 500\n");
  tmp.Write(g + "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
  CgroupProbe probe((tmp / "sys").string(), (tmp / "proc").string());
  auto m = probe.Read();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->version, 1);
  EXPECT_FALSE(m->limit_bytes.has_value());
  EXPECT_EQ(m->working_set_bytes, 1500);
  EXPECT_EQ(m->oom_kill_events, 3);
  tmp.Write(g + "memory.limit_in_bytes", "8000\n");
  m = probe.Read();
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->limit_bytes.value_or(-1), 8000);
}

TEST(CgroupProbeTest, AbsentIsNotFoundAndMalformedNamesTheFile) {
  TempDir tmp;
  tmp.Write("proc/self/cgroup", "0::/\n");
  CgroupProbe probe((tmp / "sys").string(), (tmp / "proc").string());
  EXPECT_EQ(probe.Read().status().code(), absl::StatusCode::kNotFound);
  tmp.Write("sys/memory.current", "12x\n");
  tmp.Write("sys/memory.stat", "anon 5\n");
  auto bad = probe.Read();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("memory.current"), std::string::npos) << bad.status();
  tmp.Write("sys/memory.current", "12\n");
  tmp.Write("sys/memory.stat", "anon five\n");
  bad = probe.Read();
  EXPECT_NE(bad.status().message().find("memory.stat: line 1"), std::string::npos) << bad.status();
}

TEST(CgroupProbeTest, ReadsThisMachineOrSaysItIsAbsent) {
  auto m = CgroupProbe().Read();
  if (m.ok()) {
    EXPECT_GT(m->usage_bytes, 0);
  } else {
    EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound) << m.status();
  }
}

}  // namespace
}  // namespace yolo
