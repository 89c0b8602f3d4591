// What the fuzz targets share: the parsers under test read files, so each input is written to
// one scratch file per process first.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace yolo::fuzz {

// A folder of this process's own, made once, under $TMPDIR.
inline const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("yolo_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

// Writes the input to ScratchDir()/name and returns its path.
inline std::string WriteInput(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = (ScratchDir() / name).string();
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// A failed property: libFuzzer keeps the input that caused it.
inline void Require(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace yolo::fuzz
