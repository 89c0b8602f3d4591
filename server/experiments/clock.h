// The wall clock as a protobuf Timestamp, to the microsecond or better. (protobuf 3.21's
// TimeUtil::GetCurrentTime has whole seconds only, which put experiments created within one
// second out of order.)
#pragma once

#include <chrono>

#include "server/memory/clock.h"

namespace yolo {

inline google::protobuf::Timestamp NowTimestamp() {
  return ToTimestamp(std::chrono::system_clock::now());
}

}  // namespace yolo
