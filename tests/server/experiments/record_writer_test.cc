#include "server/experiments/record_writer.h"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/temp_dir.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

class RecordWriterTest : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directories(dir_ / "exp-00000001"); }

  static RecordSnapshot Snapshot(const std::string& reason, int64_t version) {
    RecordSnapshot s;
    s.exp.set_id("exp-00000001");
    s.exp.set_reason(reason);
    s.version = version;
    return s;
  }
  std::string ReasonOnDisk() {
    std::ifstream in(dir_ / "exp-00000001" / "experiment.json");
    std::stringstream text;
    text << in.rdbuf();
    v1::Experiment exp;
    if (!google::protobuf::util::JsonStringToMessage(text.str(), &exp).ok()) return "<unreadable>";
    return exp.reason();
  }
  TempDir tmp_;
  const fs::path dir_ = tmp_.str();
};

TEST_F(RecordWriterTest, AnOlderVersionNeverReplacesANewerOne) {
  RecordWriter writer(dir_.string());
  ASSERT_TRUE(writer.Create(Snapshot("queued", 1)).ok());
  ASSERT_TRUE(writer.Write(Snapshot("running", 3)).ok());
  ASSERT_TRUE(writer.Write(Snapshot("late writer", 2)).ok());  // skipped, not an error
  EXPECT_EQ(ReasonOnDisk(), "running");
  ASSERT_TRUE(writer.Write(Snapshot("succeeded", 4)).ok());
  EXPECT_EQ(ReasonOnDisk(), "succeeded");
}

TEST_F(RecordWriterTest, WritesAfterRemoveAreDropped) {
  RecordWriter writer(dir_.string());
  ASSERT_TRUE(writer.Create(Snapshot("queued", 1)).ok());
  ASSERT_TRUE(writer.Remove("exp-00000001").ok());
  EXPECT_FALSE(fs::exists(dir_ / "exp-00000001"));
  EXPECT_TRUE(writer.Write(Snapshot("pending from before", 2)).ok());
  EXPECT_FALSE(fs::exists(dir_ / "exp-00000001"));
}

TEST_F(RecordWriterTest, CreateAfterRemoveStartsAgain) {
  RecordWriter writer(dir_.string());
  ASSERT_TRUE(writer.Create(Snapshot("first", 5)).ok());
  ASSERT_TRUE(writer.Remove("exp-00000001").ok());
  fs::create_directories(dir_ / "exp-00000001");
  ASSERT_TRUE(writer.Create(Snapshot("second", 1)).ok());
  EXPECT_EQ(ReasonOnDisk(), "second");
}

TEST_F(RecordWriterTest, AFailedWriteIsReturned) {
  RecordWriter writer((dir_ / "missing").string());
  EXPECT_FALSE(writer.Create(Snapshot("queued", 1)).ok());
}

TEST_F(RecordWriterTest, PendingWritesRunWhenDestroyed) {
  RecordWriter writer(dir_.string());
  {
    PendingWrites writes(&writer);
    writes.Add(Snapshot("queued", 1));
    writes.Add(Snapshot("running", 2));
    EXPECT_FALSE(fs::exists(dir_ / "exp-00000001" / "experiment.json"));
  }
  EXPECT_EQ(ReasonOnDisk(), "running");
}

}  // namespace
}  // namespace yolo
