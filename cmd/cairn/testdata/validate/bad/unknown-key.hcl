data_dir = "/var/lib/cairn"
bootstrap_expekt = 3
