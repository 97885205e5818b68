package registrator

import (
	"os"
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
