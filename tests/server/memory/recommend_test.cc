#include "server/memory/recommend.h"

#include <gtest/gtest.h>

#include "absl/strings/str_join.h"

namespace yolo {
namespace {

v1::MemoryReport Report(v1::MemoryLevel ram) {
  v1::MemoryReport r;
  r.mutable_ram()->set_level(ram);
  auto* w = r.add_workers();
  w->set_experiment_id("exp-1");
  w->mutable_process()->set_rss_bytes(int64_t{3} << 30);
  w->set_batch(16);
  w->set_workers(8);
  w->set_cache("ram");
  auto* est = w->mutable_estimate();
  est->set_device("cpu");
  est->set_batch(16);
  est->set_bytes_per_image(68e6);
  est->set_loader_bytes(16 * 2e6);
  est->set_cache_bytes(2'400'000'000);
  return r;
}

TEST(RecommendTest, NothingWhileMemoryIsOk) {
  EXPECT_TRUE(Recommend(Report(v1::MEMORY_OK)).empty());
}

TEST(RecommendTest, SaysWhatToLowerByHowMuchAndWhy) {
  const std::string all = absl::StrJoin(Recommend(Report(v1::MEMORY_WARNING)), "\n");
  // (68 MB + 2 MB of loader) per image, 8 images fewer.
  EXPECT_NE(all.find("exp-1: batch 16 -> 8 frees about 560 MB of RAM at this run's rate"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("cache=ram holds about 2.4 GB"), std::string::npos) << all;
  EXPECT_NE(all.find("workers 8 -> 2 frees about 24 MB"), std::string::npos) << all;
}

TEST(RecommendTest, ALeakIsNamedAtAnyLevel) {
  v1::MemoryReport r = Report(v1::MEMORY_OK);
  auto* t = r.mutable_workers(0)->mutable_rss_trend();
  t->set_leak_suspected(true);
  t->set_bytes_per_epoch(60e6);
  t->set_r2(0.99);
  t->set_epochs(6);
  t->set_epochs_to_danger(330);
  const auto lines = Recommend(r);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("grows 60 MB per epoch"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("about 330 epochs"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("yoloctl stop exp-1"), std::string::npos) << lines[0];
}

TEST(RecommendTest, AGpuRunIsSizedAgainstTheGpuLevel) {
  v1::MemoryReport r = Report(v1::MEMORY_WARNING);
  r.mutable_workers(0)->mutable_estimate()->set_device("cuda:0");
  r.mutable_gpu()->set_level(v1::MEMORY_OK);
  // RAM is high but the run's batch lives on the GPU: nothing to say about its batch.
  const std::string all = absl::StrJoin(Recommend(r), "\n");
  EXPECT_EQ(all.find("batch 16 -> 8"), std::string::npos) << all;
  r.mutable_gpu()->set_level(v1::MEMORY_DANGER);
  EXPECT_NE(absl::StrJoin(Recommend(r), "\n").find("of GPU memory"), std::string::npos);
}

TEST(RecommendTest, HighMemoryWithoutRunsSaysWhose) {
  v1::MemoryReport r;
  r.mutable_ram()->set_level(v1::MEMORY_DANGER);
  const auto lines = Recommend(r);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("no experiment is running"), std::string::npos);
}

}  // namespace
}  // namespace yolo
