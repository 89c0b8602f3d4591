#include "common/data_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

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

TEST(DataConfigTest, HostileFilesGetErrorsNotExceptionsOrHugeAllocations) {
  TempDir d;
  const std::map<std::string, std::string> cases = {
      {"nc.yaml", "train: t\nval: v\nnc: 2000000000\n"},
      {"id.yaml", "train: t\nval: v\nnames: {0: a, 1999999999: b}\n"},
      {"pathlist.yaml", "path: [a, b]\ntrain: t\nval: v\nnames: [a]\n"},
      {"pathmap.yaml", "path: {a: 1}\ntrain: t\nval: v\nnames: [a]\n"},
      {"trainmap.yaml", "train: {a: 1}\nval: v\nnames: [a]\n"},
      {"namesbad.yaml", "train: t\nval: v\nnames: [[a, b]]\n"},
      {"idbad.yaml", "train: t\nval: v\nnames: {x: a}\n"},
      {"escape.yaml", "train: t\nval: v\nnames: [\"a\\e[2J\"]\n"},
      {"nul.yaml", "train: \"t\\0/etc\"\nval: v\nnames: [a]\n"},
      {"scalar.yaml", "just text\n"},
      {"alias.yaml", "train: *x\nval: v\n"},
      {"emptyval.yaml", "train: t\nval: []\nnames: [a]\n"},
  };
  for (const auto& [file, text] : cases) {
    d.Write(file, text);
    auto r = LoadDataConfig((d / file).string());
    ASSERT_FALSE(r.ok()) << file;
    EXPECT_NE(r.status().message().find(file), std::string::npos) << r.status();
  }
  d.Write("big.yaml", "train: t\nval: v\nnames: [a]\n#" + std::string(2 << 20, 'x') + "\n");
  EXPECT_FALSE(LoadDataConfig((d / "big.yaml").string()).ok());
}

TEST(DataConfigTest, AllowedRootsConfineEveryListedImage) {
  TempDir d;
  d.Write("root/images/a.jpg", "x");
  d.Write("out/b.jpg", "x");
  d.Write("root/list.txt", "images/a.jpg\n" + (d / "out/b.jpg").string() + "\n");
  fs::create_symlink(d / "out/b.jpg", d / "root/images/link.jpg");
  const std::vector<std::string> roots = {(d / "root").string()};
  auto list = ListImages({(d / "root/list.txt").string()}, roots);
  EXPECT_EQ(list.status().code(), absl::StatusCode::kPermissionDenied) << list.status();
  auto folder = ListImages({(d / "root/images").string()}, roots);
  EXPECT_EQ(folder.status().code(), absl::StatusCode::kPermissionDenied) << folder.status();
  fs::remove(d / "root/images/link.jpg");
  auto ok = ListImages({(d / "root/images").string()}, roots);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 1u);
  EXPECT_EQ(ListImages({(d / "out").string()}, roots).status().code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace yolo
