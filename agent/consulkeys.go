package agent

// consulKeys are the keys of Consul's agent configuration (1.20) that
// cairn does not read, by their full dotted name. A config file may carry
// them, so that an existing Consul config directory loads unchanged; each
// one gets a single warning that it has no effect. A block listed here
// (acl, telemetry, ...) is skipped whole. Keys cairn reads are declared
// by fileConfig; a key in neither place is a typo and an error.
var consulKeys = setOf(
	// ACLs, TLS and encryption options cairn does not implement.
	"acl_datacenter", "enable_acl_replication",
	"tls.grpc", "tls_prefer_server_cipher_suites", "auto_encrypt", "auto_config",
	"encrypt_verify_incoming", "encrypt_verify_outgoing", "disable_keyring_file",
	// Addresses and ports of listeners cairn does not have.
	"addresses.https", "addresses.grpc", "addresses.grpc_tls",
	"ports.serf_wan", "ports.grpc", "ports.grpc_tls", "ports.sidecar_min_port",
	"ports.sidecar_max_port", "ports.expose_min_port", "ports.expose_max_port",
	"ports.proxy_min_port", "ports.proxy_max_port",
	"advertise_addr_ipv4", "advertise_addr_ipv6", "advertise_addr_wan", "advertise_addr_wan_ipv4",
	"advertise_addr_wan_ipv6", "advertise_reconnect_timeout", "serf_lan", "serf_wan",
	"serf_lan_allowed_cidrs", "serf_wan_allowed_cidrs", "translate_wan_addrs", "unix_sockets",
	"start_join_wan", "retry_join_wan", "retry_interval", "retry_interval_wan", "retry_max",
	"retry_max_wan", "reconnect_timeout_wan", "rejoin_after_leave", "segment", "segments",
	"primary_datacenter", "primary_gateways", "primary_gateways_interval",
	// Connect (cairn runs no proxies and signs no certificates), peering,
	// partitions and Enterprise features.
	"connect.ca_config", "connect.ca_provider", "connect.enable_mesh_gateway_wan_federation",
	"connect.enable_serverless_plugin", "connect.mesh_gateway_wan_federation_enabled",
	"peering", "partition", "license_path", "read_replica", "non_voting_server", "audit",
	"reporting", "cloud", "locality", "default_intention_policy", "config_entries",
	"enable_central_service_config", "xds", "experiments",
	// Raft, gossip and server tuning that cairn sets itself.
	"performance.leave_drain_time", "performance.raft_multiplier",
	"performance.grpc_keepalive_interval", "performance.grpc_keepalive_timeout",
	"limits.https_handshake_timeout", "limits.request_limits", "limits.rpc_handshake_timeout",
	"limits.rpc_client_timeout", "limits.rpc_max_burst", "limits.rpc_max_conns_per_client",
	"limits.rpc_rate", "limits.kv_max_value_size", "limits.txn_max_req_len", "autopilot", "raft_protocol", "raft_snapshot_interval",
	"raft_snapshot_threshold", "raft_trailing_logs", "raft_boltdb", "raft_logstore.verification",
	"raft_logstore.boltdb", "raft_logstore.wal",
	"server_rejoin_age_max", "session_ttl_min", "check_update_interval", "protocol", "rpc",
	"discovery_max_stale", "default_query_time", "max_query_time", "disable_coordinates",
	"server_name", "use_streaming_backend", "cache",
	// Observability and the UI.
	"telemetry", "ui", "ui_config", "ui_content_path", "ui_dir", "log_file",
	"log_json", "log_rotate_bytes", "log_rotate_duration", "log_rotate_max_files", "enable_syslog",
	"syslog_facility", "pid_file", "disable_update_check", "disable_anonymous_signature",
	"disable_host_node_id", "disable_http_unprintable_char_filter", "http_config",
	// Behaviour cairn fixes: interrupts.
	"skip_leave_on_interrupt", "check_output_max_size",
	"discard_check_output", "enable_agent_tls_for_checks", "auto_reload_config", "watches",
	// DNS tuning beyond TTLs and only_passing.
	"dns_config.allow_stale", "dns_config.max_stale", "dns_config.udp_answer_limit",
	"dns_config.enable_truncate", "dns_config.recursor_timeout", "dns_config.disable_compression",
	"dns_config.a_record_limit", "dns_config.enable_additional_node_meta_txt", "dns_config.soa",
	"dns_config.use_cache", "dns_config.cache_max_age", "dns_config.prefer_namespace",
	"dns_config.recursor_strategy",
	// The version testutil (consul/sdk) writes into its configs.
	"version",
)

func setOf(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}
