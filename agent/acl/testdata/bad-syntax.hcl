key_prefix "" {
  policy = 
