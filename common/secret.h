// Comparing secrets (tokens, a worker's one-time secret).
#pragma once

#include <string>

namespace yolo {

// Whether a == b, in time that depends only on their lengths, so that a secret cannot be
// guessed byte by byte from how long a refusal takes.
inline bool SecretsEqual(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// Whether an Authorization header (HTTP, or gRPC's metadata) carries `token` as "Bearer <token>".
inline bool BearerMatches(const std::string& authorization, const std::string& token) {
  return SecretsEqual(authorization, "Bearer " + token);
}

}  // namespace yolo
