#include "server/api/grpc_util.h"

namespace yolo {
namespace {

// Compares in time that depends only on the length, so a token cannot be guessed byte by byte.
bool SameSecret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::Status Authorizer::Check(const grpc::CallbackServerContext* context, bool mutating) const {
  if (token_.empty() || (!mutating && open_reads_)) return grpc::Status::OK;
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  const std::string expected = "Bearer " + token_;
  if (it != metadata.end() &&
      SameSecret(std::string(it->second.data(), it->second.size()), expected)) {
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "this call needs the token: 'authorization: Bearer <token>'");
}

}  // namespace yolo
