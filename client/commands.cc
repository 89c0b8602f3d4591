#include "client/commands.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/user_path.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace yolo {
namespace fs = std::filesystem;
using google::protobuf::util::TimeUtil;

std::string HumanBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1e9) return absl::StrFormat("%.2f GB", b / 1e9);
  if (b >= 1e6) return absl::StrFormat("%.1f MB", b / 1e6);
  if (b >= 1e3) return absl::StrFormat("%.1f kB", b / 1e3);
  return absl::StrCat(bytes, " B");
}

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = pretty;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, opts);
  return out;
}

namespace {

std::string State(v1::ExperimentState s) { return v1::ExperimentState_Name(s); }

std::string Age(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0) return "-";
  const int64_t s = TimeUtil::GetCurrentTime().seconds() - t.seconds();
  if (s < 120) return absl::StrCat(s, "s");
  if (s < 7200) return absl::StrCat(s / 60, "m");
  if (s < 172800) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

// What yolod sends, as it may be shown on a terminal: control characters and escapes that
// could repaint it are escaped.
std::string Shown(const std::string& text) { return Printable(text, 1000); }
// A whole log line, escaped the same way but never cut.
std::string ShownLine(const std::string& line) { return Printable(line, line.size()); }

std::string Arg(const v1::Experiment& e, const std::string& key) {
  auto it = e.resolved_args().find(key);
  return it == e.resolved_args().end() ? "-" : Shown(it->second);
}

bool IsFinal(v1::ExperimentState s) {
  return s == v1::SUCCEEDED || s == v1::FAILED || s == v1::STOPPED || s == v1::INTERRUPTED;
}

int ExitFor(v1::ExperimentState s) { return s == v1::SUCCEEDED ? kExitOk : kExitExperimentFailed; }

}  // namespace

Client::Client(ClientOptions options) : options_(std::move(options)) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options_.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    (void)ReadFile(options_.tls_ca, &ssl.pem_root_certs);
    creds = grpc::SslCredentials(ssl);
  }
  channel_ = grpc::CreateChannel(options_.server, creds);
  experiments_ = v1::ExperimentService::NewStub(channel_);
  memory_ = v1::MemoryService::NewStub(channel_);
  config_ = v1::ConfigService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> Client::Context(bool stream) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!stream) {
    ctx->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::milliseconds(static_cast<int64_t>(options_.timeout_seconds * 1000)));
  }
  if (!options_.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options_.token);
  return ctx;
}

int Client::Fail(const grpc::Status& status) const {
  const bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  if (unreachable) {
    std::fprintf(stderr, "error: yolod at %s is unreachable: %s\n", options_.server.c_str(),
                 Shown(status.error_message()).c_str());
    return kExitUnreachable;
  }
  std::fprintf(stderr, "error: %s\n", Shown(status.error_message()).c_str());
  return kExitUsage;
}

int Client::StartExperiments(const std::vector<v1::ExperimentSpec>& specs, bool follow) {
  std::vector<std::string> ids;
  for (const auto& spec : specs) {
    v1::StartExperimentRequest request;
    *request.mutable_spec() = spec;
    v1::Experiment e;
    grpc::Status s = experiments_->StartExperiment(Context().get(), request, &e);
    if (!s.ok()) return Fail(s);
    if (options_.output == "json") {
      std::printf("%s\n", ToJson(e).c_str());
    } else {
      std::printf("experiment %s created (%s)\n", Shown(e.id()).c_str(), State(e.state()).c_str());
    }
    ids.push_back(e.id());
  }
  int code = kExitOk;
  if (follow) {
    for (const auto& id : ids) code = std::max(code, Follow(id));
  }
  std::fflush(stdout);
  return code;
}

int Client::GetExperiments() {
  v1::ListExperimentsResponse list;
  grpc::Status s = experiments_->ListExperiments(Context().get(), {}, &list);
  if (!s.ok()) return Fail(s);
  if (options_.output == "json") {
    std::printf("%s\n", ToJson(list).c_str());
    return kExitOk;
  }
  std::printf("%-14s %-12s %-16s %-8s %-9s %-9s %-6s\n", "ID", "STATE", "NAME", "MODEL", "EPOCH",
              "mAP50-95", "AGE");
  for (const auto& e : list.experiments()) {
    std::printf(
        "%-14s %-12s %-16s %-8s %-9s %-9s %-6s\n", Shown(e.id()).c_str(), State(e.state()).c_str(),
        e.spec().name().empty() ? "-" : Shown(e.spec().name()).c_str(), Arg(e, "model").c_str(),
        absl::StrCat(e.epochs_completed(), "/", Arg(e, "epochs")).c_str(),
        e.has_last_epoch() ? absl::StrFormat("%.4f", e.last_epoch().map50_95()).c_str() : "-",
        Age(e.create_time()).c_str());
  }
  return kExitOk;
}

int Client::DescribeExperiment(const std::string& id) {
  v1::GetExperimentRequest request;
  request.set_id(id);
  v1::Experiment e;
  grpc::Status s = experiments_->GetExperiment(Context().get(), request, &e);
  if (!s.ok()) return Fail(s);
  if (options_.output == "json") {
    std::printf("%s\n", ToJson(e).c_str());
    return kExitOk;
  }
  std::printf("ID:        %s\nName:      %s\nState:     %s\nReason:    %s\nDevice:    %s\n",
              Shown(e.id()).c_str(), Shown(e.spec().name()).c_str(), State(e.state()).c_str(),
              Shown(e.reason()).c_str(), Shown(e.device()).c_str());
  std::printf("Run dir:   %s\nCreated:   %s\nRounds:    %d\n", Shown(e.run_dir()).c_str(),
              TimeUtil::ToString(e.create_time()).c_str(), e.rounds());
  if (e.state() == v1::RUNNING) std::printf("Worker:    pid %d\n", e.worker_pid());
  if (e.last_exit() != v1::WORKER_EXIT_UNSPECIFIED) {
    std::printf("Last exit: %s (code %d, signal %d)\n", v1::WorkerExit_Name(e.last_exit()).c_str(),
                e.exit_code(), e.exit_signal());
  }
  std::printf("Epochs:    %d/%s\n", e.epochs_completed(), Arg(e, "epochs").c_str());
  if (e.has_last_epoch()) {
    const auto& r = e.last_epoch();
    std::printf("Last epoch: P %.4f  R %.4f  mAP50 %.4f  mAP50-95 %.4f  %.1f img/s\n",
                r.precision(), r.recall(), r.map50(), r.map50_95(), r.images_per_second());
  }
  std::printf("Memory:\n  batch %s",
              e.batch() > 0 ? std::to_string(e.batch()).c_str() : "(AutoBatch)");
  if (e.oom_resumes() > 0) std::printf(", %d out-of-memory resumes", e.oom_resumes());
  std::printf("\n");
  if (!e.memory_policy().empty()) std::printf("  policy: %s\n", e.memory_policy().c_str());
  if (e.has_memory_estimate()) {
    const auto& m = e.memory_estimate();
    std::printf("  estimate: %s at batch %d (%s available on %s)\n",
                HumanBytes(m.predicted_bytes()).c_str(), m.batch(),
                HumanBytes(m.available_bytes()).c_str(), Shown(m.device()).c_str());
  }
  if (e.has_rss_trend() && e.rss_trend().epochs() > 0) {
    std::printf("  trend: %s\n", Shown(e.rss_trend().message()).c_str());
  }
  if (e.spec().has_smart()) {
    const auto& smart = e.spec().smart();
    std::printf(
        "Smart:     %d epochs in rounds of %d, patience %d rounds; best fitness %.5f, %d "
        "rounds without improvement\n",
        smart.max_total_epochs(), smart.round_epochs(), smart.patience(), e.best_fitness(),
        e.rounds_without_improvement());
    if (e.smart_rounds_size() > 0) {
      std::printf("  %-5s %-9s %9s %10s %10s %12s %12s %9s\n", "ROUND", "EPOCHS", "SECONDS",
                  "PEAK RSS", "END RSS", "YOLOD AFTER", "HOST AVAIL", "FITNESS");
    }
    for (const auto& r : e.smart_rounds()) {
      std::printf("  %-5d %-9s %9.0f %10s %10s %12s %12s %9.5f%s\n", r.round(),
                  absl::StrCat(r.first_epoch(), "-", r.last_epoch()).c_str(), r.seconds(),
                  HumanBytes(r.worker_peak_rss_bytes()).c_str(),
                  HumanBytes(r.worker_end_rss_bytes()).c_str(),
                  HumanBytes(r.yolod_rss_after_bytes()).c_str(),
                  HumanBytes(r.host_available_after_bytes()).c_str(), r.best_fitness(),
                  r.improved() ? " +" : "");
    }
  }
  if (e.memory_actions_size() > 0) {
    std::printf("Events:\n");
    for (const auto& a : e.memory_actions()) {
      std::printf("  %s  %-15s %s\n", TimeUtil::ToString(a.time()).c_str(), a.kind().c_str(),
                  ShownLine(a.message()).c_str());
    }
  }
  std::printf("Arguments:\n");
  for (const auto& [k, v] :
       std::map<std::string, std::string>(e.resolved_args().begin(), e.resolved_args().end())) {
    std::printf("  %s=%s\n", k.c_str(), v.c_str());
  }
  return kExitOk;
}

int Client::Logs(const std::string& id, bool follow) {
  v1::GetExperimentLogsRequest request;
  request.set_id(id);
  int64_t offset = 0;
  while (true) {  // the whole log, 4 MiB at a time
    request.set_offset(offset);
    v1::ExperimentLogs logs;
    grpc::Status s = experiments_->GetExperimentLogs(Context().get(), request, &logs);
    if (!s.ok()) return Fail(s);
    std::vector<std::string> lines = absl::StrSplit(logs.text(), '\n');
    if (!lines.empty() && lines.back().empty()) lines.pop_back();  // the text ends with '\n'
    for (const std::string& line : lines) std::printf("%s\n", ShownLine(line).c_str());
    if (logs.next_offset() == offset) break;
    offset = logs.next_offset();
  }
  std::fflush(stdout);
  if (!follow) return kExitOk;
  v1::WatchExperimentRequest watch;
  watch.set_id(id);
  watch.set_logs(true);
  watch.set_log_offset(offset);
  auto ctx = Context(/*stream=*/true);
  auto reader = experiments_->WatchExperiment(ctx.get(), watch);
  v1::ExperimentEvent event;
  v1::ExperimentState last = v1::EXPERIMENT_STATE_UNSPECIFIED;
  while (reader->Read(&event)) {
    if (event.has_log_line()) {
      std::printf("%s\n", ShownLine(event.log_line()).c_str());
      std::fflush(stdout);
    } else if (event.has_experiment()) {
      last = event.experiment().state();
    }
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) return Fail(s);
  return IsFinal(last) ? ExitFor(last) : kExitOk;
}

int Client::Follow(const std::string& id) {
  v1::WatchExperimentRequest watch;
  watch.set_id(id);
  watch.set_progress_interval_seconds(0.5);
  auto ctx = Context(/*stream=*/true);
  auto reader = experiments_->WatchExperiment(ctx.get(), watch);
  const bool tty = isatty(STDOUT_FILENO);
  v1::ExperimentEvent event;
  v1::Experiment exp;
  double map = -1;
  bool open_line = false;
  auto end_line = [&] {
    if (open_line) std::printf("\n");
    open_line = false;
  };
  while (reader->Read(&event)) {
    if (event.has_experiment()) {
      const bool changed = event.experiment().state() != exp.state();
      exp = event.experiment();
      if (changed) {
        end_line();
        std::printf("%s %s: %s\n", Shown(exp.id()).c_str(), State(exp.state()).c_str(),
                    Shown(exp.reason()).c_str());
      }
    } else if (event.has_epoch()) {
      const auto& r = event.epoch();
      map = r.map50_95();
      end_line();
      std::printf(
          "%s epoch %d/%d  box %.4g cls %.4g dfl %.4g  P %.3f R %.3f mAP50 %.3f "
          "mAP50-95 %.3f  %.1f img/s  RSS %s\n",
          id.c_str(), r.epoch(), r.epochs(), r.box_loss(), r.cls_loss(), r.dfl_loss(),
          r.precision(), r.recall(), r.map50(), r.map50_95(), r.images_per_second(),
          HumanBytes(r.rss_bytes()).c_str());
    } else if (event.has_progress() && tty) {
      const auto& p = event.progress();
      const int width = 20;
      const int done = p.batches() > 0 ? p.batch() * width / p.batches() : 0;
      std::printf(
          "\r%s epoch %d/%d [%s%s] %d/%d  box %.4g cls %.4g dfl %.4g  mAP50-95 %s  "
          "%.1f img/s  RSS %s   ",
          id.c_str(), p.epoch(), p.epochs(), std::string(done, '#').c_str(),
          std::string(width - done, '.').c_str(), p.batch(), p.batches(), p.box_loss(),
          p.cls_loss(), p.dfl_loss(), map < 0 ? "-" : absl::StrFormat("%.3f", map).c_str(),
          p.images_per_second(), HumanBytes(p.rss_bytes()).c_str());
      open_line = true;
    }
    std::fflush(stdout);
  }
  end_line();
  grpc::Status s = reader->Finish();
  if (!s.ok()) return Fail(s);
  if (!IsFinal(exp.state())) {
    std::fprintf(stderr, "error: the watch of %s ended before the experiment did\n", id.c_str());
    return kExitUnreachable;
  }
  return ExitFor(exp.state());
}

int Client::Health() {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status s = stub->Check(Context().get(), {}, &response);
  if (!s.ok()) return Fail(s);
  std::printf("%s\n",
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  const bool serving = response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  return serving ? kExitOk : 1;  // 1, as for a run that failed
}

int Client::Stop(const std::string& id) {
  v1::StopExperimentRequest request;
  request.set_id(id);
  v1::Experiment e;
  grpc::Status s = experiments_->StopExperiment(Context().get(), request, &e);
  if (!s.ok()) return Fail(s);
  std::printf("experiment %s: %s (%s)\n", Shown(e.id()).c_str(), State(e.state()).c_str(),
              Shown(e.reason()).c_str());
  return kExitOk;
}

int Client::Resume(const std::string& id, bool follow) {
  v1::ResumeExperimentRequest request;
  request.set_id(id);
  v1::Experiment e;
  grpc::Status s = experiments_->ResumeExperiment(Context().get(), request, &e);
  if (!s.ok()) return Fail(s);
  std::printf("experiment %s: %s (%s)\n", Shown(e.id()).c_str(), State(e.state()).c_str(),
              Shown(e.reason()).c_str());
  return follow ? Follow(id) : kExitOk;
}

int Client::Delete(const std::string& id) {
  v1::DeleteExperimentRequest request;
  request.set_id(id);
  v1::DeleteExperimentResponse response;
  grpc::Status s = experiments_->DeleteExperiment(Context().get(), request, &response);
  if (!s.ok()) return Fail(s);
  std::printf("experiment %s deleted\n", id.c_str());
  return kExitOk;
}

}  // namespace yolo
