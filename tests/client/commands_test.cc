#include "client/commands.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/temp_dir.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

TEST(CommandsTest, ExperimentsFilesInEachShape) {
  TempDir tmp;
  const fs::path dir = tmp.str();
  auto write = [&](const std::string& text) {
    std::ofstream(dir / "e.yaml") << text;
    return (dir / "e.yaml").string();
  };
  auto one = LoadExperimentsFile(write("name: a\ndata: d.yaml\nepochs: 3\n"));
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].name(), "a");
  EXPECT_EQ((*one)[0].args().at("epochs"), "3");
  EXPECT_EQ((*one)[0].args().count("name"), 0u);
  auto list = LoadExperimentsFile(write("- {data: d.yaml}\n- {data: e.yaml, batch: 4}\n"));
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
  auto wrapped = LoadExperimentsFile(write("experiments:\n  - {data: d.yaml}\n"));
  ASSERT_TRUE(wrapped.ok());
  EXPECT_EQ(wrapped->size(), 1u);
  auto nested = LoadExperimentsFile(write("experiments:\n  - {data: d.yaml}\n  - {epochs: [1]}\n"));
  ASSERT_FALSE(nested.ok());
  EXPECT_NE(nested.status().message().find("experiment 2"), std::string::npos);
  EXPECT_NE(nested.status().message().find("epochs"), std::string::npos);
  auto smart = LoadExperimentsFile(
      write("data: d.yaml\nsmart: {max_total_epochs: 30, round_epochs: 5, patience: 2}\n"));
  ASSERT_TRUE(smart.ok()) << smart.status();
  EXPECT_EQ((*smart)[0].smart().max_total_epochs(), 30);
  EXPECT_EQ((*smart)[0].smart().round_epochs(), 5);
  EXPECT_EQ((*smart)[0].smart().patience(), 2);
  EXPECT_EQ((*smart)[0].args().count("smart"), 0u);
  for (const char* bad : {"smart: 3\n", "smart: {rounds: 2}\n", "smart: {patience: x}\n"}) {
    auto r = LoadExperimentsFile(write(bad));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("smart"), std::string::npos) << r.status();
  }
  EXPECT_FALSE(LoadExperimentsFile(write("[1\n")).ok());
  EXPECT_EQ(LoadExperimentsFile((dir / "none.yaml").string()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(CommandsTest, HumanBytes) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1500), "1.5 kB");
  EXPECT_EQ(HumanBytes(20'200'000), "20.2 MB");
  EXPECT_EQ(HumanBytes(1'117'000'000), "1.12 GB");
}

}  // namespace
}  // namespace yolo
