// The filters built into the portway binary. Each is written against the
// public SDK only and registers itself like a module would.
#pragma once

namespace portway::filters {

// Registers every built-in filter factory in the global registry. Safe to
// call more than once.
void RegisterBuiltinFilters();

}  // namespace portway::filters
