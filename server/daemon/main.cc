// yolod: the training daemon. Serves ExperimentService, MemoryService, ConfigService, gRPC
// health and reflection; runs each experiment round in a yolo-worker process.
//   yolod [--listen 127.0.0.1:50051] [--state-dir DIR] [--config yolod.yaml] ...
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "server/api/services.h"
#include "server/api/worker_listener.h"
#include "server/daemon/daemon_config.h"
#include "server/metrics/grpc_metrics.h"
#include "server/metrics/metrics_endpoint.h"

namespace {
namespace fs = std::filesystem;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// %* in a pattern: the message as a JSON string (bytes that are not UTF-8 become U+FFFD).
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string text =
        nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
            .dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
    dest.append(std::string_view(text));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

void SetUpLogging(const yolo::DaemonConfig& config) {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  const std::string log_dir = (fs::path(config.state_dir) / "logs").string();
  std::error_code ec;
  fs::create_directories(log_dir, ec);
  auto file = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
      (fs::path(log_dir) / "yolod.log").string(), 10 << 20, 3);
  auto logger = std::make_shared<spdlog::logger>("yolod", spdlog::sinks_init_list{console, file});
  if (config.log_format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","pid":%P,"msg":%*})");
    logger->set_formatter(std::move(formatter));
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(config.log_level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// The driver's list of GPUs (one folder each), 0 when it cannot be read: then a spec's GPU
// index is not checked against it.
int GpuCount() {
  std::error_code ec;
  int n = 0;
  for (fs::directory_iterator it("/proc/driver/nvidia/gpus", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++n;
  }
  return n;
}

bool HasGpu() {
  std::error_code ec;
  return fs::exists("/dev/nvidiactl", ec) || GpuCount() > 0;
}

// The bearer token. Like ssh with a private key, yolod refuses a token file that other users
// may read or write.
absl::StatusOr<std::string> ReadToken(const std::string& path) {
  if (path.empty()) return std::string();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(
        absl::StrFormat("%s: the token file is accessible by others (mode %04o); run chmod 600 %s",
                        path, st.st_mode & 07777, path));
  }
  std::string text;
  absl::Status read = yolo::ReadFile(path, &text, 4096);
  if (!read.ok()) return read;
  std::string token(absl::StripAsciiWhitespace(text));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": the token is empty"));
  return token;
}

// "host:port" as bound (the port picked when `listen` asked for 0), written to `file` for
// clients and tests to find.
absl::StatusOr<std::string> WriteBoundAddress(const std::string& listen, int port,
                                              const std::string& file) {
  const std::string bound = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
  if (absl::Status w = yolo::WriteFileAtomic(file, bound + "\n"); !w.ok()) return w;
  return bound;
}

}  // namespace

int main(int argc, char** argv) {
  // Everything yolod creates (state dir, experiment files, logs, sockets) is its user's alone.
  ::umask(0077);
  yolo::DaemonConfig config;
  std::string config_file;
  CLI::App app{"yolod: the YOLO training daemon"};
  app.add_option("--config", config_file, "YAML file with these settings (flags win)");
  // Flags are read into a second struct so that they override the file only when given.
  yolo::DaemonConfig flags;
  app.add_option("--listen", flags.listen, "gRPC address; port 0 picks a free one")
      ->default_str("127.0.0.1:50051");
  app.add_option("--state-dir", flags.state_dir, "experiments, logs, yolod.addr");
  app.add_option("--max-running-per-device", flags.max_running_per_device,
                 "experiments running at once on one device")
      ->default_str("1");
  app.add_option("--worker-nice", flags.worker_nice,
                 "workers' niceness (0..19), so that yolod answers while they use every core")
      ->default_str("10");
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error");
  app.add_option("--log-format", flags.log_format, "text or json");
  app.add_option("--worker", flags.worker, "the yolo-worker executable");
  app.add_option("--tls-cert", flags.tls_cert, "PEM certificate (required off loopback)");
  app.add_option("--tls-key", flags.tls_key, "PEM private key");
  app.add_option("--token-file", flags.token_file, "file holding the bearer token");
  app.add_flag("--open-reads", flags.open_reads, "read-only calls need no token");
  app.add_option("--metrics-listen", flags.metrics_listen,
                 "address of /metrics and the status page (/); port 0 picks a free one, "
                 "written to metrics.addr; off: none")
      ->default_str("127.0.0.1:9464");
  app.add_flag("--metrics-open", flags.metrics_open,
               "with a token: /metrics and the status data need none (loopback only)");
  app.add_option("--allowed-root", flags.allowed_roots, "data and weights must lie under these");
  app.add_option("--ram-levels", flags.ram_levels,
                 "memory watchdog: notice,warning,danger in percent of the RAM limit")
      ->default_str("70,80,90");
  app.add_option("--gpu-levels", flags.gpu_levels, "the same for each GPU's memory")
      ->default_str("80,90,95");
  app.add_option("--memory-log-interval", flags.memory_log_interval,
                 "seconds between the samples of each experiment's memory_log_*.json")
      ->default_str("5");
  app.add_option("--watchdog-interval", flags.watchdog_interval, "seconds between memory samples")
      ->default_str("1");
  app.add_option("--danger-grace", flags.danger_grace,
                 "seconds at the danger level before the newest run is stopped (0: never)")
      ->default_str("30");
  app.add_option("--psi-full-limit", flags.psi_full_limit,
                 "PSI 'full' avg10 percent above which the RAM level rises by one (0: off)")
      ->default_str("20");
  app.add_option("--oom-retries", flags.oom_retries,
                 "resumes from last.pt at half the batch after a worker runs out of memory")
      ->default_str("2");
  app.add_flag("--enable-fault-injection", flags.enable_fault_injection,
               "accept the test-only spec keys fault_leak_mb and fault_oom_epoch");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  if (!config_file.empty()) {
    absl::Status loaded = yolo::LoadDaemonConfigFile(config_file, &config);
    if (!loaded.ok()) {
      std::fprintf(stderr, "yolod: %s\n", std::string(loaded.message()).c_str());
      return kExitUsage;
    }
  }
  for (const auto* opt : app.get_options()) {
    if (opt->count() == 0) continue;
    const std::string name = opt->get_name();
    if (name == "--listen") config.listen = flags.listen;
    if (name == "--state-dir") config.state_dir = flags.state_dir;
    if (name == "--max-running-per-device")
      config.max_running_per_device = flags.max_running_per_device;
    if (name == "--worker-nice") config.worker_nice = flags.worker_nice;
    if (name == "--log-level") config.log_level = flags.log_level;
    if (name == "--log-format") config.log_format = flags.log_format;
    if (name == "--worker") config.worker = flags.worker;
    if (name == "--tls-cert") config.tls_cert = flags.tls_cert;
    if (name == "--tls-key") config.tls_key = flags.tls_key;
    if (name == "--token-file") config.token_file = flags.token_file;
    if (name == "--open-reads") config.open_reads = flags.open_reads;
    if (name == "--metrics-listen") config.metrics_listen = flags.metrics_listen;
    if (name == "--metrics-open") config.metrics_open = flags.metrics_open;
    if (name == "--allowed-root") config.allowed_roots = flags.allowed_roots;
    if (name == "--ram-levels") config.ram_levels = flags.ram_levels;
    if (name == "--gpu-levels") config.gpu_levels = flags.gpu_levels;
    if (name == "--watchdog-interval") config.watchdog_interval = flags.watchdog_interval;
    if (name == "--memory-log-interval") config.memory_log_interval = flags.memory_log_interval;
    if (name == "--danger-grace") config.danger_grace = flags.danger_grace;
    if (name == "--psi-full-limit") config.psi_full_limit = flags.psi_full_limit;
    if (name == "--oom-retries") config.oom_retries = flags.oom_retries;
    if (name == "--enable-fault-injection") {
      config.enable_fault_injection = flags.enable_fault_injection;
    }
  }
  if (absl::Status ok = yolo::FinishDaemonConfig(&config); !ok.ok()) {
    std::fprintf(stderr, "yolod: %s\n", std::string(ok.message()).c_str());
    return kExitUsage;
  }
  auto token = ReadToken(config.token_file);
  if (!token.ok()) {
    std::fprintf(stderr, "yolod: %s\n", std::string(token.status().message()).c_str());
    return kExitUsage;
  }
  std::error_code ec;
  fs::create_directories(config.state_dir, ec);
  if (ec) {
    std::fprintf(stderr, "yolod: cannot create state dir %s: %s\n", config.state_dir.c_str(),
                 ec.message().c_str());
    return kExitError;
  }
  SetUpLogging(config);
  struct stat state_stat {};
  if (::stat(config.state_dir.c_str(), &state_stat) == 0 && (state_stat.st_mode & 077) != 0) {
    spdlog::warn("state dir {} is accessible by other users (mode {:04o}); chmod 700 it",
                 config.state_dir, state_stat.st_mode & 07777);
  }

  // Signals are taken by one thread with sigwait; every other thread (and each worker, which
  // resets its mask) inherits the block.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  const bool has_gpu = HasGpu();
  auto store = yolo::TrainingConfigStore::Open(config.state_dir);
  if (!store.ok()) {
    spdlog::error("{}", std::string(store.status().message()));
    return kExitError;
  }
  yolo::TrainingConfigStore* store_ptr = store->get();
  yolo::ManagerOptions options;
  options.state_dir = config.state_dir;
  options.worker_path = config.worker;
  options.max_running_per_device = config.max_running_per_device;
  options.worker_nice = config.worker_nice;
  options.allowed_roots = config.allowed_roots;
  options.has_gpu = has_gpu;
  options.gpu_count = has_gpu ? GpuCount() : 0;
  options.oom_retries = config.oom_retries;
  options.memory_log_interval =
      std::chrono::milliseconds(static_cast<int64_t>(config.memory_log_interval * 1000));
  options.allow_fault_injection = config.enable_fault_injection;
  auto manager =
      yolo::ExperimentManager::Create(options, [store_ptr, has_gpu](const std::string& d) {
        yolo::SpecCheckOptions o;
        o.profile_defaults = yolo::ProfileArgsFor(d, has_gpu);
        o.config_defaults = store_ptr->Get();
        return o;
      });
  if (!manager.ok()) {
    spdlog::error("{}", std::string(manager.status().message()));
    return kExitError;
  }

  // The memory side, before any worker can report: the leak forecast reads it.
  yolo::MemoryOptions memory_options;
  memory_options.gpu = yolo::MakeNvmlGpuProbe();  // absent where there is no NVML or GPU
  memory_options.watchdog.interval =
      std::chrono::milliseconds(static_cast<int64_t>(config.watchdog_interval * 1000));
  memory_options.watchdog.ram = *yolo::ParseThresholds(config.ram_levels, "ram_levels");
  memory_options.watchdog.gpu = *yolo::ParseThresholds(config.gpu_levels, "gpu_levels");
  memory_options.watchdog.danger_stop_after =
      std::chrono::seconds(static_cast<int64_t>(config.danger_grace));
  memory_options.watchdog.psi_full_avg10 = config.psi_full_limit;
  yolo::MemoryManager memory_manager(manager->get(), manager->get(), memory_options);
  (*manager)->SetMemoryHooks(
      [&memory_manager] {
        const auto s = memory_manager.watchdog().Latest();
        if (!s || s->ram_limit_bytes <= 0) return 0.0;
        return memory_manager.watchdog().ram_thresholds().danger * s->ram_limit_bytes -
               static_cast<double>(s->ram_used_bytes);
      },
      [&memory_manager] { return yolo::ReportSummary(memory_manager.Report()); },
      {[&memory_manager] { return memory_manager.watchdog().Latest(); },
       [&memory_manager] {
         return std::make_pair(memory_manager.watchdog().ram_thresholds(),
                               memory_manager.watchdog().gpu_thresholds());
       }});
  // Whichever way main returns from here: the watchdog stops (it calls the experiments), then
  // the experiments go, before the memory manager (their threads call the hooks above).
  struct ManagerFirst {
    yolo::MemoryManager* memory;
    std::unique_ptr<yolo::ExperimentManager>* manager;
    ~ManagerFirst() {
      memory->StopWatchdog();
      manager->reset();
    }
  } manager_first{&memory_manager, &*manager};
  // The worker channel: a unix socket only this user may open, whose connections yolod accepts
  // itself (WorkerListener) to check that the caller is a worker it spawned.
  const std::string socket_path = (fs::path(config.state_dir) / "worker.sock").string();
  std::unique_ptr<yolo::WorkerListener> worker_listener;
  yolo::WorkerChannelImpl worker_channel(manager->get(), [&worker_listener](const std::string& p) {
    return worker_listener ? worker_listener->PeerPid(p) : 0;
  });
  grpc::ServerBuilder worker_builder;
  worker_builder.RegisterService(&worker_channel);
  std::unique_ptr<grpc::Server> worker_server = worker_builder.BuildAndStart();
  if (!worker_server) {
    spdlog::error("cannot start the worker channel");
    return kExitError;
  }
  yolo::ExperimentManager* manager_ptr = manager->get();
  auto listener = yolo::WorkerListener::Start(
      socket_path, worker_server.get(),
      [manager_ptr](pid_t pid) { return manager_ptr->IsWorkerPid(pid); });
  if (!listener.ok()) {
    spdlog::error("{}", std::string(listener.status().message()));
    return kExitError;
  }
  worker_listener = std::move(*listener);

  yolo::Authorizer auth(*token, config.open_reads);
  yolo::ExperimentServiceImpl experiments(manager->get(), &auth);
  memory_manager.StartWatchdog();
  yolo::MemoryServiceImpl memory(&memory_manager, &auth);
  yolo::ConfigServiceImpl config_service(store_ptr, has_gpu, &auth);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!config.tls_cert.empty()) {
    std::string cert, key;
    if (!yolo::ReadFile(config.tls_cert, &cert).ok() ||
        !yolo::ReadFile(config.tls_key, &key).ok()) {
      spdlog::error("cannot read {} or {}", config.tls_cert, config.tls_key);
      return kExitError;
    }
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({key, cert});
    creds = grpc::SslServerCredentials(ssl);
  }
  // Metrics: gRPC's calls are counted by an interceptor; the rest is read at each scrape.
  auto registry = std::make_shared<prometheus::Registry>();
  yolo::GrpcMetrics grpc_metrics(
      *registry, {"yolo.v1.ExperimentService", "yolo.v1.MemoryService", "yolo.v1.ConfigService"});
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(yolo::MakeGrpcMetricsInterceptor(&grpc_metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  int port = 0;
  builder.AddListeningPort(config.listen, creds, &port);
  builder.RegisterService(&experiments);
  builder.RegisterService(&memory);
  builder.RegisterService(&config_service);
  builder.SetMaxReceiveMessageSize(4 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    spdlog::error("cannot listen on {}", config.listen);
    return kExitError;
  }
  const std::string addr_file = (fs::path(config.state_dir) / "yolod.addr").string();
  auto written = WriteBoundAddress(config.listen, port, addr_file);
  if (!written.ok()) {
    spdlog::error("{}", std::string(written.status().message()));
    return kExitError;
  }
  const std::string bound = *written;

  yolo::Watchdog& watchdog = memory_manager.watchdog();
  yolo::StatusBoard board(
      {[&watchdog] { return watchdog.Latest(); },
       [manager_ptr] { return manager_ptr->WorkerMemory(); },
       [manager_ptr] { return manager_ptr->List(); },
       [&watchdog] { return std::make_pair(watchdog.ram_thresholds(), watchdog.gpu_thresholds()); },
       [&watchdog] { return watchdog.Events(); }});
  board.Start();
  std::unique_ptr<yolo::MetricsEndpoint> metrics;
  const std::string metrics_addr_file = (fs::path(config.state_dir) / "metrics.addr").string();
  std::string metrics_bound = "off";
  if (config.metrics_listen != "off") {
    yolo::MetricsSources sources;
    sources.memory = [&watchdog, &memory_manager, &board, manager_ptr] {
      yolo::MemorySnapshot s;
      s.sample = watchdog.Latest();
      s.ram = watchdog.ram_thresholds();
      s.gpu = watchdog.gpu_thresholds();
      s.watchdog = watchdog.Counters();
      s.cleanups = memory_manager.Cleanups();
      s.starts_held = watchdog.starts_held();
      if (auto self = yolo::ProcProbe().Self(); self.ok()) s.yolod = *self;
      s.workers = board.Workers();  // sampled every 5 s: smaps_rollup is not free
      s.worker_freed_bytes = manager_ptr->Counters().worker_freed_bytes;
      return s;
    };
    sources.experiments = [manager_ptr] {
      return yolo::ExperimentSnapshot{manager_ptr->List(), manager_ptr->Counters()};
    };
    // With a certificate, /metrics speaks HTTPS as gRPC speaks TLS: on every address.
    auto started = yolo::MetricsEndpoint::Start(
        {config.metrics_listen, *token, config.metrics_open, config.tls_cert, config.tls_key},
        registry, std::move(sources), &board);
    if (!started.ok()) {
      spdlog::error("{}", std::string(started.status().message()));
      return kExitError;
    }
    metrics = std::move(*started);
    auto metrics_written = WriteBoundAddress(config.metrics_listen, metrics->port(),
                                             metrics_addr_file);  // no scheme, even for HTTPS
    if (!metrics_written.ok()) {
      spdlog::error("{}", std::string(metrics_written.status().message()));
      return kExitError;
    }
    metrics_bound = *metrics_written;
  }
  spdlog::info("yolod {} serving on {} (metrics {}, state {}, worker {}, {}, token {})",
               YOLOD_VERSION, bound, metrics_bound, config.state_dir, config.worker,
               has_gpu ? "GPU found" : "no GPU", token->empty() ? "off" : "on");

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("{}: shutting down; running workers checkpoint and stop", strsignal(signal));
  if (metrics) metrics->Stop();  // it and the board read the managers
  board.Stop();
  fs::remove(metrics_addr_file, ec);
  memory_manager.StopWatchdog();  // it acts on the experiments: before they shut down
  (*manager)->Shutdown(std::chrono::seconds(12));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  memory.WaitIdle();  // their threads use the manager
  experiments.WaitIdle();
  worker_listener->StopAccepting();  // still answers the channel's PeerPid until reset below
  worker_server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  worker_listener.reset();
  fs::remove(addr_file, ec);
  memory_manager.StopWatchdog();
  manager->reset();
  spdlog::info("yolod stopped");
  return 0;
}
