// A per-thread cache of small blocks for objects made and freed with every
// stream (filters, the filter manager).
//
// With many streams in flight that churn outruns malloc's own per-thread
// cache (a handful of blocks per size) and falls into its slow paths. Each
// thread keeps up to 64 freed blocks of each size class of 32, 64, ...,
// 1024 bytes and 16 of each class up to 2048 (at most ~1.9 MiB per thread)
// and hands them out again; beyond that, and for larger sizes, blocks go to
// and come from malloc. A block
// freed on another thread (unusual: streams stay on their worker) joins
// that thread's cache, which is fine for plain memory. At thread exit the
// cache is emptied. Under AddressSanitizer there is no cache: every block
// comes from and goes back to malloc, so a use after free is reported.
#pragma once

// The functions are declared, with an allocator over them, in the SDK.
#include "portway/block_allocator.h"

namespace portway {

// Under AddressSanitizer every block goes to and from malloc, so that a view
// or pointer kept past its object's life (a header map's fields are views)
// is reported as a use after free instead of reading a recycled block.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSmallBlocksBypassed = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSmallBlocksBypassed = true;
#else
inline constexpr bool kSmallBlocksBypassed = false;
#endif
#else
inline constexpr bool kSmallBlocksBypassed = false;
#endif

}  // namespace portway
