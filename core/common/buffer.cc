#include "portway/buffer.h"

#include <algorithm>

namespace portway {
namespace {

// Buffers never cross threads (one stream, one worker), so freed read-size
// blocks go back to a per-thread list instead of malloc: at most
// kPoolSlices * kSliceSize bytes stay reserved per thread.
constexpr size_t kPoolSlices = 32;

struct SlicePool {
  ~SlicePool() {
    for (char* p : free) delete[] p;
  }
  std::vector<char*> free;
};

thread_local SlicePool slice_pool;

}  // namespace

void Buffer::Slice::ReleaseData() {
  if (capacity == kSliceSize && slice_pool.free.size() < kPoolSlices) {
    slice_pool.free.push_back(data);
  } else {
    delete[] data;
  }
  data = nullptr;
}

Buffer::Slice Buffer::MakeSlice(size_t capacity) {
  Slice s;
  if (capacity == kSliceSize && !slice_pool.free.empty()) {
    s.data = slice_pool.free.back();
    slice_pool.free.pop_back();
  } else {
    s.data = new char[capacity];
  }
  s.capacity = static_cast<uint32_t>(capacity);
  return s;
}

void Buffer::PopFront() {
  slices_[head_].Release();
  ++head_;
  if (head_ == slices_.size()) {
    slices_.clear();
    head_ = 0;
  } else if (head_ >= 16 && head_ * 2 >= slices_.size()) {
    slices_.erase(slices_.begin(), slices_.begin() + static_cast<ptrdiff_t>(head_));
    head_ = 0;
  }
}

void Buffer::PushFront(Slice slice) {
  if (head_ > 0) {
    slices_[--head_] = std::move(slice);
  } else {
    slices_.insert(slices_.begin(), std::move(slice));
  }
}

void Buffer::Add(std::string_view data) {
  while (!data.empty()) {
    if (NoSlices() || slices_.back().end == slices_.back().capacity) {
      slices_.push_back(MakeSlice(std::max(data.size(), kSliceSize)));
    }
    Slice& s = slices_.back();
    size_t n = std::min<size_t>(data.size(), s.capacity - s.end);
    std::memcpy(s.data + s.end, data.data(), n);
    s.end += static_cast<uint32_t>(n);
    length_ += n;
    data.remove_prefix(n);
  }
}

void Buffer::Move(Buffer& other) {
  if (other.NoSlices()) return;
  if (NoSlices()) {
    // Trade vectors rather than steal: `other` keeps this one's (empty)
    // capacity, so a scratch buffer moved into a connection's queue again
    // and again does not allocate a slice vector each time.
    slices_.swap(other.slices_);
    head_ = other.head_;
  } else {
    for (size_t i = other.head_; i < other.slices_.size(); ++i) {
      slices_.push_back(std::move(other.slices_[i]));
    }
  }
  length_ += other.length_;
  other.slices_.clear();
  other.head_ = 0;
  other.length_ = 0;
}

void Buffer::Move(Buffer& other, size_t n) {
  if (n >= other.length_) {
    Move(other);  // whole slices, and perhaps a vector traded instead of grown
    return;
  }
  while (n > 0) {
    Slice& front = other.Front();
    size_t size = front.size();
    if (size <= n) {
      length_ += size;
      other.length_ -= size;
      n -= size;
      slices_.push_back(std::move(front));
      other.PopFront();
    } else {
      Add(std::string_view(front.data + front.start, n));
      other.Drain(n);
      n = 0;
    }
  }
}

void Buffer::Drain(size_t n) {
  n = std::min(n, length_);
  length_ -= n;
  while (n > 0) {
    Slice& front = Front();
    size_t size = front.size();
    if (size <= n) {
      n -= size;
      PopFront();
    } else {
      front.start += static_cast<uint32_t>(n);
      n = 0;
    }
  }
  // Drop a trailing empty slice left behind by Reserve so idle connections
  // hold no memory.
  if (length_ == 0) {
    slices_.clear();
    head_ = 0;
  }
}

std::string Buffer::ToString() const {
  std::string out;
  out.reserve(length_);
  ForEachSlice([&out](std::string_view s) { out.append(s); });
  return out;
}

std::string_view Buffer::Linearize(size_t n) {
  n = std::min(n, length_);
  if (n == 0) return {};
  // Skip empty leading slices (a Reserve that was never committed).
  while (!NoSlices() && Front().size() == 0) PopFront();
  Slice& front = Front();
  if (front.size() >= n) return std::string_view(front.data + front.start, n);
  Slice merged = MakeSlice(std::max(n, kSliceSize));
  size_t copied = 0;
  while (copied < n) {
    Slice& s = Front();
    size_t take = std::min(s.size(), n - copied);
    std::memcpy(merged.data + copied, s.data + s.start, take);
    copied += take;
    if (take == s.size()) {
      PopFront();
    } else {
      s.start += static_cast<uint32_t>(take);
    }
  }
  merged.end = static_cast<uint32_t>(n);
  PushFront(std::move(merged));
  return std::string_view(Front().data, n);
}

std::string_view Buffer::FrontSlice() const {
  for (size_t i = head_; i < slices_.size(); ++i) {
    const Slice& s = slices_[i];
    if (s.size() > 0) return std::string_view(s.data + s.start, s.size());
  }
  return {};
}

char* Buffer::Reserve(size_t min, size_t* available) {
  if (NoSlices() || slices_.back().capacity - slices_.back().end < min) {
    slices_.push_back(MakeSlice(std::max(min, kSliceSize)));
  }
  Slice& s = slices_.back();
  *available = s.capacity - s.end;
  return s.data + s.end;
}

void Buffer::Commit(size_t n) {
  if (n == 0) {
    if (!NoSlices() && slices_.back().size() == 0) {
      slices_.pop_back();
      if (head_ == slices_.size()) {
        slices_.clear();
        head_ = 0;
      }
    }
    return;
  }
  slices_.back().end += static_cast<uint32_t>(n);
  length_ += n;
}

}  // namespace portway
