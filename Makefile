# Portway: the two commands of the quick start are `make run` and `make test`.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps build run test test-asan unit bench format clean

all: build

deps:
	@scripts/deps.sh build

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	ninja -C $(BUILD_DIR) -j$(JOBS)

# Builds, then starts a demo origin and the gateway in front of it.
run: build
	@scripts/run-quickstart.sh $(BUILD_DIR)/bin/portway

# Builds and runs every test: unit (GoogleTest), integration (the real
# gateway against fake origins, pytest) and conformance (varnishtest).
test:
	@scripts/deps.sh test
	$(MAKE) build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

# The same tests (but the fuzz run) against a build with AddressSanitizer
# and UndefinedBehaviorSanitizer: a leak, a bad access or undefined
# behaviour anywhere fails the test that caused it. CI runs it after `test`.
ASAN_BUILD_DIR ?= build-asan
test-asan:
	@scripts/deps.sh test
	test -f $(ASAN_BUILD_DIR)/build.ninja || cmake -S . -B $(ASAN_BUILD_DIR) -G Ninja \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPORTWAY_SANITIZE=address,undefined $(CMAKE_FLAGS)
	ninja -C $(ASAN_BUILD_DIR) -j$(JOBS)
	PORTWAY_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD_DIR) --output-on-failure -j$(JOBS) -E '^fuzz\.'

unit: build
	$(BUILD_DIR)/bin/portway_unit_tests

bench:
	@scripts/deps.sh bench
	$(MAKE) build
	bench/run.sh

format:
	find core filters test/unit test/fuzz test/modules examples -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR)
