# cairn template's configuration (consul-template's HCL, plus cairn's
# check): render the upstream; nginx -t validates each new file (one it
# refuses is put back), then nginx reloads.
template {
  source      = "upstream.ctmpl"
  destination = "run/conf.d/upstream.conf"
  check       = "./nginx.sh -t -q"
  command     = "./nginx.sh -s reload"
}
