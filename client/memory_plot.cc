#include "client/memory_plot.h"

#include <fcntl.h>
#include <plplot.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace yolo {

namespace {
namespace fs = std::filesystem;

constexpr char kDevice[] = "pngcairo";

bool HasDevice(const char* name) {
  // The caller's arrays; on input their size, on output the devices PLplot has.
  std::vector<const char*> menus(128), names(128);
  const char** menu_ptr = menus.data();
  const char** name_ptr = names.data();
  int count = static_cast<int>(names.size());
  plgDevs(&menu_ptr, &name_ptr, &count);
  for (int i = 0; i < count && i < static_cast<int>(names.size()); ++i) {
    if (names[i] != nullptr && std::string(names[i]) == name) return true;
  }
  return false;
}

// Colour map 0 entries of our own: 1 text, 2 grid, 3 notice, 4 warning, 5 danger, 6 RAM, 7 RSS,
// 8 events, 9 GPU.
void SetColours() {
  plscol0a(0, 255, 255, 255, 1.0);  // background
  plscol0a(1, 40, 40, 40, 1.0);
  plscol0a(2, 200, 200, 200, 1.0);
  plscol0a(3, 255, 230, 120, 0.45);
  plscol0a(4, 255, 170, 60, 0.45);
  plscol0a(5, 235, 80, 70, 0.40);
  plscol0a(6, 30, 100, 200, 1.0);
  plscol0a(7, 20, 150, 80, 1.0);
  plscol0a(8, 120, 60, 160, 1.0);
  plscol0a(9, 200, 60, 140, 1.0);
}

void Band(double x0, double x1, double y0, double y1, int colour) {
  PLFLT x[4] = {x0, x1, x1, x0}, y[4] = {y0, y0, y1, y1};
  plcol0(colour);
  plfill(4, x, y);
}

void Series(const std::vector<double>& x, const std::vector<double>& y, int colour) {
  if (x.size() < 1) return;
  plcol0(colour);
  plwidth(2);
  if (x.size() == 1) {
    plpoin(1, x.data(), y.data(), 17);
  } else {
    plline(static_cast<PLINT>(x.size()), x.data(), y.data());
  }
  plwidth(1);
}

// PLplot reads '#' as the start of an escape sequence: a literal one is "##".
std::string Plain(const std::string& text) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '#') out += '#';
  }
  return out;
}

// One panel: percent of a limit over time, the three bands, the series, the events.
void Panel(const MemoryLog& log, double x_scale, double x_max, const std::vector<double>& bands,
           const std::vector<std::pair<std::vector<double>, std::vector<double>>>& series,
           const std::vector<int>& colours, const std::string& y_label, const std::string& title) {
  plcol0(1);
  plenv(0, x_max, 0, 100, 0, 0);
  Band(0, x_max, bands[0], bands[1], 3);
  Band(0, x_max, bands[1], bands[2], 4);
  Band(0, x_max, bands[2], 100, 5);
  for (size_t i = 0; i < series.size(); ++i) Series(series[i].first, series[i].second, colours[i]);
  plcol0(8);
  plschr(0, 0.55);
  for (const auto& e : log.events) {
    if (e.kind == "epoch") continue;  // many; the series show them
    PLFLT x[2] = {e.t / x_scale, e.t / x_scale}, y[2] = {0, 100};
    pllsty(2);
    plline(2, x, y);
    pllsty(1);
    plptex(e.t / x_scale, 96, 0, 1, 1.02, Plain(e.kind).c_str());
  }
  plschr(0, 0.8);
  plcol0(1);
  pllab(x_scale >= 60 ? "minutes" : "seconds", y_label.c_str(), Plain(title).c_str());
  plbox("g", 0, 0, "g", 0, 0);
}

}  // namespace

absl::Status PlotMemoryLog(const MemoryLog& log, const std::string& png_path,
                           const std::string& source_path) {
  if (!HasDevice(kDevice)) {
    return absl::FailedPreconditionError(
        "PLplot has no PNG device here (Debian's plplot-driver-cairo provides pngcairo)");
  }
  double seconds = 1;
  for (const auto& s : log.samples) seconds = std::max(seconds, s.t);
  for (const auto& e : log.events) seconds = std::max(seconds, e.t);
  const double x_scale = seconds > 600 ? 60 : 1;
  const double x_max = seconds / x_scale;
  std::vector<double> t, ram, rss, t_gpu, gpu;
  for (const auto& s : log.samples) {
    if (s.ram_limit_bytes <= 0) continue;
    t.push_back(s.t / x_scale);
    ram.push_back(100.0 * s.ram_used_bytes / s.ram_limit_bytes);
    rss.push_back(s.rss_bytes ? 100.0 * *s.rss_bytes / s.ram_limit_bytes : -1);
    double used = 0, total = 0;
    for (const auto& g : s.gpus) used += g.used_bytes, total += g.total_bytes;
    if (total > 0) {
      t_gpu.push_back(s.t / x_scale);
      gpu.push_back(100.0 * used / total);
    }
  }
  std::vector<double> t_rss, rss_kept;
  for (size_t i = 0; i < rss.size(); ++i) {
    if (rss[i] >= 0) t_rss.push_back(t[i]), rss_kept.push_back(rss[i]);
  }
  const bool gpus = !gpu.empty();
  // Drawn beside the target and renamed over it: a reader never sees half a PNG.
  // Only a regular file is replaced: never a device, a FIFO, a folder or a link (yoloctl may
  // run as root), nor the log being drawn.
  struct stat st {};
  if (::lstat(png_path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        png_path,
        ": exists and is not a regular file (a device, FIFO, folder or link); the plot "
        "replaces only a regular file"));
  }
  if (!source_path.empty()) {
    std::error_code same_ec;
    if (fs::equivalent(png_path, source_path, same_ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat(png_path, " is the memory log itself; give the plot another name"));
    }
  }
  const std::string temp = absl::StrCat(png_path, ".tmp.", ::getpid(), ".png");
  // Made here first: PLplot exits the process when it cannot open its file.
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write ", png_path, ": ", std::strerror(errno)));
  }
  ::close(fd);
  plsdev(kDevice);
  plsfnam(temp.c_str());
  plspage(0, 0, 1200, gpus ? 900 : 520, 0, 0);
  plssub(1, gpus ? 2 : 1);
  SetColours();
  plinit();
  std::string what = log.experiment_id.empty() ? log.source : log.experiment_id;
  for (char& c : what) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  }
  const std::string ram_title =
      absl::StrFormat("%s: RAM used (blue)%s; notice %.0f, warning %.0f, danger %.0f %%", what,
                      rss_kept.empty() ? "" : absl::StrCat(", RSS of ", log.rss_of, " (green)"),
                      log.ram_thresholds[0], log.ram_thresholds[1], log.ram_thresholds[2]);
  Panel(log, x_scale, x_max, log.ram_thresholds, {{t, ram}, {t_rss, rss_kept}}, {6, 7},
        "% of the RAM limit", ram_title);
  if (gpus) {
    Panel(log, x_scale, x_max, log.gpu_thresholds, {{t_gpu, gpu}}, {9}, "% of GPU memory",
          absl::StrFormat("GPU memory used (all GPUs); bands %.0f / %.0f / %.0f %%",
                          log.gpu_thresholds[0], log.gpu_thresholds[1], log.gpu_thresholds[2]));
  }
  plend();
  std::error_code ec;
  if (!fs::exists(temp, ec) || fs::file_size(temp, ec) == 0) {
    fs::remove(temp, ec);
    return absl::InternalError(absl::StrCat("PLplot wrote nothing to ", temp));
  }
  fs::rename(temp, png_path, ec);
  if (ec) {
    fs::remove(temp, ec);
    return absl::InternalError(absl::StrCat("cannot write ", png_path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace yolo
