// experiment.json as yolod reads it back after a restart: protobuf's JSON parser into an
// Experiment; whatever it accepts prints back to JSON.
#include <google/protobuf/util/json_util.h>

#include "fuzz/fuzz_util.h"
#include "yolo/v1/experiment.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  yolo::v1::Experiment exp;
  if (!google::protobuf::util::JsonStringToMessage(text, &exp).ok()) return 0;
  std::string json;
  yolo::fuzz::Require(google::protobuf::util::MessageToJsonString(exp, &json).ok());
  return 0;
}
