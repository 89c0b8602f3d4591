// yolod's metrics address: GET /metrics (Prometheus text format, refreshed from the managers
// at each scrape), GET / (the status page, with Chart.js embedded at build time) and
// GET /api/status (its data). With a token, /metrics and /api/status need
// "Authorization: Bearer <token>" unless `open` (loopback only); the page itself holds no data,
// and reads the token from its address's #token=... part to fetch its data.
#pragma once

#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/metrics/http_server.h"
#include "server/metrics/status_board.h"
#include "server/metrics/yolod_metrics.h"

namespace yolo {

struct MetricsSources {
  std::function<MemorySnapshot()> memory;
  std::function<ExperimentSnapshot()> experiments;
};

struct MetricsEndpointOptions {
  std::string listen = "127.0.0.1:9464";
  std::string token;                        // empty: none needed
  bool open = false;                        // with a token: /metrics and /api/status need none
  std::string tls_cert_file, tls_key_file;  // PEM: HTTPS only
};

class MetricsEndpoint {
 public:
  // `registry` may hold other families (gRPC's); it and `board` must outlive the endpoint.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      MetricsEndpointOptions options, std::shared_ptr<prometheus::Registry> registry,
      MetricsSources sources, const StatusBoard* board);
  int port() const { return server_->port(); }
  void Stop() { server_->Stop(); }

  // The answer to one request; the server's thread calls it (tests too).
  HttpResponse Handle(const HttpRequest& request);

 private:
  MetricsEndpoint(MetricsEndpointOptions options, std::shared_ptr<prometheus::Registry> registry,
                  MetricsSources sources, const StatusBoard* board);
  std::string Scrape();

  const MetricsEndpointOptions options_;
  const std::shared_ptr<prometheus::Registry> registry_;
  const MetricsSources sources_;
  const StatusBoard* const board_;
  MemoryMetrics memory_;
  ExperimentMetrics experiments_;
  std::unique_ptr<HttpServer> server_;  // last: it calls Handle until stopped
};

// The status page and Chart.js, embedded at build time (status_assets.S).
std::string StatusPageHtml();
std::string ChartJs();

}  // namespace yolo
