#!/bin/sh
# The commands of docs/tls.md, run on one host: three servers on 127.0.0.1.
set -eu
PATH=${CAIRN_BIN_DIR:-$PWD}:$PATH  # the directory holding the cairn binary
mkdir certs && cd certs
cairn tls ca create
for i in 1 2 3; do cairn tls cert create -server -dc dc1 -node s$i; done
cairn tls cert create -cli
cd ..
for i in 1 2 3; do
  n=$((i-1))
  mkdir -p s$i
  cat > s$i/agent.hcl <<HCL
node_name        = "s$i"
datacenter       = "dc1"
data_dir         = "$PWD/s$i/data"
server           = true
bootstrap_expect = 3
bind_addr        = "127.0.0.1"
retry_join       = ["127.0.0.1:28301"]
ports {
  http     = -1
  https    = 2850$i
  dns      = -1
  serf_lan = 2830$i
  server   = 2840$i
}
tls {
  defaults {
    ca_file         = "$PWD/certs/consul-agent-ca.pem"
    cert_file       = "$PWD/certs/dc1-server-consul-$n.pem"
    key_file        = "$PWD/certs/dc1-server-consul-$n-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}
HCL
  cairn agent -config-file s$i/agent.hcl > s$i.log 2>&1 &
  echo $! > s$i.pid
done
export CONSUL_HTTP_ADDR=https://127.0.0.1:28501
export CONSUL_CACERT=$PWD/certs/consul-agent-ca.pem
export CONSUL_CLIENT_CERT=$PWD/certs/dc1-cli-consul-0.pem
export CONSUL_CLIENT_KEY=$PWD/certs/dc1-cli-consul-0-key.pem
for _ in $(seq 1 100); do cairn operator raft list-peers 2>/dev/null | grep -q leader && break; sleep 0.3; done
cairn operator raft list-peers
cairn kv put hello world
CONSUL_HTTP_ADDR=https://127.0.0.1:28503 cairn kv get hello
echo "--- without a client certificate:"
CONSUL_CLIENT_CERT= CONSUL_CLIENT_KEY= cairn kv get hello || true
echo "--- rotation: new CA, bundle, reload"
cd certs && mkdir new && cd new && cairn tls ca create && for i in 1 2 3; do cairn tls cert create -server -dc dc1 -node s$i; done && cd ../..
cat certs/consul-agent-ca.pem certs/new/consul-agent-ca.pem > certs/bundle.pem
sed -i "s#certs/consul-agent-ca.pem#certs/bundle.pem#" s1/agent.hcl s2/agent.hcl s3/agent.hcl
for i in 1 2 3; do CONSUL_HTTP_ADDR=https://127.0.0.1:2850$i cairn reload; done
for i in 1 2 3; do n=$((i-1)); sed -i "s#certs/dc1-server-consul-$n#certs/new/dc1-server-consul-$n#" s$i/agent.hcl; done
for i in 1 2 3; do CONSUL_HTTP_ADDR=https://127.0.0.1:2850$i cairn reload; done
export CONSUL_CACERT=$PWD/certs/bundle.pem  # the CLI trusts both CAs too
cairn kv put hello again
CONSUL_HTTP_ADDR=https://127.0.0.1:28502 cairn kv get hello
echo | openssl s_client -connect 127.0.0.1:28501 -CAfile certs/bundle.pem -cert $CONSUL_CLIENT_CERT -key $CONSUL_CLIENT_KEY 2>/dev/null | grep -m1 "^issuer=" || true
for i in 1 2 3; do kill $(cat s$i.pid); done
