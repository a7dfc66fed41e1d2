// The codecs upstream connections speak, made per connection by a pool.
// This is the one place that knows the concrete codec classes: pools and
// the router see only http::ClientConnection.
//
// Thread safety: a factory is called on the pool's worker; what it captures
// is immutable.
//
//   ConnPoolImpl pool(dispatcher, host, config, http::Protocol::kHttp11,
//                     Http1CodecFactory(kBufferLimit), 1, kBufferLimit);
#pragma once

#include <cstddef>

#include "core/upstream/cluster.h"
#include "core/upstream/conn_pool.h"

namespace portway::upstream {

ClientCodecFactory Http1CodecFactory(size_t buffer_limit);

// The codec for `config.protocol`, and how many streams one of its
// connections is expected to take before its peer says.
struct CodecChoice {
  ClientCodecFactory factory;
  uint32_t expected_capacity = 1;
};
CodecChoice CodecFor(event::Dispatcher& dispatcher, const ClusterConfig& config,
                     size_t buffer_limit);

ClientCodecFactory Http2CodecFactory(event::Dispatcher& dispatcher, const ClusterConfig& config,
                                     size_t buffer_limit);

}  // namespace portway::upstream
