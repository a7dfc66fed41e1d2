// The Redis tier against a real redis-server, started as a child process per
// test on its own unix socket (or free TCP port) and killed afterwards.
// Skipped, with the reason printed, when /usr/bin/redis-server is missing
// (scripts/deps.sh test installs it).
//
// Deadlines and reconnects are the tier's real timers here; the tests wait
// on condition variables (or poll Connected()) with generous bounds, and
// assert bounds only where the behaviour promises one.
#include "filters/cache/redis_tier.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "filters/cache/codec.h"

namespace portway::cache {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr char kRedisServer[] = "/usr/bin/redis-server";

// One redis-server child. Unix socket by default; TCP on a free port with
// `tcp`.
class RedisProcess {
 public:
  RedisProcess(bool tcp, std::vector<std::string> extra) : tcp_(tcp), extra_(std::move(extra)) {
    static std::atomic<int> counter{0};
    socket_path_ = "/tmp/portway-redis-test-" + std::to_string(getpid()) + "-" +
                   std::to_string(counter++) + ".sock";
    if (tcp_) port_ = FreePort();
  }
  ~RedisProcess() {
    Kill();
    unlink(socket_path_.c_str());
  }

  std::string Address() const {
    return tcp_ ? "127.0.0.1:" + std::to_string(port_) : "unix:" + socket_path_;
  }

  // Starts the server and waits until it answers PING.
  ::testing::AssertionResult Start() {
    std::vector<std::string> args = {kRedisServer, "--save", "",    "--appendonly",
                                     "no",         "--dir",  "/tmp"};
    if (tcp_) {
      args.insert(args.end(), {"--port", std::to_string(port_), "--bind", "127.0.0.1"});
    } else {
      args.insert(args.end(), {"--port", "0", "--unixsocket", socket_path_});
    }
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      // Not the test's sockets: a server must not hold a tier's connection.
      close_range(3, ~0u, 0);
      execv(kRedisServer, argv.data());
      _exit(127);
    }
    if (pid_ < 0) return ::testing::AssertionFailure() << "fork: " << strerror(errno);
    const Clock::time_point until = Clock::now() + seconds(10);
    while (Clock::now() < until) {
      redisContext* c = Client();
      if (c != nullptr) {
        redisFree(c);
        return ::testing::AssertionSuccess();
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    return ::testing::AssertionFailure() << "redis-server did not come up at " << Address();
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void Pause() { kill(pid_, SIGSTOP); }
  void Resume() { kill(pid_, SIGCONT); }

  // A blocking client of the server (authenticated with `password`), or
  // null when the server does not answer.
  redisContext* Client(const std::string& password = "") const {
    const timeval timeout{1, 0};
    redisContext* c = tcp_ ? redisConnectWithTimeout("127.0.0.1", port_, timeout)
                           : redisConnectUnixWithTimeout(socket_path_.c_str(), timeout);
    if (c == nullptr || c->err != 0) {
      if (c != nullptr) redisFree(c);
      return nullptr;
    }
    if (!password.empty()) Command(c, {"AUTH", password});
    // Any answer will do: a server with requirepass answers NOAUTH.
    if (Command(c, {"PING"}) == "(no reply)") {
      redisFree(c);
      return nullptr;
    }
    return c;
  }

  // Runs a command; returns the string of its reply (status, string or
  // integer), or "(nil)" / "(error) ..." .
  static std::string Command(redisContext* c, std::vector<std::string> args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisReply* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (r == nullptr) return "(no reply)";
    std::string out;
    switch (r->type) {
      case REDIS_REPLY_NIL:
        out = "(nil)";
        break;
      case REDIS_REPLY_INTEGER:
        out = std::to_string(r->integer);
        break;
      case REDIS_REPLY_ERROR:
        out = "(error) " + std::string(r->str, r->len);
        break;
      default:
        out = std::string(r->str, r->len);
    }
    freeReplyObject(r);
    return out;
  }

 private:
  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
  }

  bool tcp_;
  std::vector<std::string> extra_;
  std::string socket_path_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// Collects Get answers from the I/O thread; each callback records which
// call it answers, so a second answer to one call shows up.
class Answers {
 public:
  RedisTier::GetCallback For(int call) {
    return [this, call, caller = std::this_thread::get_id()](RedisGetResult result) {
      std::lock_guard lock(mu_);
      got_.push_back({call, std::move(result), std::this_thread::get_id() == caller});
      cv_.notify_all();
    };
  }
  bool WaitFor(size_t n, milliseconds limit = milliseconds(5000)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return got_.size() >= n; });
  }
  struct Answer {
    int call;
    RedisGetResult result;
    bool on_caller_thread;
  };
  std::vector<Answer> Got() {
    std::lock_guard lock(mu_);
    return got_;
  }
  size_t Count() {
    std::lock_guard lock(mu_);
    return got_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Answer> got_;
};

template <typename Pred>
bool WaitUntil(Pred pred, milliseconds limit = milliseconds(5000)) {
  const Clock::time_point until = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

// Options whose deadlines only a stuck server misses, even on a loaded
// machine under a sanitizer: tests of anything but deadlines use these.
RedisTierOptions Relaxed() {
  RedisTierOptions options;
  options.command_timeout = milliseconds(5000);
  options.connect_timeout = milliseconds(2000);
  return options;
}

class CacheRedisTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kRedisServer, X_OK) != 0) {
      GTEST_SKIP() << kRedisServer << " is missing (install redis-server: scripts/deps.sh test)";
    }
  }

  // Starts a server and a connected tier on it.
  RedisTierPtr StartWith(RedisTierOptions options, bool tcp = false,
                         std::vector<std::string> server_args = {}) {
    server_ = std::make_unique<RedisProcess>(tcp, std::move(server_args));
    EXPECT_TRUE(server_->Start());
    options.address = server_->Address();
    absl::StatusOr<RedisTierPtr> tier = RedisTier::Create(std::move(options));
    EXPECT_TRUE(tier.ok()) << tier.status();
    if (!tier.ok()) return nullptr;
    EXPECT_TRUE(WaitUntil([&] { return (*tier)->Connected(); })) << "tier never connected";
    return *std::move(tier);
  }

  std::unique_ptr<RedisProcess> server_;
};

TEST_F(CacheRedisTest, SetThenGetRoundTripsLargeBinaryValue) {
  RedisTierPtr tier = StartWith(Relaxed());
  ASSERT_NE(tier, nullptr);
  StoredResponse response;
  response.status = 200;
  response.headers = {{"content-type", "application/octet-stream"}};
  response.body.resize(2 << 20);
  std::mt19937 rng(7);
  for (char& c : response.body) c = static_cast<char>(rng());
  const std::string wire = EncodeStoredResponse(response);

  tier->Set("big", wire, seconds(60));
  Answers answers;
  tier->Get("big", answers.For(0));
  ASSERT_TRUE(answers.WaitFor(1));
  const auto got = answers.Got();
  ASSERT_EQ(got[0].result.status, RedisGetResult::kHit);
  EXPECT_FALSE(got[0].on_caller_thread);
  ASSERT_EQ(got[0].result.value, wire);
  absl::StatusOr<StoredResponse> back = DecodeStoredResponse(got[0].result.value);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->body, response.body);

  redisContext* c = server_->Client();
  ASSERT_NE(c, nullptr);
  const int ttl = std::stoi(RedisProcess::Command(c, {"TTL", "portway:cache:big"}));
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 60);
  redisFree(c);
  const RedisTierStats stats = tier->Stats();
  EXPECT_EQ(stats.sets, 1u);
  EXPECT_EQ(stats.gets, 1u);
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_TRUE(stats.connected);
}

TEST_F(CacheRedisTest, AbsentKeyIsAMiss) {
  RedisTierPtr tier = StartWith(Relaxed());
  ASSERT_NE(tier, nullptr);
  Answers answers;
  tier->Get("absent", answers.For(0));
  ASSERT_TRUE(answers.WaitFor(1));
  EXPECT_EQ(answers.Got()[0].result.status, RedisGetResult::kMiss);
  EXPECT_EQ(tier->Stats().misses, 1u);
}

TEST_F(CacheRedisTest, DelRemovesTheKey) {
  RedisTierPtr tier = StartWith(Relaxed());
  ASSERT_NE(tier, nullptr);
  tier->Set("gone", "value", seconds(60));
  tier->Del("gone");
  // Commands go out in order on the one connection: the Get sees the Del.
  Answers answers;
  tier->Get("gone", answers.For(0));
  ASSERT_TRUE(answers.WaitFor(1));
  EXPECT_EQ(answers.Got()[0].result.status, RedisGetResult::kMiss);
}

TEST_F(CacheRedisTest, CallbackMayGetAgainFromTheIoThread) {
  RedisTierPtr tier = StartWith(Relaxed());
  ASSERT_NE(tier, nullptr);
  tier->Set("k", "v", seconds(60));
  Answers answers;
  RedisTier* raw = tier.get();
  tier->Get("absent", [&answers, raw, second = answers.For(1)](RedisGetResult) mutable {
    raw->Get("k", std::move(second));
  });
  ASSERT_TRUE(answers.WaitFor(1));
  EXPECT_EQ(answers.Got()[0].result.status, RedisGetResult::kHit);
  EXPECT_EQ(answers.Got()[0].result.value, "v");
}

TEST_F(CacheRedisTest, PausedServerTimesOutOnceAndTheLateReplyIsDropped) {
  RedisTierOptions options = Relaxed();
  options.command_timeout = milliseconds(100);
  RedisTierPtr tier = StartWith(options);
  ASSERT_NE(tier, nullptr);
  server_->Pause();
  Answers answers;
  const Clock::time_point start = Clock::now();
  tier->Get("slow", answers.For(0));
  ASSERT_TRUE(answers.WaitFor(1, milliseconds(2000)));
  const Clock::duration took = Clock::now() - start;
  EXPECT_EQ(answers.Got()[0].result.status, RedisGetResult::kTimeout);
  EXPECT_GE(took, milliseconds(95));
  EXPECT_LT(took, milliseconds(1000));

  // Redis answers the first GET after resuming; the pipeline is in order,
  // so once the second GET is answered the late reply has been read.
  server_->Resume();
  tier->Get("after", answers.For(1));
  ASSERT_TRUE(answers.WaitFor(2));
  const auto got = answers.Got();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].call, 1);
  EXPECT_EQ(got[1].result.status, RedisGetResult::kMiss);
  EXPECT_EQ(tier->Stats().timeouts, 1u);
}

TEST_F(CacheRedisTest, KilledServerAnswersUnavailableAtOnceAndIsReconnected) {
  RedisTierOptions options = Relaxed();
  options.reconnect_backoff_min = milliseconds(10);
  options.reconnect_backoff_max = milliseconds(100);
  RedisTierPtr tier = StartWith(options);
  ASSERT_NE(tier, nullptr);

  server_->Kill();
  ASSERT_TRUE(WaitUntil([&] { return !tier->Connected(); }));
  Answers answers;
  tier->Get("k", answers.For(0));
  // Answered before Get returned, on this thread.
  ASSERT_EQ(answers.Count(), 1u);
  EXPECT_EQ(answers.Got()[0].result.status, RedisGetResult::kUnavailable);
  EXPECT_TRUE(answers.Got()[0].on_caller_thread);
  tier->Set("k", "v", seconds(10));  // dropped, not queued
  EXPECT_EQ(tier->Stats().unavailable, 2u);

  ASSERT_TRUE(server_->Start());
  ASSERT_TRUE(WaitUntil([&] { return tier->Connected(); }));
  tier->Get("k", answers.For(1));
  ASSERT_TRUE(answers.WaitFor(2));
  EXPECT_EQ(answers.Got()[1].result.status, RedisGetResult::kMiss);
  EXPECT_GE(tier->Stats().reconnects, 1u);
}

TEST_F(CacheRedisTest, InFlightGetAnswersUnavailableWhenServerDies) {
  RedisTierOptions options = Relaxed();
  options.command_timeout = milliseconds(10000);
  RedisTierPtr tier = StartWith(options);
  ASSERT_NE(tier, nullptr);
  server_->Pause();
  Answers answers;
  tier->Get("k", answers.For(0));
  server_->Kill();
  ASSERT_TRUE(answers.WaitFor(1, milliseconds(2000)));
  EXPECT_EQ(answers.Got()[0].result.status, RedisGetResult::kUnavailable);
  EXPECT_FALSE(answers.Got()[0].on_caller_thread);
}

TEST_F(CacheRedisTest, UnreachableServerNeverBlocksAndIsRetried) {
  RedisTierOptions options = Relaxed();
  options.address = "unix:/tmp/portway-redis-test-nobody-listens.sock";
  options.reconnect_backoff_min = milliseconds(5);
  options.reconnect_backoff_max = milliseconds(20);
  absl::StatusOr<RedisTierPtr> tier = RedisTier::Create(options);
  ASSERT_TRUE(tier.ok()) << tier.status();
  Answers answers;
  (*tier)->Get("k", answers.For(0));
  ASSERT_EQ(answers.Count(), 1u);
  EXPECT_EQ(answers.Got()[0].result.status, RedisGetResult::kUnavailable);
  EXPECT_TRUE(WaitUntil([&] { return (*tier)->Stats().reconnects >= 3; }));
  EXPECT_FALSE((*tier)->Connected());
}

TEST_F(CacheRedisTest, FullQueueRefusesWithOverflowInline) {
  RedisTierOptions options = Relaxed();
  options.command_timeout = milliseconds(10000);
  options.max_in_flight = 1;
  options.max_queued = 2;
  RedisTierPtr tier = StartWith(options);
  ASSERT_NE(tier, nullptr);
  server_->Pause();
  // At most one command on the wire and two waiting: of four, at least one
  // is refused however fast the I/O thread drains the queue.
  Answers answers;
  size_t refused = 0;
  for (int i = 0; i < 4; ++i) {
    const size_t before = answers.Count();
    tier->Get("k" + std::to_string(i), answers.For(i));
    if (answers.Count() > before) {
      ++refused;
      EXPECT_EQ(answers.Got().back().result.status, RedisGetResult::kOverflow);
      EXPECT_TRUE(answers.Got().back().on_caller_thread);
    }
  }
  EXPECT_GE(refused, 1u);
  EXPECT_LE(refused, 2u);
  EXPECT_EQ(tier->Stats().overflows, refused);

  server_->Resume();
  ASSERT_TRUE(answers.WaitFor(4));
  for (const auto& answer : answers.Got()) {
    if (answer.result.status != RedisGetResult::kOverflow) {
      EXPECT_EQ(answer.result.status, RedisGetResult::kMiss) << answer.call;
    }
  }
}

TEST_F(CacheRedisTest, ValuesOverTheLimitAreNeitherSentNorReturned) {
  RedisTierOptions options = Relaxed();
  options.max_value_bytes = 1000;
  RedisTierPtr tier = StartWith(options);
  ASSERT_NE(tier, nullptr);
  redisContext* c = server_->Client();
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(RedisProcess::Command(c, {"SET", "portway:cache:huge", std::string(1001, 'x')}), "OK");

  Answers answers;
  tier->Get("huge", answers.For(0));
  tier->Set("unsent", std::string(1001, 'y'), seconds(60));
  tier->Set("fits", std::string(1000, 'z'), seconds(60));
  tier->Get("fits", answers.For(1));  // after the Sets on the one pipeline
  ASSERT_TRUE(answers.WaitFor(2));
  const auto got = answers.Got();
  EXPECT_EQ(got[0].result.status, RedisGetResult::kTooLarge);
  EXPECT_TRUE(got[0].result.value.empty());
  EXPECT_EQ(got[1].result.status, RedisGetResult::kHit);
  EXPECT_EQ(RedisProcess::Command(c, {"EXISTS", "portway:cache:unsent"}), "0");
  redisFree(c);
  EXPECT_EQ(tier->Stats().too_large, 2u);
}

TEST_F(CacheRedisTest, ShutdownAnswersEveryOutstandingGetOnceWithShutdown) {
  RedisTierOptions options = Relaxed();
  options.command_timeout = milliseconds(10000);
  options.max_in_flight = 2;
  RedisTierPtr tier = StartWith(options);
  ASSERT_NE(tier, nullptr);
  server_->Pause();
  Answers answers;
  constexpr int kGets = 6;  // two on the wire, the rest waiting
  for (int i = 0; i < kGets; ++i) tier->Get("k" + std::to_string(i), answers.For(i));
  EXPECT_EQ(answers.Count(), 0u);
  const Clock::time_point start = Clock::now();
  tier.reset();
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  const auto got = answers.Got();
  ASSERT_EQ(got.size(), static_cast<size_t>(kGets));
  std::vector<int> per_call(kGets, 0);
  for (const auto& answer : got) {
    EXPECT_EQ(answer.result.status, RedisGetResult::kShutdown);
    ++per_call[answer.call];
  }
  EXPECT_EQ(per_call, std::vector<int>(kGets, 1));
  server_->Resume();
}

TEST_F(CacheRedisTest, AuthenticatesAndSelectsTheDatabase) {
  RedisTierOptions options = Relaxed();
  options.password = "s3cret";
  options.db = 2;
  RedisTierPtr tier = StartWith(options, /*tcp=*/true, {"--requirepass", "s3cret"});
  ASSERT_NE(tier, nullptr);
  tier->Set("k", "v", seconds(60));
  Answers answers;
  tier->Get("k", answers.For(0));
  ASSERT_TRUE(answers.WaitFor(1));
  ASSERT_EQ(answers.Got()[0].result.status, RedisGetResult::kHit);
  EXPECT_EQ(answers.Got()[0].result.value, "v");

  redisContext* c = server_->Client("s3cret");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(RedisProcess::Command(c, {"GET", "portway:cache:k"}), "(nil)");  // not db 0
  EXPECT_EQ(RedisProcess::Command(c, {"SELECT", "2"}), "OK");
  EXPECT_EQ(RedisProcess::Command(c, {"GET", "portway:cache:k"}), "v");
  redisFree(c);
}

TEST_F(CacheRedisTest, WrongPasswordNeverConnects) {
  server_ = std::make_unique<RedisProcess>(/*tcp=*/true,
                                           std::vector<std::string>{"--requirepass", "s3cret"});
  ASSERT_TRUE(server_->Start());
  RedisTierOptions options = Relaxed();
  options.address = server_->Address();
  options.password = "wrong";
  options.reconnect_backoff_min = milliseconds(5);
  options.reconnect_backoff_max = milliseconds(20);
  absl::StatusOr<RedisTierPtr> tier = RedisTier::Create(options);
  ASSERT_TRUE(tier.ok()) << tier.status();
  ASSERT_TRUE(WaitUntil([&] { return (*tier)->Stats().errors >= 2; }));
  EXPECT_FALSE((*tier)->Connected());
  Answers answers;
  (*tier)->Get("k", answers.For(0));
  ASSERT_EQ(answers.Count(), 1u);
  EXPECT_EQ(answers.Got()[0].result.status, RedisGetResult::kUnavailable);
}

TEST(CacheRedisOptionsTest, CreateRefusesBadOptions) {
  auto create = [](auto edit) {
    RedisTierOptions options;
    options.address = "127.0.0.1:6379";
    edit(options);
    return RedisTier::Create(options).status();
  };
  for (std::string address :
       {"", "localhost", "localhost:", ":6379", "host:0", "host:65536", "host:12x", "unix:"}) {
    absl::Status status = create([&](RedisTierOptions& o) { o.address = address; });
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << address;
  }
  EXPECT_FALSE(create([](RedisTierOptions& o) { o.command_timeout = milliseconds(0); }).ok());
  EXPECT_FALSE(create([](RedisTierOptions& o) { o.max_queued = 0; }).ok());
  EXPECT_FALSE(create([](RedisTierOptions& o) {
                 o.reconnect_backoff_min = milliseconds(10);
                 o.reconnect_backoff_max = milliseconds(5);
               }).ok());
  EXPECT_FALSE(create([](RedisTierOptions& o) { o.db = -1; }).ok());
  // Valid ones (nothing listens; the tier keeps trying in the background).
  EXPECT_TRUE(create([](RedisTierOptions&) {}).ok());
  EXPECT_TRUE(create([](RedisTierOptions& o) { o.address = "[::1]:6379"; }).ok());
}

}  // namespace
}  // namespace portway::cache
