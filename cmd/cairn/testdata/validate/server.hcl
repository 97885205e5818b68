server           = true
bootstrap_expect = 1
data_dir         = "/var/lib/cairn"
client_addr      = "127.0.0.1"
ports { http = 8500 }
