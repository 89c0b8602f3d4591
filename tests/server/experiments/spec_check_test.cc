#include "server/experiments/spec_check.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
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
  EXPECT_NE(Error(Args({{"batch", "1.5"}})).find("batch"), std::string::npos);
  EXPECT_EQ(Error(Args({{"batch", "0.5"}})), "");  // AutoBatch at half the memory available
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

TEST_F(SpecCheckTest, DataParallelLayoutsAreCheckedBeforeQueueing) {
  SpecCheckOptions o;
  o.has_gpu = true;
  o.gpu_count = 2;
  auto two = CheckSpec("n", Args({{"device", "0,1"}}), o);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->device, "cuda:0,1");
  EXPECT_EQ(two->args.at("device"), "0,1");
  EXPECT_EQ(DevicesOf(two->device), (std::vector<std::string>{"cuda:0", "cuda:1"}));
  EXPECT_EQ(DevicesOf("cpu"), std::vector<std::string>{"cpu"});
  EXPECT_EQ(DevicesOf("cuda:3"), std::vector<std::string>{"cuda:3"});
  // A run on both GPUs waits while either is taken, and takes both.
  std::map<std::string, int> running = {{"cuda:1", 1}};
  EXPECT_FALSE(SlotsFree("cuda:0,1", running, 1));
  EXPECT_TRUE(SlotsFree("cuda:0", running, 1));
  EXPECT_TRUE(SlotsFree("cuda:0,1", running, 2));
  running = {{"cuda:0", 1}, {"cuda:1", 1}};  // what cuda:0,1 holds once running
  EXPECT_FALSE(SlotsFree("cuda:0", running, 1));
  EXPECT_TRUE(SlotsFree("cpu", running, 1));
  const std::string missing = Error(Args({{"device", "1,2"}}), o);
  EXPECT_NE(missing.find("field 'device': '1,2': GPU 2 does not exist (this host has 2"),
            std::string::npos)
      << missing;
  const std::string mismatch = Error(Args({{"device", "0,1"}, {"world_size", "3"}}), o);
  EXPECT_NE(mismatch.find("field 'world_size': 3 does not match device=0,1"), std::string::npos)
      << mismatch;
  // The default device of a GPU host is one GPU: two ranks need two of them.
  EXPECT_NE(Error(Args({{"world_size", "2"}}), o).find("field 'world_size'"), std::string::npos);
  auto cpu = CheckSpec("n", Args({{"device", "cpu"}, {"world_size", "2"}}), o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(DevicesOf(cpu->device), std::vector<std::string>{"cpu"});
  EXPECT_NE(Error(Args({{"device", "cpu"}, {"world_size", "2"}, {"nnodes", "2"}}))
                .find("field 'master_port'"),
            std::string::npos);
}

TEST_F(SpecCheckTest, AllowedRootsConfinePaths) {
  SpecCheckOptions o;
  o.allowed_roots = {(dir_ / "elsewhere").string()};
  EXPECT_NE(Error(Args(), o).find("outside the allowed roots"), std::string::npos);
  o.allowed_roots = {dir_.string()};
  EXPECT_EQ(Error(Args(), o), "");
  // A symlink inside the root that leads out of it is judged by where it leads.
  fs::create_directories(dir_ / "elsewhere");
  fs::create_symlink(dir_ / "data.yaml", dir_ / "elsewhere/link.yaml");
  o.allowed_roots = {(dir_ / "elsewhere").string()};
  EXPECT_NE(Error({{"data", (dir_ / "elsewhere/link.yaml").string()}}, o)
                .find("outside the allowed roots"),
            std::string::npos);
}

TEST_F(SpecCheckTest, SourcesNamedInDataYamlAreCheckedAgainstTheRoots) {
  fs::create_directories(dir_ / "root");
  std::ofstream(dir_ / "root/out.yaml")
      << "train: /etc\nval: " << (dir_ / "root").string() << "\nnames: [a]\n";
  std::ofstream(dir_ / "root/missing.yaml")
      << "path: " << (dir_ / "root").string() << "\ntrain: nope\nval: .\nnames: [a]\n";
  SpecCheckOptions o;
  o.allowed_roots = {(dir_ / "root").string()};
  const std::string out = Error({{"data", (dir_ / "root/out.yaml").string()}}, o);
  EXPECT_NE(out.find("'/etc' is outside the allowed roots"), std::string::npos) << out;
  EXPECT_NE(out.find("a dataset source of"), std::string::npos) << out;
  EXPECT_NE(Error({{"data", (dir_ / "root/missing.yaml").string()}}, o).find("does not exist"),
            std::string::npos);
}

TEST_F(SpecCheckTest, PathsThatAreNotPlainFilesAreRefusedWithoutBlocking) {
  // Each of these once escaped as an exception or blocked the caller.
  ASSERT_EQ(::mkfifo((dir_ / "fifo.yaml").c_str(), 0600), 0);
  fs::create_symlink(dir_ / "loop_a", dir_ / "loop_b");
  fs::create_symlink(dir_ / "loop_b", dir_ / "loop_a");
  const std::string nul = (dir_ / "data.yaml").string() + std::string("\0/etc/passwd", 12);
  const std::map<std::string, std::string> cases = {
      {(dir_ / "fifo.yaml").string(), "not a regular file"},
      {dir_.string(), "directory"},
      {(dir_ / "loop_a").string(), "cannot be resolved"},
      {"/proc/self/mem", "kernel interface"},
      {"/dev/stdin", "kernel interface"},
      {(dir_ / std::string(300, 'x')).string(), "over 255 bytes"},
      {nul, "NUL"},
      {(dir_ / "a\x1b[2Jb.yaml").string(), "control character"},
  };
  for (const auto& [path, why] : cases) {
    const std::string e = Error({{"data", path}});
    EXPECT_NE(e.find(why), std::string::npos) << e;
    EXPECT_EQ(e.find('\x1b'), std::string::npos) << "the error repeats a raw escape: " << e;
  }
  ASSERT_EQ(::mkfifo((dir_ / "fifo.pt").c_str(), 0600), 0);
  const std::string model = Error(Args({{"model", (dir_ / "fifo.pt").string()}}));
  EXPECT_NE(model.find("field 'model'"), std::string::npos) << model;
  EXPECT_NE(model.find("not a regular file"), std::string::npos) << model;
}

TEST_F(SpecCheckTest, TheWorkerGetsTheResolvedPaths) {
  fs::create_directories(dir_ / "sub");
  fs::create_symlink(dir_ / "data.yaml", dir_ / "sub/link.yaml");
  auto r = CheckSpec("n", {{"data", (dir_ / "sub/../sub/link.yaml").string()}}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->args.at("data"), fs::canonical(dir_ / "data.yaml").string());
}

TEST_F(SpecCheckTest, SmartTrainingTakesItsTotalFromEpochsAndNamesBadFields) {
  auto smart = [&](std::map<std::string, std::string> args, int total, int round,
                   int patience) -> absl::StatusOr<std::pair<v1::SmartTraining, CheckedSpec>> {
    auto checked = CheckSpec("n", Args(args), {});
    if (!checked.ok()) return checked.status();
    v1::SmartTraining s;
    s.set_max_total_epochs(total);
    s.set_round_epochs(round);
    s.set_patience(patience);
    auto out = CheckSmartTraining(s, Args(args), &*checked);
    if (!out.ok()) return out.status();
    return std::make_pair(*out, *checked);
  };
  auto from_epochs = smart({{"epochs", "30"}}, 0, 0, 2);
  ASSERT_TRUE(from_epochs.ok()) << from_epochs.status();
  EXPECT_EQ(from_epochs->first.max_total_epochs(), 30);
  EXPECT_EQ(from_epochs->first.round_epochs(), 10);  // the default
  EXPECT_EQ(from_epochs->first.patience(), 2);
  auto total = smart({}, 12, 5, 0);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(total->second.args.at("epochs"), "12");  // every round has the whole run's schedule
  auto capped = smart({}, 4, 10, 0);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->first.round_epochs(), 4);  // one round
  auto message = [&](std::map<std::string, std::string> args, int total, int round, int patience) {
    auto r = smart(args, total, round, patience);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : std::string(r.status().message());
  };
  EXPECT_NE(message({}, -1, 2, 1).find("smart.max_total_epochs"), std::string::npos);
  EXPECT_NE(message({}, 5, -2, 1).find("smart.round_epochs"), std::string::npos);
  EXPECT_NE(message({}, 5, 2, -1).find("smart.patience"), std::string::npos);
  EXPECT_NE(message({{"epochs", "3"}}, 5, 2, 1).find("disagrees with epochs=3"), std::string::npos);
  EXPECT_NE(message({{"save", "False"}}, 5, 2, 1).find("field 'save'"), std::string::npos);
  EXPECT_NE(message({{"val", "False"}}, 5, 2, 1).find("field 'smart.patience'"), std::string::npos);
  EXPECT_TRUE(smart({{"val", "False"}}, 5, 2, 0).ok());  // no patience: no validation needed
  EXPECT_NE(message({}, 200000, 2, 1).find("field 'smart.max_total_epochs'"), std::string::npos);
  EXPECT_NE(Error(Args({{"round_end", "2"}})).find("round_end"), std::string::npos);  // yolod's
}

}  // namespace
}  // namespace yolo
