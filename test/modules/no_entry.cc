// A shared object that is not a Portway module: no PORTWAY_MODULE entry
// points, just an unrelated exported function.
extern "C" __attribute__((visibility("default"))) int portway_test_not_a_module() { return 42; }
