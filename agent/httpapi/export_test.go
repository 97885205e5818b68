package httpapi

// RoutesOf lists the endpoints of the handler cfg makes as
// "METHOD path" (the ACL test checks that each has a case).
func RoutesOf(cfg Config) ([]string, error) {
	h, err := newHandler(cfg)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rt := range h.routes {
		for _, m := range rt.methods {
			out = append(out, m+" "+rt.path)
		}
	}
	return out, nil
}
