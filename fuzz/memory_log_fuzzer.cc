// A memory log as `yoloctl memory analyze --log-file` reads it: ParseMemoryLog returns a log or
// an error naming the file, never throws; what it accepts analyzes and writes back as a log
// that parses to the same samples and events.
#include "common/memory_log.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto log = yolo::ParseMemoryLog(text, "memory_log.json");
  if (!log.ok()) {
    yolo::fuzz::Require(log.status().message().find("memory_log.json") != absl::string_view::npos);
    return 0;
  }
  const yolo::MemoryAnalysis analysis = yolo::AnalyzeMemoryLog(*log);
  (void)yolo::FormatMemoryAnalysis(*log, analysis);
  auto again = yolo::ParseMemoryLog(yolo::MemoryLogToJson(*log), "again");
  yolo::fuzz::Require(again.ok() && again->samples.size() == log->samples.size() &&
                      again->events.size() == log->events.size());
  return 0;
}
