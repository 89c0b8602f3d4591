#include "server/memory/effective_ram.h"

#include <gtest/gtest.h>

namespace yolo {
namespace {

constexpr int64_t kGb = int64_t{1} << 30;

HostMemInfo Host(int64_t total, int64_t available) {
  HostMemInfo h;
  h.total_bytes = total, h.available_bytes = available;
  return h;
}

CgroupMemory Group(std::optional<int64_t> limit, int64_t working_set) {
  CgroupMemory g;
  g.limit_bytes = limit, g.working_set_bytes = working_set;
  return g;
}

TEST(EffectiveRamTest, TheHostAlone) {
  const RamUse r = EffectiveRam(Host(64 * kGb, 48 * kGb), std::nullopt);
  EXPECT_EQ(r.limit_bytes, 64 * kGb);
  EXPECT_EQ(r.used_bytes, 16 * kGb);
  EXPECT_EQ(r.available_bytes, 48 * kGb);
  EXPECT_DOUBLE_EQ(r.ratio, 0.25);
}

TEST(EffectiveRamTest, ACgroupLimitBelowTheHostIsTheLimit) {
  const RamUse r = EffectiveRam(Host(64 * kGb, 48 * kGb), Group(4 * kGb, 3 * kGb));
  EXPECT_EQ(r.limit_bytes, 4 * kGb);
  EXPECT_EQ(r.used_bytes, 3 * kGb);
  EXPECT_EQ(r.available_bytes, 1 * kGb);
  EXPECT_DOUBLE_EQ(r.ratio, 0.75);
}

TEST(EffectiveRamTest, ABusyHostLeavesLessThanTheCgroupWould) {
  // The container may use 4 GB and uses 1 GB, but the host has only 0.5 GB left.
  const RamUse r = EffectiveRam(Host(64 * kGb, kGb / 2), Group(4 * kGb, kGb));
  EXPECT_EQ(r.limit_bytes, 4 * kGb);
  EXPECT_EQ(r.available_bytes, kGb / 2);
  // A busy host with an idle container: what the container has left, not 0.
  const RamUse idle = EffectiveRam(Host(64 * kGb, 24 * kGb), Group(900 << 20, 100 << 20));
  EXPECT_EQ(idle.available_bytes, 800 << 20);
}

TEST(EffectiveRamTest, NoLimitInTheCgroup) {
  const RamUse r = EffectiveRam(Host(8 * kGb, 6 * kGb), Group(std::nullopt, 7 * kGb));
  EXPECT_EQ(r.limit_bytes, 8 * kGb);
  EXPECT_EQ(r.available_bytes, 6 * kGb);
}

}  // namespace
}  // namespace yolo
