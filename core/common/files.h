// Whole-file reads and crash-safe replacement, for the small state files
// the gateway and portway-cp keep (persisted config, admin address, state
// store, certificates).
#pragma once

#include <string>
#include <string_view>

namespace portway {

// The file's bytes; false if it cannot be opened or read.
bool ReadFile(const std::string& path, std::string* out);

// Writes `bytes` to PATH.tmp, then renames it over `path`: readers see
// the old file or the new one, never half of one. False on any failure
// (the old file stays). `owner_only`: mode 0600 (the file may hold private
// keys), else 0644.
bool WriteFileAtomically(const std::string& path, std::string_view bytes, bool owner_only = false);

}  // namespace portway
