#!/bin/sh
# The nginx container's entry point. cairn template renders the upstream
# once from the agent this container shares its network with (node1),
# nginx starts with it, and then cairn template keeps it current: every
# new file must pass "nginx -t" before nginx reloads on it (a file that
# fails is put back).
set -eu
nginx="nginx -p /tmp -c /etc/nginx/nginx.conf -e stderr"
tmpl=/etc/nginx/web.ctmpl:/etc/nginx/conf.d/web.conf
cairn template -once -template "$tmpl"
$nginx
exec cairn template -template "$tmpl:$nginx -s reload" -check "$nginx -t -q" -wait 200ms:1s
