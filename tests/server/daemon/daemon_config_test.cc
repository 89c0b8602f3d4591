#include "server/daemon/daemon_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace yolo {
namespace {
namespace fs = std::filesystem;

class DaemonConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("daemon_config_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    worker_ = (dir_ / "yolo-worker").string();
    std::ofstream(worker_) << "#!/bin/sh\n";
    fs::permissions(worker_, fs::perms::owner_all);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& text) const {
    const std::string p = (dir_ / "yolod.yaml").string();
    std::ofstream(p) << text;
    return p;
  }
  fs::path dir_;
  std::string worker_;
};

TEST_F(DaemonConfigTest, ReadsTheFileAndNamesBadKeys) {
  DaemonConfig c;
  ASSERT_TRUE(LoadDaemonConfigFile(Write("listen: 127.0.0.1:0\nstate_dir: /s\n"
                                         "max_running_per_device: 2\nallowed_roots: [/a, /b]\n"),
                                   &c)
                  .ok());
  EXPECT_EQ(c.listen, "127.0.0.1:0");
  EXPECT_EQ(c.max_running_per_device, 2);
  EXPECT_EQ(c.allowed_roots.size(), 2u);
  auto unknown = LoadDaemonConfigFile(Write("lisen: x\n"), &c);
  EXPECT_NE(unknown.message().find("lisen"), std::string::npos);
  auto bad = LoadDaemonConfigFile(Write("max_running_per_device: many\n"), &c);
  EXPECT_NE(bad.message().find("max_running_per_device"), std::string::npos);
  EXPECT_EQ(LoadDaemonConfigFile((dir_ / "none.yaml").string(), &c).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(DaemonConfigTest, OffLoopbackNeedsTlsAndAToken) {
  DaemonConfig c;
  c.state_dir = dir_.string();
  c.worker = worker_;
  EXPECT_TRUE(FinishDaemonConfig(&c).ok());
  c.listen = "0.0.0.0:50051";
  auto refused = FinishDaemonConfig(&c);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("TLS"), std::string::npos);
  for (const char* f : {"cert.pem", "key.pem", "token"}) std::ofstream(dir_ / f) << "x";
  c.tls_cert = (dir_ / "cert.pem").string();
  c.tls_key = (dir_ / "key.pem").string();
  c.token_file = (dir_ / "token").string();
  EXPECT_TRUE(FinishDaemonConfig(&c).ok());
  c.log_format = "xml";
  EXPECT_NE(FinishDaemonConfig(&c).message().find("log_format"), std::string::npos);
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:0"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:50051"));
  EXPECT_FALSE(IsLoopbackAddress("10.0.0.1:50051"));
}

TEST_F(DaemonConfigTest, MemoryWatchdogSettingsAreChecked) {
  DaemonConfig c;
  ASSERT_TRUE(LoadDaemonConfigFile(Write("ram_levels: 60,70,80\ngpu_levels: 85,90,97\n"
                                         "watchdog_interval: 0.5\ndanger_grace: 0\n"),
                                   &c)
                  .ok());
  EXPECT_EQ(c.ram_levels, "60,70,80");
  EXPECT_EQ(c.danger_grace, 0);
  c.state_dir = dir_.string();
  c.worker = worker_;
  EXPECT_TRUE(FinishDaemonConfig(&c).ok());
  c.ram_levels = "90,80,70";
  EXPECT_NE(FinishDaemonConfig(&c).message().find("ram_levels"), std::string::npos);
  c.ram_levels = "70,80,90";
  c.watchdog_interval = 0;
  EXPECT_NE(FinishDaemonConfig(&c).message().find("watchdog_interval"), std::string::npos);
  c.watchdog_interval = 1;
  c.memory_log_interval = 0.01;
  EXPECT_NE(FinishDaemonConfig(&c).message().find("memory_log_interval"), std::string::npos);
}

TEST_F(DaemonConfigTest, MetricsFollowTheListenRules) {
  DaemonConfig c;
  ASSERT_TRUE(
      LoadDaemonConfigFile(Write("metrics_listen: 127.0.0.1:0\nmetrics_open: true\n"), &c).ok());
  c.worker = worker_;
  c.state_dir = dir_.string();
  EXPECT_TRUE(FinishDaemonConfig(&c).ok());
  c.metrics_listen = "0.0.0.0:9464";
  absl::Status s = FinishDaemonConfig(&c);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("metrics_listen: 0.0.0.0:9464"), std::string::npos) << s;
  c.metrics_listen = "off";
  EXPECT_TRUE(FinishDaemonConfig(&c).ok());
}

}  // namespace
}  // namespace yolo
