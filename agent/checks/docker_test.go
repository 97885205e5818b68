package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDocker is a DockerExec whose commands exit with the code (and write
// the output) the test sets per container; it records what it ran. The
// real one (registrator.DockerEngine.Exec) is tested against Docker in
// the system tests.
type fakeDocker struct {
	mu   sync.Mutex
	code map[string]int
	out  string
	err  error
	ran  []string
	hang bool
}

func (f *fakeDocker) Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error) {
	f.mu.Lock()
	f.ran = append(f.ran, id+": "+strings.Join(cmd, " "))
	code, text, err, hang := f.code[id], f.out, f.err, f.hang
	f.mu.Unlock()
	io.WriteString(out, text)
	if hang {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return code, err
}

// A Docker check runs its Args in its container: exit 0 passing, 1
// warning, anything else critical, with the command's output; an engine
// error or a run past the timeout is critical.
func TestDockerCheck(t *testing.T) {
	tests := []struct {
		name string
		fake *fakeDocker
		want string
	}{
		{"exit 0", &fakeDocker{code: map[string]int{"c1": 0}, out: "ok\n"}, `update d passing "ok\n"`},
		{"exit 1", &fakeDocker{code: map[string]int{"c1": 1}, out: "slow\n"}, `update d warning "slow\n"`},
		{"exit 2", &fakeDocker{code: map[string]int{"c1": 2}, out: "down\n"}, `update d critical "down\n"`},
		{"exit 137", &fakeDocker{code: map[string]int{"c1": 137}}, `update d critical ""`},
		{"engine error", &fakeDocker{err: errors.New("docker exec create in c1: No such container: c1")},
			`update d critical "docker exec create in c1: No such container: c1"`},
		{"timeout", &fakeDocker{hang: true, out: "started\n"}, `update d critical "Timed out (100ms) running check\n\nstarted\n"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := tt.fake
			_, rec := startRunner(t, false, func(c *Config) { c.Docker = fake },
				Definition{ID: "d", DockerContainerID: "c1", Args: []string{"/check", "-q"}, Interval: time.Minute, Timeout: 100 * time.Millisecond, Status: Passing})
			if got := rec.waitLines(t, 1); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			fake.mu.Lock()
			defer fake.mu.Unlock()
			if len(fake.ran) == 0 || fake.ran[0] != "c1: /check -q" {
				t.Errorf("ran %q, want the Args in container c1", fake.ran)
			}
		})
	}
}

// Without an engine a Docker check is critical and says so; it is not
// dropped.
func TestDockerCheckWithoutEngine(t *testing.T) {
	_, rec := startRunner(t, false, nil, Definition{ID: "d", DockerContainerID: "c1", Args: []string{"/check"}, Interval: time.Minute, Status: Passing})
	want := fmt.Sprintf("update d critical %q", "Docker check in c1: this agent has no Docker engine to run it")
	if got := rec.waitLines(t, 1); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// Validate takes gRPC and Docker checks as Consul does: a Docker check is
// a script check (it needs -enable-script-checks) with Args; a gRPC
// target is host:port[/service].
func TestValidateGRPCAndDocker(t *testing.T) {
	tests := []struct {
		name    string
		d       Definition
		scripts bool
		wantErr string
		wantTyp string
	}{
		{"grpc", Definition{GRPC: "127.0.0.1:9090", Interval: time.Second}, false, "", "grpc"},
		{"grpc service", Definition{GRPC: "127.0.0.1:9090/my.Svc", Interval: time.Second}, false, "", "grpc"},
		{"grpc no port", Definition{GRPC: "127.0.0.1", Interval: time.Second}, false, `GRPC="127.0.0.1" is not host:port or host:port/service`, ""},
		{"grpc and tcp", Definition{GRPC: "127.0.0.1:1", TCP: "127.0.0.1:2", Interval: time.Second}, false, "it sets TCP=", ""},
		{"grpc no interval", Definition{GRPC: "127.0.0.1:1"}, false, "Interval=0s: a gRPC check needs a positive Interval", ""},
		{"docker", Definition{DockerContainerID: "c1", Args: []string{"/check"}, Interval: time.Second}, true, "", "docker"},
		{"docker without script checks", Definition{DockerContainerID: "c1", Args: []string{"/check"}, Interval: time.Second}, false, "script checks are disabled on this agent; start it with -enable-script-checks", ""},
		{"docker without args", Definition{DockerContainerID: "c1", Interval: time.Second}, true, "a Docker check needs Args", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.d.ID = "x"
			err := tt.d.Validate(tt.scripts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.wantTyp != "" && tt.d.Type() != tt.wantTyp {
				t.Errorf("Type() = %q, want %q", tt.d.Type(), tt.wantTyp)
			}
		})
	}
}
