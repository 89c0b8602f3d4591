#include "common/data_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/temp_dir.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

TEST(DataConfigTest, NamesAsListOrMap) {
  TempDir d;
  d.Write("a.yaml", "path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n");
  d.Write("b.yaml", "train: t\nval: v\nnames:\n  0: cat\n  1: dog\n  2: cow\n");
  d.Write("c.yaml", "train: t\nval: v\nnc: 2\n");
  auto a = LoadDataConfig((d / "a.yaml").string());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->nc(), 2);
  EXPECT_EQ(a->train[0], (d / "images/train").lexically_normal().string());
  auto b = LoadDataConfig((d / "b.yaml").string());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->names[2], "cow");
  auto c = LoadDataConfig((d / "c.yaml").string());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->names[1], "class_1");
}

TEST(DataConfigTest, ErrorsNameFileAndField) {
  TempDir d;
  d.Write("nc.yaml", "train: t\nval: v\nnc: 3\nnames: [a, b]\n");
  d.Write("notrain.yaml", "val: v\nnames: [a]\n");
  d.Write("gap.yaml", "train: t\nval: v\nnames: {0: a, 2: c}\n");
  d.Write("bad.yaml", "train: [t\n");
  for (const char* f : {"nc.yaml", "notrain.yaml", "gap.yaml", "bad.yaml"}) {
    auto r = LoadDataConfig((d / f).string());
    ASSERT_FALSE(r.ok()) << f;
    EXPECT_NE(r.status().message().find(f), std::string::npos) << r.status();
  }
  EXPECT_EQ(LoadDataConfig((d / "missing.yaml").string()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(DataConfigTest, ListsFoldersAndTxtLists) {
  TempDir d;
  d.Write("images/a.jpg", "x");
  d.Write("images/sub/b.png", "x");
  d.Write("images/notes.txt", "x");
  d.Write("list.txt", "images/a.jpg\n\nimages/sub/b.png\n");
  auto folder = ListImages({(d / "images").string()});
  ASSERT_TRUE(folder.ok()) << folder.status();
  EXPECT_EQ(folder->size(), 2u);
  auto list = ListImages({(d / "list.txt").string()});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
  EXPECT_EQ(ListImages({(d / "none").string()}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(IsImageFile("x/y.JPG"));
  EXPECT_FALSE(IsImageFile("x/y.txt"));
}

}  // namespace
}  // namespace yolo
