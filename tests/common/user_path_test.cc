#include "common/user_path.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/atomic_file.h"
#include "tests/temp_dir.h"

namespace yolo {
namespace {
namespace fs = std::filesystem;

TEST(UserPathTest, RefusesTextThatIsNotAPath) {
  EXPECT_FALSE(CheckPathText("data", "").ok());
  EXPECT_FALSE(CheckPathText("data", std::string("/a\0b", 4)).ok());
  EXPECT_FALSE(CheckPathText("data", "/a\nb").ok());
  EXPECT_FALSE(CheckPathText("data", "/" + std::string(256, 'a')).ok());
  EXPECT_FALSE(CheckPathText("data", std::string(4097, 'a')).ok());
  EXPECT_TRUE(CheckPathText("data", "/" + std::string(255, 'a') + "/b").ok());
  EXPECT_TRUE(CheckPathText("data", "/données/ñ.yaml").ok());
  const absl::Status s = CheckPathText("model", "x\x1b[31m");
  EXPECT_NE(s.message().find("field 'model'"), absl::string_view::npos);
  EXPECT_NE(s.message().find("\\x1b"), absl::string_view::npos) << s;
}

TEST(UserPathTest, ResolvesOnceAndChecksTheResolvedPath) {
  TempDir d;
  d.Write("root/a.yaml", "x");
  d.Write("out/b.yaml", "y");
  fs::create_symlink(d / "out/b.yaml", d / "root/link.yaml");
  const std::vector<std::string> roots = {(d / "root").string()};
  auto a = ResolveUserPath("data", (d / "root/../root/./a.yaml").string(), PathKind::kFile, roots);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, fs::canonical(d / "root/a.yaml").string());
  auto link = ResolveUserPath("data", (d / "root/link.yaml").string(), PathKind::kFile, roots);
  EXPECT_EQ(link.status().code(), absl::StatusCode::kPermissionDenied);
  auto dots = ResolveUserPath("data", (d / "root/../out/b.yaml").string(), PathKind::kFile, roots);
  EXPECT_EQ(dots.status().code(), absl::StatusCode::kPermissionDenied);
  auto missing = ResolveUserPath("data", (d / "root/none").string(), PathKind::kFile, roots);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(ResolveUserPath("data", d.str(), PathKind::kFile, {}).ok());
  EXPECT_TRUE(ResolveUserPath("data", d.str(), PathKind::kDirectory, {}).ok());
  EXPECT_FALSE(ResolveUserPath("data", "/dev/null", PathKind::kFileOrDirectory, {}).ok());
  if (fs::is_directory("/dev/shm")) {  // a tmpfs, not a kernel interface
    EXPECT_TRUE(ResolveUserPath("data", "/dev/shm", PathKind::kDirectory, {}).ok());
  }
  // A root that is a prefix of another folder's name does not allow it.
  d.Write("rootx/c.yaml", "z");
  EXPECT_FALSE(UnderRoots(fs::canonical(d / "rootx/c.yaml").string(), roots));
  EXPECT_TRUE(UnderRoots("/anything", {}));
}

TEST(UserPathTest, ReadFileRefusesFifosDevicesAndLargeFiles) {
  TempDir d;
  ASSERT_EQ(::mkfifo((d / "fifo").c_str(), 0600), 0);
  std::string text;
  // Would block forever in open() without O_NONBLOCK.
  EXPECT_EQ(ReadFile((d / "fifo").string(), &text).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadFile("/dev/zero", &text).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadFile(d.str(), &text).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadFile((d / "none").string(), &text).code(), absl::StatusCode::kNotFound);
  d.Write("big", std::string(2000, 'x'));
  EXPECT_EQ(ReadFile((d / "big").string(), &text, 1000).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(ReadFile((d / "big").string(), &text, 2000).ok());
  EXPECT_EQ(text.size(), 2000u);
}

TEST(UserPathTest, PrintableEscapesControlsAndCuts) {
  EXPECT_EQ(Printable("ok name"), "ok name");
  EXPECT_EQ(Printable("a\nb\x1b[2J"), "a\\nb\\x1b[2J");
  EXPECT_EQ(Printable(std::string(100, 'a'), 10), std::string(10, 'a') + "...");
  EXPECT_EQ(Printable("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(Printable("\xff"), "\\xff");
  EXPECT_EQ(Printable("\xc2\x9b"), "\\xc2");  // C1 CSI
  EXPECT_TRUE(IsPrintableText("yolov8n run #3 (café)"));
  EXPECT_FALSE(IsPrintableText("a\nb"));
  EXPECT_FALSE(IsPrintableText("a\x1b[31m"));
  EXPECT_FALSE(IsPrintableText("\xe2\x80\xae"));  // right-to-left override
  EXPECT_FALSE(IsPrintableText("\xc3"));          // cut UTF-8
}

}  // namespace
}  // namespace yolo
