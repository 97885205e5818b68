# cairn template's configuration (consul-template's HCL): render the
# upstream, and reload nginx when it changes. cairn template -check
# "./nginx.sh -t -q" validates each new file first.
template {
  source      = "upstream.ctmpl"
  destination = "run/conf.d/upstream.conf"
  command     = "./nginx.sh -s reload"
}
