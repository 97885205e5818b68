package checks

import (
	"net"
	"testing"
	"time"
)

func TestTCPCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	open, closed := l.Addr().String(), closedPort(t)

	for _, tc := range []struct {
		name, addr, want string
	}{
		{"listening port is passing", open, `update db passing "TCP connect ` + open + `: Success"`},
		{"closed port is critical", closed, `update db critical "dial tcp ` + closed + `: connect: connection refused"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rec := startRunner(t, false, nil, Definition{ID: "db", TCP: tc.addr, Interval: time.Minute})
			if got := rec.waitLines(t, 1); got != tc.want {
				t.Errorf("first result\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
