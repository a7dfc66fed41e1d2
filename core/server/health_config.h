// Turns a cluster's health_checks, outlier_detection and
// healthy_panic_threshold into their resolved forms (upstream::
// HealthCheckSpec, upstream::OutlierConfig), with every wrong field
// reported by its path. In its own unit to keep config_builder.cc about
// the config's shape.
#pragma once

#include <string>

#include "core/config/yaml_proto.h"
#include "core/upstream/cluster.h"
#include "portway/config/v1/cluster.pb.h"

namespace portway::server {

// Fills config->healthy_panic_threshold, health_checks and outlier from
// `proto` (clusters[i] at `path`).
void BuildClusterHealth(const config::v1::Cluster& proto, const std::string& path,
                        upstream::ClusterConfig* config, config::ConfigErrors* errors);

}  // namespace portway::server
