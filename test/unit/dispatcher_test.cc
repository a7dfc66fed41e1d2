// The libuv dispatcher's connection semantics that the data path relies on.
#include "core/event/dispatcher.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace portway::event {
namespace {

class Recorder : public ConnectionCallbacks {
 public:
  void OnData(Buffer& data, bool end_stream) override {
    received += data.length();
    data.Clear();
    eof = eof || end_stream;
  }
  void OnEvent(ConnectionEvent event) override { events.push_back(event); }
  size_t received = 0;
  bool eof = false;
  std::vector<ConnectionEvent> events;
};

class Acceptor : public ListenerCallbacks {
 public:
  void OnAccept(ConnectionPtr connection) override { accepted = std::move(connection); }
  ConnectionPtr accepted;
};

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() : dispatcher_(Dispatcher::Create("test")) {
    std::string error;
    int fd = CreateListenSocket(*network::Address::Parse("127.0.0.1:0"), 16, &error);
    EXPECT_GE(fd, 0) << error;
    address_ = SocketLocalAddress(fd);
    listener_ = dispatcher_->AdoptListener(fd, acceptor_);
  }
  template <typename Pred>
  void RunUntil(Pred done, int ms) {
    auto tick = dispatcher_->CreateTimer([this] { dispatcher_->Exit(); });
    for (int waited = 0; !done() && waited < ms; waited += 10) {
      tick->Enable(std::chrono::milliseconds(10));
      dispatcher_->Run();
    }
  }

  // Connects a client to the test listener; the server side is
  // acceptor_.accepted. Callbacks are set on both sides.
  ConnectionPtr ConnectPair(ConnectionCallbacks* client_callbacks,
                            ConnectionCallbacks* server_callbacks) {
    ConnectionPtr client = dispatcher_->Connect(address_);
    client->SetCallbacks(client_callbacks);
    RunUntil([&] { return acceptor_.accepted != nullptr; }, 2000);
    EXPECT_NE(acceptor_.accepted, nullptr);
    if (acceptor_.accepted != nullptr) acceptor_.accepted->SetCallbacks(server_callbacks);
    return client;
  }

  DispatcherPtr dispatcher_;
  network::Address address_;
  Acceptor acceptor_;
  ListenerPtr listener_;
};

TEST_F(DispatcherTest, FlushedCloseDeliversEveryByteBeforeClosing) {
  Recorder client_events;
  Recorder server_events;
  ConnectionPtr client = ConnectPair(&client_events, &server_events);
  ASSERT_NE(acceptor_.accepted, nullptr);

  // The client does not read yet, so most of this stays queued in Portway.
  client->ReadDisable(true);
  const size_t kSize = 8 << 20;
  Buffer out;
  out.Add(std::string(kSize, 'x'));
  acceptor_.accepted->Write(out);
  acceptor_.accepted->Close(CloseType::kFlushWrite);
  RunUntil([] { return false; }, 100);
  EXPECT_FALSE(acceptor_.accepted->Closed()) << "closed with bytes still queued";
  EXPECT_TRUE(server_events.events.empty());

  client->ReadDisable(false);
  RunUntil([&] { return client_events.eof; }, 10000);
  EXPECT_EQ(client_events.received, kSize);
  EXPECT_TRUE(client_events.eof) << "the server half-closes after the last byte";
  // Once the client closes too, the linger ends and the owner is told.
  client->Close(CloseType::kNoFlush);
  RunUntil([&] { return !server_events.events.empty(); }, 3000);
  ASSERT_EQ(server_events.events.size(), 1u);
  EXPECT_EQ(server_events.events[0], ConnectionEvent::kLocalClose);
  EXPECT_TRUE(acceptor_.accepted->Closed());
}

TEST_F(DispatcherTest, FlushedCloseLingersUntilThePeerCloses) {
  Recorder client_events;
  Recorder server_events;
  ConnectionPtr client = ConnectPair(&client_events, &server_events);
  ASSERT_NE(acceptor_.accepted, nullptr);

  Buffer out;
  out.Add("response");
  acceptor_.accepted->Write(out);
  acceptor_.accepted->Close(CloseType::kFlushWrite);
  // The client keeps sending after the server closed: those bytes are read
  // and dropped (not delivered), and the response still arrives whole.
  Buffer more;
  more.Add(std::string(100000, 'y'));
  client->Write(more);
  RunUntil([&] { return client_events.eof; }, 3000);
  EXPECT_EQ(client_events.received, 8u);
  EXPECT_EQ(server_events.received, 0u);
  EXPECT_FALSE(acceptor_.accepted->Closed());
  client->Close(CloseType::kFlushWrite);
  RunUntil([&] { return !server_events.events.empty(); }, 3000);
  ASSERT_FALSE(server_events.events.empty());
  EXPECT_EQ(server_events.events[0], ConnectionEvent::kLocalClose);
}

TEST_F(DispatcherTest, ReportsConnectionRefused) {
  std::string error;
  int fd = CreateListenSocket(*network::Address::Parse("127.0.0.1:0"), 1, &error);
  network::Address closed = SocketLocalAddress(fd);
  close(fd);
  ConnectionPtr client = dispatcher_->Connect(closed);
  Recorder events;
  client->SetCallbacks(&events);
  RunUntil([&] { return !events.events.empty(); }, 2000);
  ASSERT_EQ(events.events.size(), 1u);
  EXPECT_EQ(events.events[0], ConnectionEvent::kConnectFailed);
  EXPECT_EQ(client->LastError(), ECONNREFUSED);
}

TEST_F(DispatcherTest, ResumingReadingRedeliversBufferedBytes) {
  ConnectionPtr client = dispatcher_->Connect(address_);
  Recorder client_events;
  client->SetCallbacks(&client_events);
  RunUntil([&] { return acceptor_.accepted != nullptr; }, 2000);
  ASSERT_NE(acceptor_.accepted, nullptr);
  // A receiver that leaves bytes in the buffer (a pipelined request waiting).
  struct Holder : ConnectionCallbacks {
    void OnData(Buffer& data, bool) override {
      calls++;
      seen = data.length();
    }
    void OnEvent(ConnectionEvent) override {}
    int calls = 0;
    size_t seen = 0;
  } holder;
  acceptor_.accepted->SetCallbacks(&holder);
  Buffer out;
  out.Add("GET / HTTP/1.1\r\n\r\n");
  client->Write(out);
  RunUntil([&] { return holder.calls > 0; }, 2000);
  ASSERT_EQ(holder.calls, 1);
  acceptor_.accepted->ReadDisable(true);
  acceptor_.accepted->ReadDisable(false);
  RunUntil([&] { return holder.calls > 1; }, 2000);
  EXPECT_EQ(holder.calls, 2);
  EXPECT_EQ(holder.seen, 18u);
}

TEST_F(DispatcherTest, TimersFireInDeadlineOrderAndOnlyWhenEnabled) {
  std::vector<int> fired;
  TimerPtr a = dispatcher_->CreateTimer([&] { fired.push_back(1); });
  TimerPtr b = dispatcher_->CreateTimer([&] { fired.push_back(2); });
  TimerPtr c = dispatcher_->CreateTimer([&] { fired.push_back(3); });
  TimerPtr never = dispatcher_->CreateTimer([&] { fired.push_back(4); });
  c->Enable(std::chrono::milliseconds(30));
  a->Enable(std::chrono::milliseconds(10));
  b->Enable(std::chrono::milliseconds(20));
  never->Enable(std::chrono::milliseconds(15));
  never->Disable();
  EXPECT_TRUE(a->Enabled());
  EXPECT_FALSE(never->Enabled());
  RunUntil([&] { return fired.size() == 3; }, 2000);
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3}));
  EXPECT_FALSE(a->Enabled());
}

// Now() is read once per callback from the loop: equal within one, fresh in
// the next after the loop blocked, whether a timer or a post woke it.
TEST_F(DispatcherTest, TheClockIsReadOncePerCallbackAndAfreshInTheNext) {
  using std::chrono::milliseconds;
  MonotonicTime first;
  MonotonicTime first_again;
  MonotonicTime by_timer;
  MonotonicTime by_post;
  std::thread poster;
  TimerPtr a = dispatcher_->CreateTimer([&] {
    first = dispatcher_->Now();
    std::this_thread::sleep_for(milliseconds(5));
    first_again = dispatcher_->Now();
  });
  TimerPtr b = dispatcher_->CreateTimer([&] {
    by_timer = dispatcher_->Now();
    poster = std::thread([this, &by_post] {
      std::this_thread::sleep_for(milliseconds(30));
      dispatcher_->Post([this, &by_post] {
        by_post = dispatcher_->Now();
        dispatcher_->Exit();
      });
    });
  });
  a->Enable(milliseconds(1));
  b->Enable(milliseconds(40));
  dispatcher_->Run();
  poster.join();
  EXPECT_EQ(first, first_again);
  EXPECT_GE(by_timer - first, milliseconds(30));
  EXPECT_GE(by_post - by_timer, milliseconds(25));
}

TEST_F(DispatcherTest, ReEnablingMovesTheDeadline) {
  int fired = 0;
  TimerPtr t = dispatcher_->CreateTimer([&] { ++fired; });
  t->Enable(std::chrono::milliseconds(10));
  t->Enable(std::chrono::milliseconds(300));
  RunUntil([] { return false; }, 100);
  EXPECT_EQ(fired, 0);
  RunUntil([&] { return fired > 0; }, 2000);
  EXPECT_EQ(fired, 1);
}

TEST_F(DispatcherTest, ACallbackMayDestroyOrReArmTimers) {
  int rearmed = 0;
  TimerPtr victim = dispatcher_->CreateTimer([] { FAIL() << "destroyed timer fired"; });
  TimerPtr self_rearming;
  self_rearming = dispatcher_->CreateTimer([&] {
    if (++rearmed < 3) self_rearming->Enable(std::chrono::milliseconds(1));
  });
  TimerPtr killer = dispatcher_->CreateTimer([&] { victim.reset(); });
  victim->Enable(std::chrono::milliseconds(20));
  killer->Enable(std::chrono::milliseconds(5));
  self_rearming->Enable(std::chrono::milliseconds(1));
  RunUntil([] { return false; }, 100);
  EXPECT_EQ(victim, nullptr);
  EXPECT_EQ(rearmed, 3);
}

TEST_F(DispatcherTest, ManyTimersAllFireOnce) {
  const int kTimers = 2000;
  std::vector<int> counts(kTimers, 0);
  std::vector<TimerPtr> timers;
  for (int i = 0; i < kTimers; ++i) {
    timers.push_back(dispatcher_->CreateTimer([&counts, i] { ++counts[i]; }));
    timers.back()->Enable(std::chrono::milliseconds((i * 7919) % 50));
  }
  // Cancel every third one.
  for (int i = 0; i < kTimers; i += 3) timers[i]->Disable();
  RunUntil([] { return false; }, 150);
  for (int i = 0; i < kTimers; ++i) EXPECT_EQ(counts[i], i % 3 == 0 ? 0 : 1) << i;
}

TEST_F(DispatcherTest, ATimerDisabledAndReArmedSoonerFiresAtTheSoonerTime) {
  int fired = 0;
  TimerPtr t = dispatcher_->CreateTimer([&] { ++fired; });
  t->Enable(std::chrono::seconds(30));
  t->Disable();
  t->Enable(std::chrono::milliseconds(5));
  EXPECT_TRUE(t->Enabled());
  RunUntil([&] { return fired > 0; }, 1000);
  EXPECT_EQ(fired, 1);
}

TEST_F(DispatcherTest, ATimerDisabledAndReArmedLaterFiresOnceAtTheLaterTime) {
  int fired = 0;
  TimerPtr t = dispatcher_->CreateTimer([&] { ++fired; });
  t->Enable(std::chrono::milliseconds(5));
  t->Disable();
  t->Enable(std::chrono::milliseconds(200));
  RunUntil([] { return false; }, 80);
  EXPECT_EQ(fired, 0);  // its first entry came due and was moved, not fired
  RunUntil([&] { return fired > 0; }, 2000);
  RunUntil([] { return false; }, 50);
  EXPECT_EQ(fired, 1);
}

TEST_F(DispatcherTest, PostponedTimersFireInTheOrderOfTheirNewDeadlines) {
  std::vector<int> fired;
  TimerPtr a = dispatcher_->CreateTimer([&] { fired.push_back(1); });
  TimerPtr b = dispatcher_->CreateTimer([&] { fired.push_back(2); });
  a->Enable(std::chrono::milliseconds(5));
  b->Enable(std::chrono::milliseconds(40));
  a->Enable(std::chrono::milliseconds(80));  // now after b
  RunUntil([&] { return fired.size() == 2; }, 2000);
  EXPECT_EQ(fired, (std::vector<int>{2, 1}));
}

// Writes made while a read callback runs leave together when it returns;
// elsewhere a write goes to the kernel at once.
TEST_F(DispatcherTest, WritesInAReadCallbackAreFlushedWhenItReturns) {
  struct Echo : ConnectionCallbacks {
    void OnData(Buffer& data, bool) override {
      Buffer head;
      head.Add("head;");
      self->Write(head);
      queued_in_callback = self->WriteBufferedBytes();
      self->Write(data);
    }
    void OnEvent(ConnectionEvent) override {}
    Connection* self = nullptr;
    size_t queued_in_callback = 0;
  };
  struct Collect : ConnectionCallbacks {
    void OnData(Buffer& data, bool) override {
      text += data.ToString();
      data.Clear();
    }
    void OnEvent(ConnectionEvent) override {}
    std::string text;
  };
  Echo echo;
  Collect client_side;
  ConnectionPtr client = ConnectPair(&client_side, &echo);
  ASSERT_NE(acceptor_.accepted, nullptr);
  echo.self = acceptor_.accepted.get();
  RunUntil([] { return false; }, 20);  // the connect completes
  Buffer ping;
  ping.Add("ping");
  client->Write(ping);
  EXPECT_EQ(client->WriteBufferedBytes(), 0u);  // outside a callback: written at once
  RunUntil([&] { return client_side.text.size() == 9; }, 2000);
  EXPECT_EQ(client_side.text, "head;ping");
  EXPECT_EQ(echo.queued_in_callback, 5u);  // held until the callback returned
  EXPECT_EQ(acceptor_.accepted->WriteBufferedBytes(), 0u);
}

// A close without flushing, in the same read callback as a write, still
// offers the written bytes to the kernel (a TLS alert before the close).
TEST_F(DispatcherTest, APlainCloseInAReadCallbackStillSendsWhatWasWritten) {
  struct Refuse : ConnectionCallbacks {
    void OnData(Buffer& data, bool) override {
      data.Clear();
      Buffer bye;
      bye.Add("bye");
      self->Write(bye);
      self->Close(CloseType::kNoFlush);
    }
    void OnEvent(ConnectionEvent) override {}
    Connection* self = nullptr;
  };
  Refuse refuse;
  Recorder client_side;
  ConnectionPtr client = ConnectPair(&client_side, &refuse);
  ASSERT_NE(acceptor_.accepted, nullptr);
  refuse.self = acceptor_.accepted.get();
  RunUntil([] { return false; }, 20);
  Buffer ping;
  ping.Add("ping");
  client->Write(ping);
  RunUntil([&] { return client_side.eof; }, 2000);
  EXPECT_TRUE(client_side.eof);
  EXPECT_EQ(client_side.received, 3u);
}

}  // namespace
}  // namespace portway::event
