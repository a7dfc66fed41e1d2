// Buffer: a chain of byte slices that moves between connections, codecs and
// filters without copying.
//
// Thread safety: none; a Buffer belongs to one stream on one worker.
//
//   Buffer b;
//   b.Add("hello ");
//   b.Add(std::string_view("world"));
//   other.Move(b);            // slices change owner, bytes are not copied
//   std::string s = other.ToString();
//
// Memory: slices are freed as soon as they are drained, so an idle
// connection holds no buffer memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "portway/block_allocator.h"

namespace portway {

class Buffer {
 public:
  // Default capacity of a slice made for reading from a socket.
  static constexpr size_t kSliceSize = 16384;

  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&&) = default;
  Buffer& operator=(Buffer&&) = default;

  size_t length() const { return length_; }
  bool empty() const { return length_ == 0; }

  // Copies bytes onto the end.
  void Add(std::string_view data);
  // Moves every slice of `other` onto the end; `other` is left empty.
  void Move(Buffer& other);
  // Moves the first `n` bytes of `other` onto the end (splits one slice at
  // most, by copying that slice's part).
  void Move(Buffer& other, size_t n);
  // Drops the first `n` bytes.
  void Drain(size_t n);
  void Clear() { Drain(length_); }
  // Copies everything into a string (tests, small messages).
  std::string ToString() const;
  // Makes the first `n` bytes contiguous and returns a view of them
  // (n <= length()). Copies only when they span slices.
  std::string_view Linearize(size_t n);
  // The first slice's bytes; empty when the buffer is empty.
  std::string_view FrontSlice() const;

  // Reading from a socket without a copy: Reserve gives writable space at
  // the end (at least `min` bytes), Commit says how much was written.
  char* Reserve(size_t min, size_t* available);
  void Commit(size_t n);

  // Iterates the slices in order: f(std::string_view).
  template <typename F>
  void ForEachSlice(F&& f) const {
    for (size_t i = head_; i < slices_.size(); ++i) {
      const Slice& s = slices_[i];
      if (s.end > s.start) f(std::string_view(s.data + s.start, s.end - s.start));
    }
  }
  size_t SliceCount() const { return slices_.size() - head_; }

 private:
  // A block of bytes; blocks of kSliceSize are recycled through a small
  // per-thread pool (one is taken and returned for nearly every read).
  struct Slice {
    Slice() = default;
    Slice(Slice&& other) noexcept { *this = std::move(other); }
    Slice& operator=(Slice&& other) noexcept {
      if (this != &other) {
        Release();
        data = other.data;
        start = other.start;
        end = other.end;
        capacity = other.capacity;
        other.data = nullptr;
      }
      return *this;
    }
    ~Slice() { Release(); }
    void Release() {
      if (data != nullptr) ReleaseData();
    }
    void ReleaseData();
    size_t size() const { return end - start; }

    char* data = nullptr;
    uint32_t start = 0;
    uint32_t end = 0;
    uint32_t capacity = 0;
  };
  static Slice MakeSlice(size_t capacity);
  bool NoSlices() const { return head_ == slices_.size(); }
  Slice& Front() { return slices_[head_]; }
  void PopFront();
  void PushFront(Slice slice);

  // A vector with a moving head rather than a std::deque: an empty vector
  // allocates nothing, where libstdc++'s deque allocates ~600 bytes even
  // when empty, and every idle connection holds two buffers.
  std::vector<Slice, BlockAllocator<Slice>> slices_;
  size_t head_ = 0;
  size_t length_ = 0;
};

using BufferPtr = std::unique_ptr<Buffer>;

}  // namespace portway
