#include "server/worker/train/image_cache.h"

#include <jpeglib.h>
#include <sys/mman.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <vector>

namespace yolo {

// A region of equal slots, each an image's pixels, handed out as cv::Mat data through OpenCV's
// allocator interface: a Mat from a slot gives it back when its last reference goes, from
// whichever thread. The last slot freed after Retire() deletes the object.
class ImageSlots final : public cv::MatAllocator {
 public:
  ImageSlots(size_t count, size_t slot_bytes)
      : slot_bytes_((slot_bytes + 4095) / 4096 * 4096), count_(count) {
    void* p = mmap(nullptr, count_ * slot_bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      count_ = 0;
      return;
    }
    base_ = static_cast<uchar*>(p);
    // The first slots first, so that the pages of slots never needed are never touched.
    for (size_t i = count_; i-- > 0;) free_.push_back(i);
  }

  // `image` copied into a free slot, or an empty Mat when none is free or it does not fit.
  cv::Mat Copy(const cv::Mat& image) {
    if (image.total() * image.elemSize() > slot_bytes_) return {};
    cv::Mat out;
    out.allocator = this;
    out.create(image.rows, image.cols, image.type());
    // Later create() calls on copies of this header are not for slots; its data stays one.
    out.allocator = nullptr;
    if (out.u == nullptr || out.u->currAllocator != this) return {};  // no slot free
    image.copyTo(out);
    return out;
  }

  void Retire() {
    std::unique_lock<std::mutex> lock(mu_);
    retired_ = true;
    if (free_.size() == count_) {
      lock.unlock();
      delete this;
    }
  }

  size_t in_use() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_ - free_.size();
  }

  cv::UMatData* allocate(int dims, const int* sizes, int type, void* data, size_t* step,
                         cv::AccessFlag flags, cv::UMatUsageFlags usage) const override {
    size_t total = CV_ELEM_SIZE(type);
    for (int i = dims - 1; i >= 0; --i) {
      if (step != nullptr) step[i] = total;
      total *= static_cast<size_t>(sizes[i]);
    }
    size_t slot = count_;
    if (data == nullptr && total <= slot_bytes_) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        slot = free_.back();
        free_.pop_back();
      }
    }
    if (slot == count_) {
      return cv::Mat::getDefaultAllocator()->allocate(dims, sizes, type, data, step, flags, usage);
    }
    auto* u = new cv::UMatData(this);
    u->data = u->origdata = base_ + slot * slot_bytes_;
    u->size = total;
    return u;
  }

  bool allocate(cv::UMatData* u, cv::AccessFlag, cv::UMatUsageFlags) const override {
    return u != nullptr;
  }

  void deallocate(cv::UMatData* u) const override {
    if (u == nullptr) return;
    const size_t slot = static_cast<size_t>(u->origdata - base_) / slot_bytes_;
    delete u;
    std::unique_lock<std::mutex> lock(mu_);
    free_.push_back(slot);
    if (retired_ && free_.size() == count_) {
      lock.unlock();
      delete this;
    }
  }

 private:
  ~ImageSlots() override {
    if (base_ != nullptr) munmap(base_, count_ * slot_bytes_);
  }

  const size_t slot_bytes_;
  size_t count_;
  uchar* base_ = nullptr;
  mutable std::mutex mu_;
  mutable std::vector<size_t> free_;  // the next one at the back
  bool retired_ = false;
};

namespace {

int64_t MatBytes(const cv::Mat& m) { return static_cast<int64_t>(m.total() * m.elemSize()); }

bool ReadWhole(const std::string& path, std::vector<uchar>* out) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  const std::streamoff size = in.tellg();
  if (size <= 0) return false;
  out->resize(static_cast<size_t>(size));
  in.seekg(0);
  return static_cast<bool>(in.read(reinterpret_cast<char*>(out->data()), size));
}

bool IsJpeg(const std::vector<uchar>& b) {
  return b.size() > 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
}

// The EXIF orientation (1-8) in an APP1 marker's data; 1 when there is none.
int ExifOrientation(const uchar* d, size_t n) {
  if (n < 14 || std::memcmp(d, "Exif\0\0", 6) != 0) return 1;
  const uchar* t = d + 6;  // the TIFF header
  const size_t tn = n - 6;
  const bool le = t[0] == 'I' && t[1] == 'I';
  if (!le && !(t[0] == 'M' && t[1] == 'M')) return 1;
  auto u16 = [&](size_t at) -> uint32_t {
    return le ? t[at] | (t[at + 1] << 8) : (t[at] << 8) | t[at + 1];
  };
  auto u32 = [&](size_t at) -> uint32_t {
    return le ? u16(at) | (u16(at + 2) << 16) : (u16(at) << 16) | u16(at + 2);
  };
  const size_t ifd = u32(4);
  if (ifd + 2 > tn) return 1;
  const uint32_t entries = u16(ifd);
  for (uint32_t i = 0; i < entries; ++i) {
    const size_t e = ifd + 2 + 12 * static_cast<size_t>(i);
    if (e + 12 > tn) return 1;
    if (u16(e) == 0x0112) {
      const uint32_t v = u16(e + 8);
      return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
    }
  }
  return 1;
}

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
};

void OnJpegError(j_common_ptr info) {
  std::longjmp(reinterpret_cast<JpegError*>(info->err)->jump, 1);
}
void OnJpegMessage(j_common_ptr) {}  // warnings (a truncated file...) are not printed

// libjpeg(-turbo) straight into BGR at `num`/8 of the size (num 0: the smallest scale that keeps
// the long side >= imgsz). Only C objects live between setjmp and a longjmp here; the output
// goes to `*out`, allocated through `alloc` so that nothing with a destructor is skipped.
// Returns false on any error or when the image has an EXIF orientation other than 1 (OpenCV
// decodes those, applying it).
bool DecodeJpeg(const std::vector<uchar>& bytes, int imgsz, cv::Mat* out,
                cv::Size* full_size = nullptr) {
  jpeg_decompress_struct info;
  JpegError error;
  info.err = jpeg_std_error(&error.mgr);
  error.mgr.error_exit = OnJpegError;
  error.mgr.output_message = OnJpegMessage;
  if (setjmp(error.jump) != 0) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_save_markers(&info, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&info, TRUE);
  for (jpeg_saved_marker_ptr m = info.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && ExifOrientation(m->data, m->data_length) != 1) {
      jpeg_destroy_decompress(&info);
      return false;
    }
  }
  if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  const int long_side = static_cast<int>(std::max(info.image_width, info.image_height));
  if (full_size != nullptr) {
    *full_size = cv::Size(static_cast<int>(info.image_width), static_cast<int>(info.image_height));
  }
  info.scale_num = imgsz < 0 ? 1 : static_cast<unsigned>(8 / DecodeScale(long_side, imgsz));
  info.scale_denom = 8;
  info.out_color_space = JCS_EXT_BGR;
  // The accurate IDCT, as OpenCV uses: JDCT_IFAST decodes about a fifth faster but darkens
  // images by more than half a level on average (and up to 15 levels at edges).
  info.dct_method = JDCT_ISLOW;
  jpeg_start_decompress(&info);
  out->create(static_cast<int>(info.output_height), static_cast<int>(info.output_width), CV_8UC3);
  // Every remaining row offered at once: libjpeg then writes whole row groups straight into the
  // image instead of one row at a time through its own buffer.
  std::vector<JSAMPROW> rows(info.output_height);
  for (JDIMENSION y = 0; y < info.output_height; ++y)
    rows[y] = out->ptr<uchar>(static_cast<int>(y));
  while (info.output_scanline < info.output_height) {
    jpeg_read_scanlines(&info, rows.data() + info.output_scanline,
                        info.output_height - info.output_scanline);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return true;
}

}  // namespace

int DecodeScale(int long_side, int imgsz) {
  if (long_side <= 0 || imgsz <= 0) return 1;
  for (int scale : {8, 4, 2}) {
    if ((long_side + scale - 1) / scale >= imgsz) return scale;  // libjpeg rounds up
  }
  return 1;
}

cv::Mat DecodeForSize(const std::string& path, int long_side, int imgsz) {
  std::vector<uchar> bytes;
  if (!ReadWhole(path, &bytes)) return {};
  if (IsJpeg(bytes)) {
    cv::Mat image;
    // The header's own size decides the scale (`long_side` 0 asks for a full decode).
    if (DecodeJpeg(bytes, long_side > 0 ? imgsz : 0, &image)) return image;
    const int scale = DecodeScale(long_side, imgsz);
    const int flag = scale == 8   ? cv::IMREAD_REDUCED_COLOR_8
                     : scale == 4 ? cv::IMREAD_REDUCED_COLOR_4
                     : scale == 2 ? cv::IMREAD_REDUCED_COLOR_2
                                  : cv::IMREAD_COLOR;
    return cv::imdecode(bytes, flag);
  }
  return cv::imdecode(bytes, cv::IMREAD_COLOR);
}

bool CheckImage(const std::string& path, cv::Size* size) {
  std::vector<uchar> bytes;
  if (!ReadWhole(path, &bytes)) return false;
  cv::Mat small;
  if (IsJpeg(bytes) && DecodeJpeg(bytes, /*imgsz=*/-1, &small, size)) return true;
  const cv::Mat image = cv::imdecode(bytes, cv::IMREAD_COLOR);
  if (image.empty()) return false;
  *size = image.size();
  return true;
}

RecentImages::RecentImages(size_t capacity, size_t slot_bytes) : capacity_(capacity) {
  // Images evicted while a mosaic still draws on them keep their slots a little longer.
  if (capacity > 0 && slot_bytes > 0)
    slots_ = new ImageSlots(capacity + capacity / 4 + 32, slot_bytes);
}

RecentImages::~RecentImages() {
  Clear();
  if (slots_ != nullptr) slots_->Retire();
}

cv::Mat RecentImages::Find(int index) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = where_.find(index);
  if (it == where_.end()) return {};
  return it->second->second;
}

cv::Mat RecentImages::Insert(int index, const cv::Mat& image) {
  if (capacity_ == 0 || image.empty()) return image;
  cv::Mat kept = slots_ != nullptr ? slots_->Copy(image) : cv::Mat();
  if (kept.empty()) kept = image;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = where_.find(index);
  if (it != where_.end()) return it->second->second;  // another thread loaded it meanwhile
  order_.emplace_front(index, kept);
  where_[index] = order_.begin();
  bytes_ += MatBytes(kept);
  while (order_.size() > capacity_) {
    bytes_ -= MatBytes(order_.back().second);
    where_.erase(order_.back().first);
    order_.pop_back();
  }
  return kept;
}

void RecentImages::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  order_.clear();
  where_.clear();
  bytes_ = 0;
}

size_t RecentImages::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return order_.size();
}

int64_t RecentImages::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t RecentImages::slotted() const { return slots_ != nullptr ? slots_->in_use() : 0; }

}  // namespace yolo
