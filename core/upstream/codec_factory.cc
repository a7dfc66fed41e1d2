#include "core/upstream/codec_factory.h"

#include "core/http/http1/codec.h"
#include "core/http/http2/codec.h"

namespace portway::upstream {

ClientCodecFactory Http1CodecFactory(size_t buffer_limit) {
  return [buffer_limit](event::Connection& connection, http::ClientConnectionCallbacks& callbacks)
             -> std::unique_ptr<http::ClientConnection> {
    return std::make_unique<http::http1::ClientConnectionImpl>(connection, callbacks,
                                                               http1::Limits{}, buffer_limit);
  };
}

ClientCodecFactory Http2CodecFactory(event::Dispatcher& dispatcher, const ClusterConfig& config,
                                     size_t buffer_limit) {
  http::http2::Options options = config.http2;
  options.stream_buffer_limit = buffer_limit;
  // The counters live as long as the process; the config may not.
  http::http2::Http2Stats stats = config.http2_stats;
  return [&dispatcher, options, stats](event::Connection& connection,
                                       http::ClientConnectionCallbacks& callbacks) mutable
         -> std::unique_ptr<http::ClientConnection> {
    return std::make_unique<http::http2::ClientConnectionImpl>(dispatcher, connection, callbacks,
                                                               options, &stats);
  };
}

CodecChoice CodecFor(event::Dispatcher& dispatcher, const ClusterConfig& config,
                     size_t buffer_limit) {
  if (config.auto_protocol) {
    // Capacity 0: unknown until a connection says what it speaks; the pool
    // opens one at a time until then and learns from each.
    return {[http1 = Http1CodecFactory(buffer_limit),
             http2 = Http2CodecFactory(dispatcher, config, buffer_limit)](
                event::Connection& connection, http::ClientConnectionCallbacks& callbacks) mutable
            -> std::unique_ptr<http::ClientConnection> {
              const event::TlsInfo* tls = connection.Tls();
              if (tls != nullptr && tls->alpn == "h2") return http2(connection, callbacks);
              return http1(connection, callbacks);
            },
            0};
  }
  switch (config.protocol) {
    case http::Protocol::kHttp2:
      return {Http2CodecFactory(dispatcher, config, buffer_limit),
              config.http2.max_concurrent_streams};
    case http::Protocol::kHttp10:
    case http::Protocol::kHttp11:
      break;
  }
  return {Http1CodecFactory(buffer_limit), 1};
}

}  // namespace portway::upstream
