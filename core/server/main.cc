// portway: the gateway binary. A thin main over the portway_core library.
//
//   portway -c portway.yaml [--workers N] [--admin-address-path FILE]
//           [--log-level trace|debug|info|warn|error|critical|off]
//   portway --validate -c portway.yaml
//   portway --version
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "core/http/module_loader.h"
#include "core/server/config_builder.h"
#include "core/server/server.h"
#include "filters/builtin.h"
#include "portway/abi.h"
#include "portway/config/v1/bootstrap.pb.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

// --help prints to stdout; a usage error to stderr.
void Usage(std::ostream& out = std::cerr) {
  out << "usage: portway -c FILE [--workers N] [--admin-address-path FILE]\n"
         "                [--log-level trace|debug|info|warn|error|critical|off]\n"
         "       portway --validate -c FILE\n"
         "       portway --version\n";
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread or socket exists: a write to a closed peer must be
  // an error code, never a signal that kills the process.
  signal(SIGPIPE, SIG_IGN);
  portway::server::Options options;
  bool validate = false;
  std::string log_level = "info";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "portway: " << arg << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "-c" || arg == "--config") {
      options.config_path = value();
    } else if (arg == "--validate") {
      validate = true;
    } else if (arg == "--workers") {
      options.workers = std::atoi(value().c_str());
    } else if (arg == "--admin-address-path") {
      options.admin_address_path = value();
    } else if (arg == "--log-level") {
      log_level = value();
    } else if (arg == "-h" || arg == "--help") {
      Usage(std::cout);
      return 0;
    } else if (arg == "--version") {
      // The ABI stamp is what a filter module must have been built with.
      std::cout << "portway " << PORTWAY_VERSION_STRING << "\n"
                << "module ABI stamp: " << portway::http::GatewayAbiStamp() << "\n";
      return 0;
    } else {
      std::cerr << "portway: unknown argument '" << arg << "'\n";
      Usage();
      return 2;
    }
  }
  if (options.config_path.empty()) {
    Usage();
    return 2;
  }
  portway::filters::RegisterBuiltinFilters();
  if (log_level != "trace" && log_level != "debug" && log_level != "info" && log_level != "warn" &&
      log_level != "error" && log_level != "critical" && log_level != "off") {
    std::cerr << "portway: unknown --log-level '" << log_level
              << "' (trace, debug, info, warn, error, critical, off)\n";
    return 2;
  }
  auto logger = spdlog::stderr_color_mt("portway");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));

  if (validate) {
    portway::config::ConfigErrors errors;
    portway::config::v1::Bootstrap bootstrap;
    portway::stats::Store store;
    portway::server::ConfigBuilder builder(store, /*open_files=*/false);
    if (portway::server::LoadBootstrapFile(options.config_path, &bootstrap, &errors)) {
      // Loading a module runs its code: --validate does, to know its filters.
      portway::server::LoadModules(bootstrap, options.config_path, &errors);
      builder.Build(bootstrap, nullptr, &errors);
    }
    if (!errors.empty()) {
      for (const auto& e : errors) std::cerr << e.ToString() << "\n";
      std::cerr << options.config_path << ": " << errors.size() << " error(s)\n";
      return 1;
    }
    std::cout << "configuration OK\n";
    return 0;
  }

  portway::server::Server server(options);
  portway::config::ConfigErrors errors;
  if (!server.Init(&errors)) {
    for (const auto& e : errors) std::cerr << e.ToString() << "\n";
    std::cerr << "portway: not started: " << errors.size() << " error(s) in " << options.config_path
              << "\n";
    return 1;
  }
  return server.Run();
}
