#include "core/upstream/codec_factory.h"

#include "core/http/http1/codec.h"

namespace portway::upstream {

ClientCodecFactory Http1CodecFactory(size_t buffer_limit) {
  return [buffer_limit](event::Connection& connection, http::ClientConnectionCallbacks& callbacks)
             -> std::unique_ptr<http::ClientConnection> {
    return std::make_unique<http::http1::ClientConnectionImpl>(connection, callbacks,
                                                               http1::Limits{}, buffer_limit);
  };
}

CodecChoice CodecFor(const ClusterConfig& config, size_t buffer_limit) {
  switch (config.protocol) {
    case http::Protocol::kHttp2:
      // Until the HTTP/2 codec lands, config validation refuses protocol: http2.
    case http::Protocol::kHttp10:
    case http::Protocol::kHttp11:
      break;
  }
  return {Http1CodecFactory(buffer_limit), 1};
}

}  // namespace portway::upstream
