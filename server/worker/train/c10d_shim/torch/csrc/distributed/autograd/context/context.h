// Debian's libtorch-dev 1.13 ships c10d's reducer.hpp but not the distributed-autograd header it
// includes. c10d::Reducer refers to that context only through a shared_ptr and an atomic raw
// pointer (whose layout does not depend on the type) and asserts the callback type below, so
// these declarations are all it needs; the build adds this folder to the include path only
// where the real header is missing (server/worker/train/CMakeLists.txt).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch::distributed::autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace torch::distributed::autograd
