// Decoding sized for training, and the buffer of recently loaded images that mosaic draws its
// partners from. LibTorch-free.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <opencv2/core.hpp>
#include <string>
#include <unordered_map>

namespace yolo {

// The DCT scale (1, 2, 4 or 8) at which a JPEG whose long side is `long_side` may be decoded and
// still have a long side of at least `imgsz`: 640 px for imgsz 320 decodes at 1/2, a 4000 px
// photo at 1/8 for 320 and 1/4 for 640. 1 when `long_side` is unknown (0).
int DecodeScale(int long_side, int imgsz);

// Decodes an image file as BGR. A JPEG goes straight through libjpeg(-turbo) into BGR (about
// half the time of OpenCV's decoder, which converts and copies), at DecodeScale(long_side,
// imgsz) when `long_side` > 0: the scaled IDCT averages each block instead of computing every
// pixel, most of the work for images much larger than imgsz; the result is resized to imgsz
// afterwards as a full decode would be. JPEGs with an EXIF orientation, CMYK ones and damaged
// ones go through OpenCV, as do other formats (at full size). Empty when the file cannot be
// read or decoded.
cv::Mat DecodeForSize(const std::string& path, int long_side, int imgsz);

// Whether `path` decodes as an image, and its size as training sees it (EXIF orientation
// applied). A JPEG's whole compressed stream is decoded, at 1/8 scale, which finds the same
// damage as a full decode in a fraction of the time.
bool CheckImage(const std::string& path, cv::Size* size);

class ImageSlots;

// The images loaded most recently, already resized, the first loaded first out: Ultralytics'
// mosaic buffer, which lets a mosaic take its three partners from memory instead of decoding
// them again, and spares decoding an image while it is in the buffer. The epoch plan
// (EpochPlanner) counts on that order; an image used again does not stay longer. Its size is
// fixed by the capacity whatever the dataset's size. Thread-safe.
//
// With `slot_bytes` > 0 (the largest image it will hold: imgsz x imgsz x 3), each image is
// copied into a fixed slot of a region of its own. The buffer's images live for hundreds of
// loads while everything else the loader allocates lives for one: kept in malloc's heap, they
// pin the holes left between them and the heap grows by tens of MB of free but resident memory.
class RecentImages {
 public:
  explicit RecentImages(size_t capacity, size_t slot_bytes = 0);
  ~RecentImages();
  RecentImages(const RecentImages&) = delete;
  RecentImages& operator=(const RecentImages&) = delete;

  // The image, or an empty one.
  cv::Mat Find(int index);
  // Keeps `image` (unless it holds `index` already) and returns the buffer's copy of it: the
  // one in a slot, or `image` itself where it has no slot for it.
  cv::Mat Insert(int index, const cv::Mat& image);
  void Clear();
  size_t capacity() const { return capacity_; }
  size_t size() const;
  int64_t bytes() const;
  // Slots in use: images held, and evicted ones still referenced elsewhere.
  size_t slotted() const;

 private:
  const size_t capacity_;
  ImageSlots* slots_ = nullptr;  // outlives us while images from it are in use elsewhere
  mutable std::mutex mu_;
  std::list<std::pair<int, cv::Mat>> order_;  // the latest inserted first
  std::unordered_map<int, std::list<std::pair<int, cv::Mat>>::iterator> where_;
  int64_t bytes_ = 0;
};

}  // namespace yolo
