// The admin server: a small HTTP/1 server on admin.address, with the same
// codec as the data plane, that answers GET/HEAD on /ready, /stats,
// /clusters, /listeners, /config_dump, /control_plane and
// /failures[/<request-id>]. The pages themselves are rendered by the
// Server (its Render* methods, defined in admin.cc), which owns the state
// they show.
//
// Thread safety: main thread only. The AdminServer, its connections and the
// Server's Render* methods all run on the main dispatcher; /failures asks
// each worker through Dispatcher::Post and answers once all have replied,
// dropping the answer if the admin connection closed meanwhile.
//
//   AdminServer admin(server, main_dispatcher);
//   if (!admin.Listen(address, &error)) { ...report error... }
//   spdlog::info("admin on {}", admin.bound().ToString());
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/event/dispatcher.h"
#include "core/network/address.h"

namespace portway::server {

class Server;

class AdminServer : public event::ListenerCallbacks {
 public:
  AdminServer(Server& server, event::Dispatcher& dispatcher);
  ~AdminServer() override;

  bool Listen(const network::Address& address, std::string* error);
  const network::Address& bound() const { return bound_; }
  void OnAccept(event::ConnectionPtr connection) override;

 private:
  // One admin connection (admin.cc).
  class Connection;

  void Remove(Connection* c);

  Server& server_;
  event::Dispatcher& dispatcher_;
  network::Address bound_;
  event::ListenerPtr listener_;
  std::map<Connection*, std::unique_ptr<Connection>> connections_;
};

}  // namespace portway::server
