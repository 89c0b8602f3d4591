#include "server/experiments/training_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/temp_dir.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

TEST(TrainingConfigTest, UpdatesAreCheckedSavedAndReloaded) {
  TempDir tmp;
  const fs::path dir = tmp.str();
  auto store = TrainingConfigStore::Open(dir.string());
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->Get().empty());
  auto set = (*store)->Update({{"batch", "4"}, {"amp", "False"}}, {});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->at("batch"), "4");
  EXPECT_EQ(set->at("amp"), "false");  // canonical
  auto bad = (*store)->Update({{"batch", "four"}}, {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("batch"), std::string::npos);
  EXPECT_FALSE((*store)->Update({{"project", "/tmp"}}, {}).ok());
  EXPECT_EQ((*store)->Get().at("batch"), "4");  // a refused update changes nothing
  auto reopened = TrainingConfigStore::Open(dir.string());
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->Get().at("batch"), "4");
  ASSERT_TRUE((*reopened)->Update({}, {"batch"}).ok());
  EXPECT_EQ((*reopened)->Get().count("batch"), 0u);
  std::ofstream(dir / "training_config.yaml") << "batch: [1\n";
  EXPECT_FALSE(TrainingConfigStore::Open(dir.string()).ok());
}

TEST(TrainingConfigTest, ProfilesFollowTheGuide) {
  EXPECT_EQ(ProfileArgsFor("cpu", true).at("batch"), "4");
  EXPECT_EQ(ProfileArgsFor("", false).at("workers"), "2");
  EXPECT_EQ(ProfileArgsFor("", true).at("batch"), "16");
  EXPECT_EQ(ProfileArgsFor("0", true).at("amp"), "true");
  for (const auto& p : DeviceProfiles(false)) {
    if (p.name != "cpu") {
      EXPECT_FALSE(p.available) << p.name;
    }
  }
}

}  // namespace
}  // namespace yolo
