// Checks an experiment's spec before it is queued, and resolves it into the arguments the
// worker gets. LibTorch-free.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "yolo/v1/experiment.pb.h"

namespace yolo {

struct SpecCheckOptions {
  // Defaults layered under the spec's own arguments: the device profile first, then the
  // training config (ConfigService); the spec wins over both.
  std::map<std::string, std::string> profile_defaults;
  std::map<std::string, std::string> config_defaults;
  // When not empty, `data` and weight files must lie under one of these folders.
  std::vector<std::string> allowed_roots;
  bool has_gpu = false;                // whether device "" means GPU 0
  int gpu_count = 0;                   // GPUs on this host, when known (0: not checked)
  bool allow_fault_injection = false;  // fault_leak_mb, fault_oom_epoch (yolod's flag)
};

struct CheckedSpec {
  std::map<std::string, std::string> args;  // canonical values, explicit ones only
  std::string device;                       // "cpu", "cuda:N" or "cuda:N,M,..." (data-parallel)
};

// The devices a checked device holds a slot on: {"cpu"}, {"cuda:0"}, or one per GPU of a
// data-parallel run ("cuda:0,1" -> {"cuda:0", "cuda:1"}). A CPU run of several ranks holds the
// one "cpu" slot: its ranks share the host's cores.
std::vector<std::string> DevicesOf(const std::string& device);
// Whether a run on `device` may start: each of its devices holds fewer than `max` running ones
// (`running`: slots held per device, as DevicesOf names them).
bool SlotsFree(const std::string& device, const std::map<std::string, int>& running, int max);

// INVALID_ARGUMENT naming the field for any bad value: unknown keys, values of the wrong type,
// imgsz not a multiple of 32 in [32, 4096], batch not -1 or >= 1, epochs < 1, an unknown device
// (mps is refused on Linux; a GPU index this host does not have), a data-parallel layout that
// does not fit (world_size, nnodes, node_rank, master_port), a model that is neither a scale nor a
// readable checkpoint, a data.yaml that does not exist or does not parse, a dataset source that
// does not exist, paths (resolved, see ResolveUserPath) outside the allowed roots. The checked args
// hold the resolved paths of `data` and `model`: the ones the worker is to open. Stats files and
// reads data.yaml only (bounded, never blocking on a FIFO).
absl::StatusOr<CheckedSpec> CheckSpec(const std::string& name,
                                      const std::map<std::string, std::string>& args,
                                      const SpecCheckOptions& options);

// Smart training: INVALID_ARGUMENT naming `smart.<field>` for a negative value, a
// max_total_epochs that disagrees with the spec's own `epochs`, or save=False (each round
// resumes weights/last.pt). Fills in the defaults (max_total_epochs from epochs, round_epochs 10)
// and sets the checked `epochs` to the total, so that every round has the schedule of the whole
// run. `spec_args` are the spec's own arguments.
absl::StatusOr<v1::SmartTraining> CheckSmartTraining(
    const v1::SmartTraining& smart, const std::map<std::string, std::string>& spec_args,
    CheckedSpec* checked);

}  // namespace yolo
