package registrator

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDecodeInspectAPI141 decodes what engine 20.10 (API 1.41) answers
// for a container on a user-defined network plus the default bridge, with
// one published and one unpublished port (testdata: docker inspect of a
// real container), and builds its services.
func TestDecodeInspectAPI141(t *testing.T) {
	raw, err := os.ReadFile("testdata/inspect-api1.41.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := decodeInspect(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "/regsmoke-fixture" || c.HostConfig.NetworkMode != "regsmoke-net" || c.NetworkSettings.IPAddress != "172.17.0.25" ||
		c.NetworkSettings.Networks["regsmoke-net"].IPAddress != "172.21.0.2" || !c.State.Running || c.State.Health != "" {
		t.Errorf("decoded %+v", c)
	}
	if d := cmp.Diff(map[string][]PortBinding{"53/udp": nil, "8080/tcp": {{HostIP: "127.0.0.1", HostPort: "18080"}}}, c.NetworkSettings.Ports); d != "" {
		t.Errorf("Ports (-want +got):\n%s", d)
	}
	got, err := testModel().buildServices(c, inputs{})
	if err != nil {
		t.Fatal(err)
	}
	// Upstream's rule for user-defined networks: the container's address
	// on it, with the published port.
	want := []*Service{{ID: "host1:regsmoke-fixture:8080", Name: "fixture", Address: "172.21.0.2", Port: 18080, Tags: []string{"x"},
		ContainerID: c.ID, ContainerName: "regsmoke-fixture", ExposedPort: "8080", PortType: "tcp"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("services (-want +got):\n%s", d)
	}
}

// TestDecodeInspectRestarting decodes what the engine answers right after
// die for a container with a restart policy: running and restarting at
// once, its ports released.
func TestDecodeInspectRestarting(t *testing.T) {
	c, err := decodeInspect([]byte(`{"Id":"abc","Name":"/web1",
		"State":{"Status":"restarting","Running":true,"Paused":false,"Restarting":true,"ExitCode":1},
		"Config":{"Image":"web:1","ExposedPorts":{"80/tcp":{}},"StopTimeout":20},
		"HostConfig":{"NetworkMode":"bridge"},
		"NetworkSettings":{"IPAddress":"","Ports":{},"Networks":{"bridge":{"IPAddress":""}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (State{Running: true, Restarting: true, ExitCode: 1}); c.State != want {
		t.Errorf("State = %+v, want %+v", c.State, want)
	}
	if c.Config.StopTimeout == nil || *c.Config.StopTimeout != 20 {
		t.Errorf("Config.StopTimeout = %v, want 20", c.Config.StopTimeout)
	}
}

// fakeDockerAPI serves the few engine endpoints DockerEngine uses, as an
// API 1.41 engine does: events are streamed from the events channel.
func fakeDockerAPI(t *testing.T, events <-chan string, inspect []byte) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		io.WriteString(w, "OK")
	})
	mux.HandleFunc("/v1.41/events", func(w http.ResponseWriter, r *http.Request) {
		if got := r.URL.Query().Get("filters"); got != `{"type":{"container":true,"network":true}}` {
			t.Errorf("events filters = %s", got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					return // the engine went away
				}
				io.WriteString(w, ev+"\n")
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("/v1.41/containers/json", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("all") != "1" {
			t.Errorf("container list without all=1: %s", r.URL)
		}
		io.WriteString(w, `[{"Id":"aaa"},{"Id":"bbb"}]`)
	})
	mux.HandleFunc("/v1.41/containers/aaa/json", func(w http.ResponseWriter, r *http.Request) { w.Write(inspect) })
	mux.HandleFunc("/v1.41/containers/gone/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"message":"No such container: gone"}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String()
}

func TestDockerEngineOverTheAPI(t *testing.T) {
	raw, err := os.ReadFile("testdata/inspect-api1.41.json")
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan string, 10)
	t.Setenv("DOCKER_HOST", "")
	e, err := NewDockerEngine(fakeDockerAPI(t, events, raw))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := t.Context()

	ids, err := e.ContainerList(ctx)
	if err != nil || strings.Join(ids, ",") != "aaa,bbb" {
		t.Errorf("ContainerList = %v, %v", ids, err)
	}
	c, err := e.ContainerInspect(ctx, "aaa")
	if err != nil || c.Name != "/regsmoke-fixture" {
		t.Errorf("ContainerInspect(aaa) = %+v, %v", c, err)
	}
	if _, err := e.ContainerInspect(ctx, "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ContainerInspect(gone) = %v, want ErrNotFound", err)
	}

	s, err := e.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	events <- `{"Type":"container","Action":"start","Actor":{"ID":"aaa","Attributes":{"name":"web1"}},"time":1}`
	events <- `{"Type":"network","Action":"create","Actor":{"ID":"n1","Attributes":{"name":"net"}},"time":2}`
	events <- `{"Type":"network","Action":"connect","Actor":{"ID":"n1","Attributes":{"container":"aaa","name":"net"}},"time":3}`
	events <- `{"Type":"container","Action":"health_status: healthy","Actor":{"ID":"aaa"},"time":4}`
	close(events) // the engine restarts: the stream ends with an error
	var got []string
	for ev := range s.C() {
		got = append(got, ev.Action+" "+ev.ID)
	}
	want := []string{"start aaa", "network:connect aaa", "health_status: healthy aaa"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if s.Err() == nil {
		t.Errorf("stream ended without an error")
	}
}
