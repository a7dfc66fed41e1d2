// The simulated-time dispatcher the other unit tests build on: its clock
// moves only when told, timers fire in deadline order at their deadline,
// posts and deferred deletes run after each, and fake connections record
// writes and closes.
#include "test/unit/sim_dispatcher.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace portway::test {
namespace {

using std::chrono::milliseconds;

TEST(SimDispatcherTest, TimersFireInDeadlineOrderAtTheirDeadline) {
  SimDispatcher d;
  MonotonicTime start = d.Now();
  std::vector<std::string> fired;
  std::vector<int64_t> at;
  auto note = [&](std::string name) {
    fired.push_back(std::move(name));
    at.push_back(std::chrono::duration_cast<milliseconds>(d.Now() - start).count());
  };
  auto a = d.CreateTimer([&] { note("a"); });
  auto b = d.CreateTimer([&] { note("b"); });
  auto c = d.CreateTimer([&] { note("c"); });
  a->Enable(milliseconds(30));
  b->Enable(milliseconds(10));
  c->Enable(milliseconds(10));  // same deadline as b, armed later
  d.AdvanceTimeAndRun(milliseconds(9));
  EXPECT_TRUE(fired.empty());
  EXPECT_EQ(d.NextTimerIn(), milliseconds(1));
  d.AdvanceTimeAndRun(milliseconds(100));
  EXPECT_EQ(fired, (std::vector<std::string>{"b", "c", "a"}));
  EXPECT_EQ(at, (std::vector<int64_t>{10, 10, 30}));
  EXPECT_EQ(d.Now() - start, milliseconds(109));
  EXPECT_EQ(d.ArmedTimers(), 0u);
}

TEST(SimDispatcherTest, ReEnablingMovesTheDeadlineAndDisableCancels) {
  SimDispatcher d;
  int fired = 0;
  auto t = d.CreateTimer([&] { ++fired; });
  t->Enable(milliseconds(10));
  d.AdvanceTimeAndRun(milliseconds(5));
  t->Enable(milliseconds(10));  // now due at 15
  d.AdvanceTimeAndRun(milliseconds(9));
  EXPECT_EQ(fired, 0);
  d.AdvanceTimeAndRun(milliseconds(1));
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(t->Enabled());
  t->Enable(milliseconds(1));
  t->Disable();
  d.AdvanceTimeAndRun(milliseconds(10));
  EXPECT_EQ(fired, 1);
  t->Enable(milliseconds(1));
  t.reset();  // destroying an armed timer disarms it
  d.AdvanceTimeAndRun(milliseconds(10));
  EXPECT_EQ(fired, 1);
}

TEST(SimDispatcherTest, ATimerArmedFromACallbackFiresLaterInTheSameAdvance) {
  SimDispatcher d;
  std::vector<int> fired;
  event::TimerPtr second = d.CreateTimer([&] { fired.push_back(2); });
  event::TimerPtr first = d.CreateTimer([&] {
    fired.push_back(1);
    second->Enable(milliseconds(5));
  });
  first->Enable(milliseconds(5));
  d.AdvanceTimeAndRun(milliseconds(10));
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
}

TEST(SimDispatcherTest, PostsAndDeferredDeletesRunAfterEachTimer) {
  SimDispatcher d;
  struct Flag : event::DeferredDeletable {
    explicit Flag(bool* gone) : gone(gone) {}
    ~Flag() override { *gone = true; }
    bool* gone;
  };
  bool gone = false;
  std::vector<std::string> order;
  auto t = d.CreateTimer([&] {
    order.push_back("timer");
    d.Post([&] { order.push_back("post"); });
    d.DeferredDelete(std::make_unique<Flag>(&gone));
    EXPECT_FALSE(gone);  // not while the callback runs
  });
  t->Enable(milliseconds(1));
  d.AdvanceTimeAndRun(milliseconds(1));
  EXPECT_EQ(order, (std::vector<std::string>{"timer", "post"}));
  EXPECT_TRUE(gone);
  d.Post([&] { order.push_back("pending"); });
  d.RunPending();
  EXPECT_EQ(order.back(), "pending");
}

TEST(SimDispatcherTest, SystemTimeMovesWithTheSimulatedClock) {
  SimDispatcher d;
  SystemTime before = d.SystemNow();
  d.AdvanceTimeAndRun(milliseconds(1500));
  EXPECT_EQ(d.SystemNow() - before, milliseconds(1500));
}

TEST(SimDispatcherTest, SeededRandomIsRepeatableAndScriptable) {
  SimDispatcher a("a", 7);
  SimDispatcher b("b", 7);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a.Random().Next(), b.Random().Next());
  a.sim_random().Push(UINT64_MAX);
  EXPECT_EQ(a.Random().UpTo(100), 100u);
  a.sim_random().Push(0);
  EXPECT_EQ(a.Random().Jitter(milliseconds(100)), milliseconds(0));
  a.sim_random().AlwaysMax();
  EXPECT_EQ(a.Random().Between(5, 9), 9u);
  EXPECT_TRUE(a.Random().Chance(100));
  EXPECT_FALSE(a.Random().Chance(99.9));
  a.sim_random().AlwaysMin();
  EXPECT_FALSE(a.Random().Chance(0));
  EXPECT_TRUE(a.Random().Chance(0.1));
}

class RecordingCallbacks : public event::ConnectionCallbacks {
 public:
  void OnData(Buffer& data, bool end_stream) override {
    received += data.ToString();
    data.Clear();
    ended = ended || end_stream;
  }
  void OnEvent(event::ConnectionEvent event) override { events.push_back(event); }
  std::string received;
  bool ended = false;
  std::vector<event::ConnectionEvent> events;
};

TEST(SimDispatcherTest, FakeConnectionsRecordWritesAndCloseOnTheLoop) {
  SimDispatcher d;
  auto address = network::Address::Parse("10.0.0.1:80");
  ASSERT_TRUE(address.ok());
  event::ConnectionPtr c = d.Connect(*address);
  ASSERT_EQ(d.connections().size(), 1u);
  FakeConnection& fake = *d.connections()[0];
  RecordingCallbacks callbacks;
  c->SetCallbacks(&callbacks);
  fake.CompleteConnect();
  fake.Feed("hello", false);
  Buffer out;
  out.Add("world");
  c->Write(out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(fake.written(), "world");
  EXPECT_EQ(callbacks.received, "hello");
  c->Close(event::CloseType::kFlushWrite);
  EXPECT_EQ(fake.close_type(), event::CloseType::kFlushWrite);
  EXPECT_FALSE(c->Closed());  // completes on the loop, like a socket
  d.RunPending();
  EXPECT_TRUE(c->Closed());
  EXPECT_EQ(callbacks.events,
            (std::vector<event::ConnectionEvent>{event::ConnectionEvent::kConnected,
                                                 event::ConnectionEvent::kLocalClose}));
  c.reset();
  EXPECT_EQ(d.connections()[0], nullptr);
}

}  // namespace
}  // namespace portway::test
