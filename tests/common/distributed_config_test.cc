#include "common/distributed_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>
#include <vector>

namespace yolo {
namespace {

absl::StatusOr<DistributedConfig> Layout(const std::vector<std::string>& tokens) {
  TrainArgs args;
  if (absl::Status s = args.ParseTokens(tokens); !s.ok()) return s;
  return ResolveDistributedLayout(args);
}

TEST(DistributedConfigTest, OneProcessUnlessAskedForMore) {
  auto one = Layout({"device=cpu"});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_FALSE(one->enabled());
  auto gpu = Layout({"device=0"});
  ASSERT_TRUE(gpu.ok());
  EXPECT_FALSE(gpu->enabled());
  EXPECT_EQ(gpu->device(), "0");
}

TEST(DistributedConfigTest, RanksFromTheGpuListOrWorldSize) {
  auto gpus = Layout({"device=cuda:2,3"});
  ASSERT_TRUE(gpus.ok()) << gpus.status();
  EXPECT_EQ(gpus->world_size, 2);
  EXPECT_EQ(gpus->local_world_size, 2);
  EXPECT_EQ(gpus->gpus, (std::vector<int>{2, 3}));
  EXPECT_EQ(gpus->device(), "2");  // local rank 0's GPU
  auto cpu = Layout({"device=cpu", "world_size=4", "nnodes=2", "node_rank=1", "master_port=29500"});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->local_world_size, 2);
  EXPECT_EQ(cpu->rank, 2);  // node 1's local rank 0
}

TEST(DistributedConfigTest, AnErrorNamesTheArgumentThatDoesNotFit) {
  auto expect = [](const std::vector<std::string>& tokens, const std::string& key) {
    auto c = Layout(tokens);
    ASSERT_FALSE(c.ok()) << tokens.back();
    EXPECT_NE(c.status().message().find("'" + key + "'"), std::string::npos) << c.status();
  };
  expect({"device=0,1", "world_size=3"}, "world_size");
  expect({"device=0", "world_size=2"}, "world_size");
  expect({"device=cpu", "world_size=3", "nnodes=2", "master_port=1"}, "world_size");
  expect({"device=cpu", "world_size=2", "nnodes=2", "node_rank=2", "master_port=1"}, "node_rank");
  expect({"device=cpu", "world_size=2", "nnodes=2"}, "master_port");
}

TEST(DistributedConfigTest, ALaunchedRankFindsItsPlaceInTheEnvironment) {
  TrainArgs args;
  ASSERT_TRUE(args.ParseTokens({"device=cpu", "world_size=2"}).ok());
  setenv(kRankEnv, "1", 1);
  setenv(kLocalRankEnv, "1", 1);
  setenv(kMasterPortEnv, "4242", 1);
  auto rank = ResolveDistributed(args);
  setenv(kRankEnv, "5", 1);
  auto bad = ResolveDistributed(args);
  auto layout = ResolveDistributedLayout(args);  // the variables play no part
  unsetenv(kRankEnv);
  unsetenv(kLocalRankEnv);
  unsetenv(kMasterPortEnv);
  ASSERT_TRUE(rank.ok()) << rank.status();
  EXPECT_EQ(rank->rank, 1);
  EXPECT_EQ(rank->local_rank, 1);
  EXPECT_EQ(rank->master_port, 4242);
  EXPECT_FALSE(bad.ok());
  ASSERT_TRUE(layout.ok());
  EXPECT_EQ(layout->rank, 0);
  EXPECT_EQ(layout->master_port, 0);
}

}  // namespace
}  // namespace yolo
