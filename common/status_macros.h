// Status helpers for code that returns absl::Status / absl::StatusOr<T>. Debian's abseil
// (20220623) ships no such macros.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define YOLO_STATUS_CONCAT_INNER(a, b) a##b
#define YOLO_STATUS_CONCAT(a, b) YOLO_STATUS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status yolo_status_ = (expr);        \
    if (!yolo_status_.ok()) return yolo_status_; \
  } while (false)

// `lhs` = the value of `expr` (an absl::StatusOr<T>), or returns its status from the enclosing
// function. `lhs` may be a declaration: ASSIGN_OR_RETURN(auto x, Foo());
#define ASSIGN_OR_RETURN(lhs, expr) \
  YOLO_ASSIGN_OR_RETURN_IMPL(YOLO_STATUS_CONCAT(yolo_statusor_, __LINE__), lhs, expr)

#define YOLO_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr)    \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
