key_prefix "" {
  policy = "rw"
}
