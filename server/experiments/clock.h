// The wall clock as a protobuf Timestamp, to the microsecond or better. (protobuf 3.21's
// TimeUtil::GetCurrentTime has whole seconds only, which put experiments created within one
// second out of order.)
#pragma once

#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/time_util.h>

#include <chrono>

namespace yolo {

inline google::protobuf::Timestamp NowTimestamp() {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(ns);
}

}  // namespace yolo
