#include "server/metrics/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace yolo {
namespace {

using Clock = std::chrono::steady_clock;

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string Serialize(const HttpResponse& r, bool head) {
  std::string out = absl::StrCat(
      "HTTP/1.1 ", r.status, " ", Reason(r.status), "\r\n", "Content-Type: ", r.content_type,
      "\r\n", "Content-Length: ", r.body.size(), "\r\n", "Connection: close\r\n",
      "Cache-Control: no-store\r\n", "X-Content-Type-Options: nosniff\r\n");
  for (const auto& [name, value] : r.headers) absl::StrAppend(&out, name, ": ", value, "\r\n");
  out += "\r\n";
  if (!head) out += r.body;
  return out;
}

HttpResponse Error(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.body = message + "\n";
  return r;
}

// "/metrics?x=1" as a request line's target: path and query.
void SplitTarget(const std::string& target, std::string* path, std::string* query) {
  const size_t q = target.find('?');
  *path = target.substr(0, q);
  *query = q == std::string::npos ? "" : target.substr(q + 1);
}

// The head of a request (up to the blank line): the response it gets when it is refused,
// or the parsed request.
bool ParseHead(const std::string& head, HttpRequest* request, HttpResponse* refusal) {
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  std::vector<std::string> first = absl::StrSplit(lines.empty() ? "" : lines[0], ' ');
  if (first.size() != 3 || !absl::StartsWith(first[2], "HTTP/1.") || first[1].empty() ||
      first[1][0] != '/') {
    *refusal = Error(400, "malformed request line");
    return false;
  }
  request->method = first[0];
  SplitTarget(first[1], &request->path, &request->query);
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos || colon == 0) {
      *refusal = Error(400, absl::StrCat("malformed header line ", i + 1));
      return false;
    }
    std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
    request->headers[name] = std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  if (request->method != "GET" && request->method != "HEAD") {
    *refusal = Error(405, "only GET and HEAD are served");
    refusal->headers.push_back({"Allow", "GET, HEAD"});
    return false;
  }
  int64_t length = 0;
  auto it = request->headers.find("content-length");
  if ((it != request->headers.end() && (!absl::SimpleAtoi(it->second, &length) || length != 0)) ||
      request->headers.count("transfer-encoding")) {
    *refusal = Error(413, "a GET has no body");
    return false;
  }
  return true;
}

absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(const std::string& listen) {
  std::string host, port;
  if (absl::StartsWith(listen, "[")) {
    const size_t close = listen.find("]:");
    if (close == std::string::npos) return absl::InvalidArgumentError("");
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string::npos || listen.find(':') != colon) {
      return absl::InvalidArgumentError("");
    }
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  int p = 0;
  if (host.empty() || !absl::SimpleAtoi(port, &p) || p < 0 || p > 65535) {
    return absl::InvalidArgumentError("");
  }
  return std::make_pair(host, port);
}

std::string TlsError() {
  char buffer[256];
  ERR_error_string_n(ERR_get_error(), buffer, sizeof(buffer));
  return buffer;
}

// An SSL_CTX for the PEM files, or the reason there is none.
absl::StatusOr<SSL_CTX*> MakeTls(const std::string& cert, const std::string& key) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError("TLS: " + TlsError());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(absl::StrCat(cert, ": not a PEM certificate: ", TlsError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": not the PEM private key of ", cert, ": ", TlsError()));
  }
  return ctx;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                              Handler handler, Options options) {
  auto parts = SplitHostPort(listen);
  if (!parts.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", listen, "': expected HOST:PORT, such as 127.0.0.1:9464"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(parts->first.c_str(), parts->second.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", listen, "': ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
      why = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, ": ", why));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int port = bound.ss_family == AF_INET6
                       ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                       : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  SSL_CTX* tls = nullptr;
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    auto made = MakeTls(options.tls_cert_file, options.tls_key_file);
    if (!made.ok()) {
      close(fd);
      return made.status();
    }
    tls = *made;
  }
  const int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake < 0) {
    close(fd);
    if (tls != nullptr) SSL_CTX_free(tls);
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  std::unique_ptr<HttpServer> server(
      new HttpServer(fd, wake, port, std::move(handler), std::move(options)));
  server->tls_ = tls;
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

HttpServer::HttpServer(int listen_fd, int wake_fd, int port, Handler handler, Options options)
    : listen_fd_(listen_fd),
      wake_fd_(wake_fd),
      port_(port),
      handler_(std::move(handler)),
      options_(std::move(options)) {}

HttpServer::~HttpServer() {
  Stop();
  close(listen_fd_);
  close(wake_fd_);
  if (tls_ != nullptr) SSL_CTX_free(static_cast<SSL_CTX*>(tls_));
}

void HttpServer::Stop() {
  if (stop_.exchange(true)) return;
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void HttpServer::Loop() {
  struct Connection {
    int fd;
    Clock::time_point deadline;
    SSL* ssl = nullptr;  // HTTPS
    std::string in, out;
    size_t sent = 0;
    bool writing = false;
    short wait_for = POLLIN;  // what the next read or write waits on (TLS may want the other)
  };
  SSL_CTX* const tls = static_cast<SSL_CTX*>(tls_);
  std::list<Connection> connections;
  auto respond = [](Connection& c, const HttpResponse& r, bool head) {
    c.out = Serialize(r, head);
    c.writing = true;
    c.wait_for = POLLOUT;
  };
  auto finish = [](Connection& c) {
    if (c.ssl != nullptr) {
      SSL_shutdown(c.ssl);  // one close_notify, not waiting for the client's
      SSL_free(c.ssl);
    }
    close(c.fd);
  };
  // A read or write's result: bytes, 0 to wait (c.wait_for set), -1 when the connection is over.
  auto io = [](Connection& c, bool write, char* buffer, size_t size) -> ssize_t {
    if (c.ssl == nullptr) {
      const ssize_t n =
          write ? send(c.fd, buffer, size, MSG_NOSIGNAL) : recv(c.fd, buffer, size, 0);
      if (n > 0) return n;
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
      return -1;
    }
    ERR_clear_error();
    const int n = write ? SSL_write(c.ssl, buffer, static_cast<int>(size))
                        : SSL_read(c.ssl, buffer, static_cast<int>(size));
    if (n > 0) return n;
    switch (SSL_get_error(c.ssl, n)) {
      case SSL_ERROR_WANT_READ:
        c.wait_for = POLLIN;
        return 0;
      case SSL_ERROR_WANT_WRITE:
        c.wait_for = POLLOUT;
        return 0;
      default:
        return -1;  // a failed handshake (plain HTTP to an HTTPS port), or the client left
    }
  };
  while (!stop_.load()) {
    std::vector<pollfd> fds;
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    Clock::time_point next = Clock::now() + std::chrono::seconds(60);
    for (const Connection& c : connections) {
      fds.push_back({c.fd, c.wait_for, 0});
      next = std::min(next, c.deadline);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
    const int ready =
        poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(wait.count() + 1, 0)));
    if (ready < 0 && errno != EINTR) break;
    if (stop_.load()) break;
    if (fds[1].revents & POLLIN) {
      for (;;) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        if (connections.size() >= options_.max_connections) {
          close(fd);  // the oldest keep their turn; Prometheus retries at the next scrape
          continue;
        }
        Connection c{fd, Clock::now() + options_.timeout};
        if (tls != nullptr) {
          c.ssl = SSL_new(tls);
          if (c.ssl == nullptr || SSL_set_fd(c.ssl, fd) != 1) {
            if (c.ssl != nullptr) SSL_free(c.ssl);
            close(fd);
            continue;
          }
          SSL_set_accept_state(c.ssl);
        }
        connections.push_back(std::move(c));
      }
    }
    // Connections accepted just now have no pollfd yet: they are served next time round.
    auto it = connections.begin();
    for (size_t i = 2; i < fds.size() && it != connections.end(); ++i) {
      Connection& c = *it;
      bool done = false;
      if (fds[i].revents != 0) {
        if (!c.writing) {
          char buffer[4096];
          const ssize_t n = io(c, false, buffer, sizeof(buffer));
          if (n < 0) done = true;  // the client left before asking
          if (n > 0) {
            c.in.append(buffer, static_cast<size_t>(n));
            const size_t end = c.in.find("\r\n\r\n");
            if (end == std::string::npos && c.in.size() > options_.max_head_bytes) {
              respond(c, Error(431, "request head too large"), false);
            } else if (end != std::string::npos) {
              HttpRequest request;
              HttpResponse refusal;
              if (end > options_.max_head_bytes) {
                respond(c, Error(431, "request head too large"), false);
              } else if (!ParseHead(c.in.substr(0, end), &request, &refusal)) {
                respond(c, refusal, false);
              } else {
                HttpResponse response;
                try {
                  response = handler_(request);
                } catch (const std::exception& e) {
                  response = Error(500, e.what());
                }
                respond(c, response, request.method == "HEAD");
              }
            }
          }
        }
        if (c.writing && !done) {
          const ssize_t n = io(c, true, c.out.data() + c.sent, c.out.size() - c.sent);
          if (n > 0) c.sent += static_cast<size_t>(n);
          if (n < 0 || c.sent == c.out.size()) done = true;
        }
      }
      if (!done && Clock::now() >= c.deadline) done = true;
      if (done) {
        finish(c);
        it = connections.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Connection& c : connections) finish(c);
}

}  // namespace yolo
