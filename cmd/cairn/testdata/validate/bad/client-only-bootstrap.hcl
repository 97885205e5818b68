data_dir         = "/var/lib/cairn"
bootstrap_expect = 3
