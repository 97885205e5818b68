# /etc/cairn/server.hcl on each of three servers (Consul's keys).
server           = true
bootstrap_expect = 3
data_dir         = "/var/lib/cairn"
bind_addr        = "0.0.0.0"        # advertises the address of the default route
client_addr      = "127.0.0.1"
retry_join       = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
vip_cidr         = "10.200.0.0/16"
vip_dataplane    = "none"           # servers allocate VIPs, clients balance them
