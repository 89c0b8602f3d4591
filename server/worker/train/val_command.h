// `yolo-worker val`: validates a checkpoint on a split of a data.yaml.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/train_args.h"
#include "server/worker/train/validator.h"

namespace yolo {

struct ValOutcome {
  ValidationResult result;
  std::vector<std::string> names;
};

// model= a checkpoint (required); data= defaults to the one it was trained on; split=val.
absl::StatusOr<ValOutcome> Val(const TrainArgs& args);

}  // namespace yolo
