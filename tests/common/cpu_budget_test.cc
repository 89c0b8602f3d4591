#include "common/cpu_budget.h"

#include <gtest/gtest.h>

namespace yolo {
namespace {

TEST(CpuBudgetTest, ReadsCgroupCpuMax) {
  EXPECT_EQ(CpusFromCgroupMax("200000 100000"), 2);
  EXPECT_EQ(CpusFromCgroupMax("150000 100000"), 2);
  EXPECT_EQ(CpusFromCgroupMax("50000 100000"), 1);
  EXPECT_EQ(CpusFromCgroupMax("max 100000"), 0);
  EXPECT_EQ(CpusFromCgroupMax("garbage"), 0);
}

TEST(CpuBudgetTest, UsableCpusIsPositive) { EXPECT_GE(UsableCpus(), 1); }

}  // namespace
}  // namespace yolo
