// yoloctl's verbs, each returning the process's exit code:
//   0 success, 1 the experiment failed, 2 bad usage or a rejected request, 3 server unreachable.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "yolo/v1/config.grpc.pb.h"
#include "yolo/v1/experiment.grpc.pb.h"
#include "yolo/v1/memory.grpc.pb.h"

namespace yolo {

constexpr int kExitOk = 0;
constexpr int kExitExperimentFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

struct ClientOptions {
  std::string server;            // host:port
  std::string token;             // bearer token, "" for none
  std::string tls_ca;            // PEM of the CA to trust; "" for plaintext
  std::string output = "table";  // table or json
  double timeout_seconds = 30;
};

class Client {
 public:
  explicit Client(ClientOptions options);

  int StartExperiments(const std::vector<v1::ExperimentSpec>& specs, bool follow);
  int GetExperiments();
  int DescribeExperiment(const std::string& id);
  int Logs(const std::string& id, bool follow);
  int Stop(const std::string& id);
  int Resume(const std::string& id, bool follow);
  int Delete(const std::string& id);
  int MemoryReport();
  int MemoryCleanup(double timeout_seconds);
  int MemoryLevels();
  // `pairs`: ram=60,70,80 and/or gpu=80,90,95.
  int SetMemoryLevels(const std::vector<std::string>& pairs);
  // Samples to <out_dir>/memory_log_YYYYMMDD_HHMMSS.json (rewritten whole at every sample) and,
  // with `plot_interval_seconds` > 0, a PNG beside it refreshed at that interval.
  int MemoryMonitor(double duration_seconds, double interval_seconds, const std::string& out_dir,
                    double plot_interval_seconds);
  // Statistics, trend, leak verdict and time at each level of a memory log; a PNG with `plot`.
  int MemoryAnalyze(const std::string& log_file, const std::string& plot_path);
  int ConfigGet();
  int ConfigSet(const std::map<std::string, std::string>& set,
                const std::vector<std::string>& unset);
  int ListProfiles();
  // grpc.health.v1 Check: prints SERVING (exit 0) or the status (exit 1); for health checks.
  int Health();

 private:
  std::unique_ptr<grpc::ClientContext> Context(bool stream = false) const;
  int Fail(const grpc::Status& status) const;  // prints the error, returns the exit code
  // Follows an experiment to its end with a progress line; the exit code says how it ended.
  int Follow(const std::string& id);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ExperimentService::Stub> experiments_;
  std::unique_ptr<v1::MemoryService::Stub> memory_;
  std::unique_ptr<v1::ConfigService::Stub> config_;
};

// Reads an experiments file: one spec (a map of trainer arguments plus an optional `name`), a
// list of them, or {experiments: [...]}. Errors name the file and the entry.
absl::StatusOr<std::vector<v1::ExperimentSpec>> LoadExperimentsFile(const std::string& path);

// "1.2 GB", "512 MB", "0 B".
std::string HumanBytes(int64_t bytes);

// A message as JSON with the .proto field names; one line unless `pretty`.
std::string ToJson(const google::protobuf::Message& message, bool pretty = true);

}  // namespace yolo
