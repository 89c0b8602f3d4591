#include "common/distributed_config.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace yolo {

std::string DistributedConfig::device() const {
  return gpus.empty() ? "cpu" : std::to_string(gpus[std::min<size_t>(local_rank, gpus.size() - 1)]);
}

namespace {

absl::Status Bad(const std::string& key, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("argument '", key, "': ", why));
}

bool EnvInt(const char* name, int* out) {
  const char* v = std::getenv(name);
  return v != nullptr && absl::SimpleAtoi(v, out);
}

}  // namespace

absl::StatusOr<DistributedConfig> ResolveDistributedLayout(const TrainArgs& args) {
  DistributedConfig c;
  const std::string device = args.GetString("device");
  if (!device.empty() && device != "cpu") {
    const std::string list = device.rfind("cuda:", 0) == 0 ? device.substr(5) : device;
    for (absl::string_view index : absl::StrSplit(list, ',')) {
      int d = 0;
      if (!absl::SimpleAtoi(index, &d)) return Bad("device", absl::StrCat("'", device, "'"));
      c.gpus.push_back(d);
    }
  }
  c.nnodes = static_cast<int>(args.GetInt("nnodes"));
  c.node_rank = static_cast<int>(args.GetInt("node_rank"));
  c.master_addr = args.GetString("master_addr");
  c.master_port = static_cast<int>(args.GetInt("master_port"));
  const int asked = static_cast<int>(args.GetInt("world_size"));
  if (c.gpus.size() > 1) {
    c.local_world_size = static_cast<int>(c.gpus.size());
    c.world_size = c.local_world_size * c.nnodes;
    if (asked > 1 && asked != c.world_size) {
      return Bad("world_size", absl::StrCat(asked, " does not match device=", device, " on ",
                                            c.nnodes, " node(s): ", c.world_size, " ranks"));
    }
  } else {
    c.world_size = std::max(asked, 1);
    if (c.world_size > 1 && !c.gpus.empty()) {
      return Bad("world_size",
                 absl::StrCat(c.world_size, " ranks on the single GPU device=", device,
                              ": name one GPU per rank (device=0,1) or use "
                              "device=cpu"));
    }
    if (c.world_size % c.nnodes != 0) {
      return Bad("world_size",
                 absl::StrCat(c.world_size, " ranks do not split evenly over nnodes=", c.nnodes));
    }
    c.local_world_size = c.world_size / c.nnodes;
  }
  if (c.node_rank >= c.nnodes) {
    return Bad("node_rank", absl::StrCat(c.node_rank, " is not below nnodes=", c.nnodes));
  }
  if (!c.enabled()) {
    c.nnodes = 1, c.node_rank = 0;
    return c;
  }
  if (c.master_port == 0 && c.nnodes > 1) {
    return Bad("master_port", "is needed with nnodes > 1 (every node must name the same port)");
  }
  c.local_rank = 0;
  c.rank = c.node_rank * c.local_world_size;
  return c;
}

absl::StatusOr<DistributedConfig> ResolveDistributed(const TrainArgs& args) {
  auto layout = ResolveDistributedLayout(args);
  if (!layout.ok() || !layout->enabled()) return layout;
  DistributedConfig& c = *layout;
  int port = 0;
  if (EnvInt(kMasterPortEnv, &port)) c.master_port = port;
  int rank = 0, local = 0;
  if (EnvInt(kRankEnv, &rank) && EnvInt(kLocalRankEnv, &local)) {
    if (rank < 0 || rank >= c.world_size || local < 0 || local >= c.local_world_size) {
      return absl::InvalidArgumentError(absl::StrCat(kRankEnv, "=", rank, " / ", kLocalRankEnv, "=",
                                                     local,
                                                     " do not fit world_size=", c.world_size));
    }
    c.rank = rank, c.local_rank = local;
  }
  return c;
}

}  // namespace yolo
