# A team's KV policy: read everything, write their own tree, never the secrets.
key_prefix "" {
  policy = "read"
}
key_prefix "team/" {
  policy = "write"
}
key_prefix "team/secrets/" {
  policy = "deny"
}
key "team/secrets/public" {
  policy = "read"
}
key_prefix "logs/" {
  policy = "list"
}
