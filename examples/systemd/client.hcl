# /etc/cairn/client.hcl on every other machine.
data_dir      = "/var/lib/cairn"
client_addr   = "127.0.0.1"
retry_join    = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
vip_cidr      = "10.200.0.0/16"     # the same range as the servers
vip_dataplane = "auto"              # IPVS when the kernel has it, else nftables
