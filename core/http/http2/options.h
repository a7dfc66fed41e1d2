// HTTP/2 settings, abuse limits and counters: plain values that configs
// (listeners, clusters) carry, apart from the codec so that including them
// does not bring in nghttp2.
//
// Thread safety: immutable once a config is built; the counters are
// relaxed atomics.
#pragma once

#include <chrono>
#include <cstdint>

#include "portway/stats.h"

namespace portway::http::http2 {

struct Options {
  // SETTINGS_MAX_CONCURRENT_STREAMS we advertise (server), and the cap on
  // the peer's value for the streams we open (client).
  uint32_t max_concurrent_streams = 100;
  // SETTINGS_INITIAL_WINDOW_SIZE: how much of one stream's body the peer
  // may send before we acknowledge it. Also the most a read-disabled
  // stream holds in memory.
  uint32_t initial_stream_window_bytes = 65535;
  // The connection's receive window (raised from the protocol's 65535 with
  // a WINDOW_UPDATE on stream 0 right after SETTINGS).
  uint32_t initial_connection_window_bytes = 1048576;
  // SETTINGS_MAX_HEADER_LIST_SIZE, and enforced: a header block over it
  // (name + value + 32 per field, RFC 9113 6.5.2) resets its stream.
  uint32_t max_header_list_bytes = 65536;
  // Unsent bytes a stream may queue before its high watermark.
  uint32_t stream_buffer_limit = 65536;

  // Abuse limits. Each one, exceeded, ends the connection with GOAWAY
  // ENHANCE_YOUR_CALM (counted in Http2Stats::flood).
  // RST_STREAM received (server): a token bucket of `burst` tokens
  // refilled at `rate_per_second` (rapid reset, CVE-2023-44487).
  uint32_t stream_reset_burst = 1000;
  uint32_t stream_reset_rate_per_second = 33;
  // PING and SETTINGS acknowledgements queued and not yet sent (a peer
  // that asks and never reads).
  uint32_t max_outbound_control_frames = 1000;
  // Entries in one SETTINGS frame.
  uint32_t max_settings_entries = 32;
  // Consecutive frames that carry nothing: DATA without payload and
  // without END_STREAM, HEADERS with an empty block.
  uint32_t max_empty_data_frames = 100;
  // CONTINUATION frames after one HEADERS (nghttp2's own limit, here set).
  uint32_t max_continuations = 8;

  // Server drain: the final GOAWAY (carrying the last stream id) follows
  // the shutdown notice after this delay, or at a second StartDrain().
  std::chrono::milliseconds drain_goaway_delay{1000};

  // Server side: what streams encode is written at the end of the loop
  // turn (a zero timer) rather than at once, so the responses (head and
  // body) that finish in one turn share a write. Listeners turn it on; off,
  // output is written before Encode* returns (what unit tests read).
  bool coalesce_writes = false;

  bool operator==(const Options&) const = default;
};

// Counters, each optional (null: not counted). Pointers into the SDK's
// registry (portway::GetCounter) or a test's fakes.
struct Http2Stats {
  Counter* rx_reset = nullptr;         // RST_STREAM received
  Counter* tx_reset = nullptr;         // RST_STREAM sent
  Counter* goaway_sent = nullptr;      // GOAWAY sent (notice and final both count)
  Counter* goaway_received = nullptr;  // GOAWAY received
  Counter* protocol_errors = nullptr;  // malformed messages, reset as stream errors
  Counter* flood = nullptr;            // connections ended by an abuse limit
  Counter* header_overflow = nullptr;  // header blocks over max_header_list_bytes
  Counter* streams_total = nullptr;    // streams started (server: requests handed up)
};

}  // namespace portway::http::http2
