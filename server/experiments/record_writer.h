// Writes experiments' records (experiment.json) outside the manager's lock. The manager takes a
// snapshot and a version under its lock and writes after releasing it; writes of one experiment
// are applied in the order of their versions, so that a slower writer never puts back an older
// state. LibTorch-free; any thread may call.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "yolo/v1/experiment.pb.h"

namespace yolo {

// A state to write: taken under the manager's lock, written after it is released.
struct RecordSnapshot {
  v1::Experiment exp;
  int64_t version = 0;  // per experiment, increasing
};

class RecordWriter {
 public:
  // Records live in <runs_dir>/<id>/experiment.json (the path derived from the id).
  explicit RecordWriter(std::string runs_dir) : runs_dir_(std::move(runs_dir)) {}

  // Writes the snapshot atomically unless a newer version of it was written already (OK then)
  // or the experiment was removed. A failed write is logged and returned.
  absl::Status Write(const RecordSnapshot& snapshot);
  // Writes the first record of a new experiment (clearing what Remove left for its id).
  absl::Status Create(const RecordSnapshot& snapshot);
  // Removes the experiment's run folder; pending writes for it are dropped afterwards.
  absl::Status Remove(const std::string& id);

  std::string PathOf(const std::string& id) const;

 private:
  absl::Status WriteLocked(const RecordSnapshot& snapshot);

  const std::string runs_dir_;
  std::mutex mu_;                           // serialises the writes
  std::map<std::string, int64_t> written_;  // id -> newest version on disk
};

// Runs the writes queued while the manager's lock was held once it is released: declare it
// before the lock so that it is destroyed after the lock.
class PendingWrites {
 public:
  explicit PendingWrites(RecordWriter* writer) : writer_(writer) {}
  PendingWrites(const PendingWrites&) = delete;
  PendingWrites& operator=(const PendingWrites&) = delete;
  ~PendingWrites() { Flush(); }

  void Add(RecordSnapshot snapshot) { queued_.push_back(std::move(snapshot)); }
  // A line to append to a log (train.log), after the records.
  void AppendLine(std::string path, std::string line) {
    lines_.emplace_back(std::move(path), std::move(line));
  }
  // Writes what is queued now; call without the manager's lock.
  void Flush();

 private:
  RecordWriter* writer_;
  std::vector<RecordSnapshot> queued_;
  std::vector<std::pair<std::string, std::string>> lines_;
};

}  // namespace yolo
