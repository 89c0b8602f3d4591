// A small HTTP/1.1 server for /metrics and the status page: GET and HEAD only, one request per
// connection (Connection: close), on one thread of its own that polls every socket without
// blocking, so that a slow or silent client delays no one else. Bounded: request heads over
// `max_head_bytes` get 431, connections beyond `max_connections` are closed at once, and each
// connection has `timeout` from accept to its last byte written. With a certificate and key it
// speaks HTTPS only (TLS 1.2 or newer, OpenSSL). LibTorch-free.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace yolo {

struct HttpRequest {
  std::string method;                          // "GET" or "HEAD"
  std::string path;                            // without the query
  std::string query;                           // after '?', undecoded
  std::map<std::string, std::string> headers;  // names in lower case
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones
};

class HttpServer {
 public:
  // Called on the server's thread, one request at a time: it must answer within milliseconds.
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  struct Options {
    size_t max_connections = 64;
    size_t max_head_bytes = 16 << 10;
    std::chrono::milliseconds timeout{10000};
    std::string tls_cert_file, tls_key_file;  // PEM; both or neither
  };

  // Listens on `listen` ("127.0.0.1:9464", "[::1]:0", "localhost:9464"; port 0 picks a free one).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           Handler handler, Options options);
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           Handler handler) {
    return Start(listen, std::move(handler), Options());
  }
  ~HttpServer();  // Stop()

  int port() const { return port_; }
  // Closes every connection and ends the thread. Any thread but the handler's.
  void Stop();

 private:
  HttpServer(int listen_fd, int wake_fd, int port, Handler handler, Options options);
  void Loop();

  const int listen_fd_, wake_fd_, port_;
  void* tls_ = nullptr;  // SSL_CTX, when serving HTTPS
  const Handler handler_;
  const Options options_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace yolo
