data_dir = "/var/lib/cairn
