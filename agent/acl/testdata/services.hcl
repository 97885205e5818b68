service_prefix "" {
  policy = "read"
}
service "web" {
  policy = "write"
}
service_prefix "web-" {
  policy = "write"
}
service_prefix "web-admin" {
  policy = "deny"
}
node_prefix "" {
  policy = "read"
}
node "db-1" {
  policy = "write"
}
session_prefix "" {
  policy = "write"
}
agent_prefix "" {
  policy = "read"
}
agent "node-1" {
  policy = "write"
}
event_prefix "deploy-" {
  policy = "write"
}
query_prefix "" {
  policy = "read"
}
operator = "read"
keyring = "write"
