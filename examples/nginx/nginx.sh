#!/bin/sh
# nginx with this example's prefix (run/) and configuration, whatever
# the current directory: ./nginx.sh starts it, ./nginx.sh -t checks the
# configuration, ./nginx.sh -s reload|quit signals the running one.
dir=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir/run/conf.d"
exec nginx -p "$dir/run/" -c "$dir/nginx.conf" -e stderr "$@"
