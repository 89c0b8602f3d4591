#include "server/experiments/spec_check.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace yolo {
namespace {
namespace fs = std::filesystem;

class SpecCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("spec_check_" + std::to_string(::getpid()));
    fs::create_directories(dir_ / "images/train");
    fs::create_directories(dir_ / "images/val");
    std::ofstream(dir_ / "data.yaml")
        << "path: " << dir_.string() << "\ntrain: images/train\nval: images/val\nnames: [a, b]\n";
    std::ofstream(dir_ / "broken.yaml") << "train: [x\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::map<std::string, std::string> Args(std::map<std::string, std::string> extra = {}) const {
    extra.emplace("data", (dir_ / "data.yaml").string());
    return extra;
  }
  // The error's message for args, "" when accepted.
  std::string Error(const std::map<std::string, std::string>& args,
                    SpecCheckOptions options = {}) const {
    auto r = CheckSpec("n", args, options);
    if (r.ok()) return "";
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    return std::string(r.status().message());
  }

  fs::path dir_;
};

TEST_F(SpecCheckTest, AcceptsAValidSpecAndLayersDefaults) {
  SpecCheckOptions o;
  o.profile_defaults = {{"batch", "4"}, {"workers", "2"}};
  o.config_defaults = {{"batch", "8"}};
  auto r = CheckSpec("n", Args({{"epochs", "3"}, {"imgsz", "320"}}), o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->args.at("batch"), "8");    // the config over the profile
  EXPECT_EQ(r->args.at("workers"), "2");  // the profile where nothing else says
  EXPECT_EQ(r->args.at("epochs"), "3");
  EXPECT_EQ(r->args.at("model"), "yolov8n");
  EXPECT_EQ(r->device, "cpu");
  EXPECT_EQ(r->args.at("device"), "cpu");
  auto spec_wins = CheckSpec("n", Args({{"batch", "2"}}), o);
  ASSERT_TRUE(spec_wins.ok());
  EXPECT_EQ(spec_wins->args.at("batch"), "2");
}

TEST_F(SpecCheckTest, EachBadFieldIsNamed) {
  EXPECT_NE(Error(Args({{"imgsz", "100"}})).find("imgsz"), std::string::npos);
  EXPECT_NE(Error(Args({{"imgsz", "8192"}})).find("imgsz"), std::string::npos);
  EXPECT_NE(Error(Args({{"batch", "0"}})).find("batch"), std::string::npos);
  EXPECT_NE(Error(Args({{"batch", "0.5"}})).find("batch"), std::string::npos);
  EXPECT_NE(Error(Args({{"epochs", "0"}})).find("epochs"), std::string::npos);
  EXPECT_NE(Error(Args({{"device", "mps"}})).find("mps"), std::string::npos);
  EXPECT_NE(Error(Args({{"device", "0"}})).find("no GPU"), std::string::npos);
  EXPECT_NE(Error(Args({{"model", "resnet50"}})).find("model"), std::string::npos);
  EXPECT_NE(Error(Args({{"model", "/nope/last.pt"}})).find("does not exist"), std::string::npos);
  EXPECT_NE(Error(Args({{"lr0", "fast"}})).find("lr0"), std::string::npos);
  EXPECT_NE(Error(Args({{"bogus", "1"}})).find("bogus"), std::string::npos);
  EXPECT_NE(Error(Args({{"project", "/tmp"}})).find("project"), std::string::npos);
  EXPECT_NE(Error({}).find("data"), std::string::npos);
  EXPECT_NE(Error({{"data", (dir_ / "missing.yaml").string()}}).find("data"), std::string::npos);
  EXPECT_NE(Error({{"data", (dir_ / "broken.yaml").string()}}).find("broken.yaml"),
            std::string::npos);
  EXPECT_NE(Error(Args({{"optimizer", std::string(5000, 'a')}})).find("longer than"),
            std::string::npos);
}

TEST_F(SpecCheckTest, GpuDevicesWhenThereIsOne) {
  SpecCheckOptions o;
  o.has_gpu = true;
  auto r = CheckSpec("n", Args(), o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->device, "cuda:0");
  auto one = CheckSpec("n", Args({{"device", "cuda:1"}}), o);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->device, "cuda:1");
  EXPECT_EQ(one->args.at("device"), "1");
}

TEST_F(SpecCheckTest, AllowedRootsConfinePaths) {
  SpecCheckOptions o;
  o.allowed_roots = {(dir_ / "elsewhere").string()};
  EXPECT_NE(Error(Args(), o).find("outside the allowed roots"), std::string::npos);
  o.allowed_roots = {dir_.string()};
  EXPECT_EQ(Error(Args(), o), "");
  EXPECT_TRUE(UnderAllowedRoots("/a/b/c", {"/a"}));
  EXPECT_FALSE(UnderAllowedRoots("/a/../etc/passwd", {"/a"}));
  EXPECT_FALSE(UnderAllowedRoots("/ab/c", {"/a"}));
  EXPECT_TRUE(UnderAllowedRoots("/anything", {}));
}

}  // namespace
}  // namespace yolo
