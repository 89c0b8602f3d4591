#include "server/metrics/metrics_endpoint.h"

#include <prometheus/text_serializer.h>

#include <sstream>

#include "common/secret.h"

extern "C" {
extern const char yolo_status_html[];
extern const char yolo_status_html_end[];
extern const char yolo_chart_js[];
extern const char yolo_chart_js_end[];
}

namespace yolo {

std::string StatusPageHtml() { return std::string(yolo_status_html, yolo_status_html_end); }
std::string ChartJs() { return std::string(yolo_chart_js, yolo_chart_js_end); }

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    MetricsEndpointOptions options, std::shared_ptr<prometheus::Registry> registry,
    MetricsSources sources, const StatusBoard* board) {
  std::unique_ptr<MetricsEndpoint> endpoint(
      new MetricsEndpoint(options, std::move(registry), std::move(sources), board));
  HttpServer::Options http;
  http.tls_cert_file = options.tls_cert_file;
  http.tls_key_file = options.tls_key_file;
  auto server = HttpServer::Start(
      options.listen, [e = endpoint.get()](const HttpRequest& r) { return e->Handle(r); }, http);
  if (!server.ok()) return server.status();
  endpoint->server_ = std::move(*server);
  return endpoint;
}

MetricsEndpoint::MetricsEndpoint(MetricsEndpointOptions options,
                                 std::shared_ptr<prometheus::Registry> registry,
                                 MetricsSources sources, const StatusBoard* board)
    : options_(std::move(options)),
      registry_(std::move(registry)),
      sources_(std::move(sources)),
      board_(board),
      memory_(*registry_),
      experiments_(*registry_) {}

std::string MetricsEndpoint::Scrape() {
  if (sources_.memory) memory_.Update(sources_.memory());
  if (sources_.experiments) experiments_.Update(sources_.experiments());
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

HttpResponse MetricsEndpoint::Handle(const HttpRequest& request) {
  HttpResponse r;
  const bool data = request.path == "/metrics" || request.path == "/api/status";
  if (data && !options_.token.empty() && !options_.open) {
    auto it = request.headers.find("authorization");
    const std::string given = it == request.headers.end() ? "" : it->second;
    if (!BearerMatches(given, options_.token)) {
      r.status = 401;
      r.headers.push_back({"WWW-Authenticate", "Bearer realm=\"yolod\""});
      r.body = "a bearer token is needed (Authorization: Bearer <token>)\n";
      return r;
    }
  }
  if (request.path == "/metrics") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = Scrape();
  } else if (request.path == "/api/status") {
    r.content_type = "application/json";
    r.body = board_ != nullptr ? board_->Json() : "{}";
  } else if (request.path == "/" || request.path == "/index.html") {
    r.content_type = "text/html; charset=utf-8";
    r.body = StatusPageHtml();
    r.headers.push_back({"Content-Security-Policy",
                         "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                         "style-src 'self' 'unsafe-inline'"});
  } else if (request.path == "/chart.js") {
    r.content_type = "text/javascript; charset=utf-8";
    r.body = ChartJs();
  } else {
    r.status = 404;
    r.body = "not found: yolod serves /metrics, / and /api/status here\n";
  }
  return r;
}

}  // namespace yolo
