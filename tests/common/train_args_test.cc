#include "common/train_args.h"

#include <gtest/gtest.h>

namespace yolo {
namespace {

TEST(TrainArgsTest, DefaultsAreUltralytics) {
  TrainArgs a;
  EXPECT_EQ(a.GetInt("epochs"), 100);
  EXPECT_EQ(a.GetInt("batch"), 16);
  EXPECT_EQ(a.GetInt("imgsz"), 640);
  EXPECT_DOUBLE_EQ(a.GetFloat("lr0"), 0.01);
  EXPECT_DOUBLE_EQ(a.GetFloat("momentum"), 0.937);
  EXPECT_DOUBLE_EQ(a.GetFloat("box"), 7.5);
  EXPECT_EQ(a.GetInt("close_mosaic"), 10);
  EXPECT_EQ(a.GetString("optimizer"), "auto");
  EXPECT_TRUE(a.IsNull("conf"));
  EXPECT_FALSE(a.WasSet("epochs"));
}

TEST(TrainArgsTest, ParsesKeyValueTokens) {
  TrainArgs a;
  ASSERT_TRUE(
      a.ParseTokens({"epochs=3", "imgsz=320", "cos_lr=True", "cache=True", "optimizer=sgd"}).ok());
  EXPECT_EQ(a.GetInt("epochs"), 3);
  EXPECT_EQ(a.GetInt("imgsz"), 320);
  EXPECT_TRUE(a.GetBool("cos_lr"));
  EXPECT_EQ(a.GetString("cache"), "ram");
  EXPECT_EQ(a.GetString("optimizer"), "SGD");
  EXPECT_TRUE(a.WasSet("epochs"));
}

TEST(TrainArgsTest, UnknownKeyIsAnErrorNamingIt) {
  TrainArgs a;
  absl::Status s = a.ParseTokens({"epochz=3"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("epochz"), std::string::npos);
}

TEST(TrainArgsTest, BadValuesNameTheKey) {
  for (const char* token : {"epochs=many", "lr0=-1", "fliplr=1.5", "cos_lr=maybe", "cache=gpu",
                            "optimizer=Lion", "device=gpu", "batch=0", "imgsz=0", "scale=1.5"}) {
    TrainArgs a;
    absl::Status s = a.ParseTokens({token});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << token;
    const std::string key = std::string(token).substr(0, std::string(token).find('='));
    EXPECT_NE(s.message().find("'" + key + "'"), std::string::npos) << s.message();
  }
}

TEST(TrainArgsTest, TokenWithoutEqualsIsAnError) {
  TrainArgs a;
  EXPECT_FALSE(a.ParseTokens({"epochs"}).ok());
}

TEST(TrainArgsTest, YamlRoundTrip) {
  TrainArgs a;
  ASSERT_TRUE(a.ParseTokens({"epochs=7", "name=my run", "data=/tmp/a b/data.yaml", "lr0=0.002",
                             "resume=runs/x/weights/last.pt"})
                  .ok());
  auto b = TrainArgs::FromYaml(a.ToYaml());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->ToYaml(), a.ToYaml());
  EXPECT_EQ(b->GetString("name"), "my run");
  EXPECT_EQ(b->GetString("resume"), "runs/x/weights/last.pt");
  EXPECT_TRUE(b->IsNull("project"));
}

TEST(TrainArgsTest, FromYamlRejectsUnknownKeys) {
  auto b = TrainArgs::FromYaml("epochs: 3\nbogus: 1\n");
  EXPECT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("bogus"), std::string::npos);
}

}  // namespace
}  // namespace yolo
