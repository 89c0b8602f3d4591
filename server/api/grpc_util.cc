#include "server/api/grpc_util.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/secret.h"
#include "common/user_path.h"

namespace yolo {

grpc::Status InternalErrorOf(const char* call, const std::exception* e) {
  const std::string what = e != nullptr ? Printable(e->what(), 300) : "unknown exception";
  spdlog::error("{}: unexpected exception: {}", call, what);
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      absl::StrCat(call, ": internal error (", what, "); see yolod.log"));
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::Status Authorizer::Check(const grpc::CallbackServerContext* context, bool mutating) const {
  if (token_.empty() || (!mutating && open_reads_)) return grpc::Status::OK;
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it != metadata.end() &&
      BearerMatches(std::string(it->second.data(), it->second.size()), token_)) {
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "this call needs the token: 'authorization: Bearer <token>'");
}

}  // namespace yolo
