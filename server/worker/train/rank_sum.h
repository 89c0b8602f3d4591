// The one collective the model and the loss need for data-parallel training: a sum over every
// rank, in place (DistributedGroup::Summer). Empty outside data-parallel training.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

namespace yolo {

using RankSum = std::function<void(at::Tensor&)>;

}  // namespace yolo
