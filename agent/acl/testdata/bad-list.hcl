service "web" {
  policy = "list"
}
