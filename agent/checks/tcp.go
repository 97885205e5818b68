package checks

import (
	"context"
	"fmt"
)

// probeTCP connects to c's address once: "TCP connect <addr>: Success"
// and passing, or the dial error and critical.
func (r *Runner) probeTCP(ctx context.Context, c *check) (Status, string) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := r.cfg.DialContext(ctx, "tcp", c.def.TCP)
	if err != nil {
		return Critical, err.Error()
	}
	conn.Close()
	return Passing, fmt.Sprintf("TCP connect %s: Success", c.def.TCP)
}
