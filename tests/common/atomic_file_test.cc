#include "common/atomic_file.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace yolo {
namespace {
namespace fs = std::filesystem;

TEST(AtomicFileTest, WritesAndReplacesWithoutLeavingTempFiles) {
  const fs::path dir =
      fs::temp_directory_path() / ("atomic_file_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "f.txt").string();
  ASSERT_TRUE(WriteFileAtomic(path, "one").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "two").ok());
  std::string text;
  ASSERT_TRUE(ReadFile(path, &text).ok());
  EXPECT_EQ(text, "two");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1);
  fs::remove_all(dir);
}

TEST(AtomicFileTest, MissingFolderIsAnError) {
  EXPECT_FALSE(WriteFileAtomic("/nonexistent-folder-xyz/f.txt", "x").ok());
}

}  // namespace
}  // namespace yolo
