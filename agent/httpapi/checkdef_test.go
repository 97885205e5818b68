package httpapi_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
)

// recordingRunner is the catalog's Runner: it records the definitions the
// catalog hands to the prober (the agent passes them to checks.Runner.Add
// as they are) and says when one arrives.
type recordingRunner struct {
	mu    sync.Mutex
	defs  map[string]checks.Definition
	added chan struct{} // receives after every Add
}

func newRecordingRunner() *recordingRunner {
	return &recordingRunner{defs: map[string]checks.Definition{}, added: make(chan struct{}, 100)}
}

func (r *recordingRunner) Add(d checks.Definition) error {
	r.mu.Lock()
	r.defs[d.ID] = d
	r.mu.Unlock()
	r.added <- struct{}{}
	return nil
}
func (r *recordingRunner) Remove(string)                    {}
func (r *recordingRunner) TTL(id, status, out string) error { return nil }

// wait returns the definition of check id once the runner has it.
func (r *recordingRunner) wait(t *testing.T, id string) checks.Definition {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		d, ok := r.defs[id]
		r.mu.Unlock()
		if ok {
			return d
		}
		select {
		case <-r.added:
		case <-deadline:
			t.Fatalf("the runner was never given check %q", id)
		}
	}
}

// checkFieldRules says what becomes of each field of Consul's check JSON
// (api.AgentServiceCheck, and api.AgentCheckRegistration's own fields).
// A field missing here fails TestEveryCheckFieldReachesTheProber, so a new
// field of the official client cannot be forgotten.
var checkFieldRules = map[string]struct {
	to     string // the checks.Definition field it reaches, if it is carried
	refuse bool   // registering it answers 400: cairn cannot run that check
	why    string // why it is neither carried nor refused
}{
	"ID": {to: "ID"}, "CheckID": {to: "ID"}, "Name": {to: "Name"}, "Notes": {to: "Notes"},
	"ServiceID": {to: "ServiceID"}, "Status": {to: "Status"},
	"HTTP": {to: "HTTP"}, "Header": {to: "Header"}, "Method": {to: "Method"}, "Body": {to: "Body"},
	"TLSServerName": {to: "TLSServerName"}, "TLSSkipVerify": {to: "TLSSkipVerify"},
	"TCP": {to: "TCP"}, "TTL": {to: "TTL"}, "Args": {to: "Args"},
	"Interval": {to: "Interval"}, "Timeout": {to: "Timeout"},
	"SuccessBeforePassing":           {to: "SuccessBeforePassing"},
	"FailuresBeforeWarning":          {to: "FailuresBeforeWarning"},
	"FailuresBeforeCritical":         {to: "FailuresBeforeCritical"},
	"DeregisterCriticalServiceAfter": {to: "DeregisterCriticalServiceAfter"},

	"GRPC": {to: "GRPC"}, "GRPCUseTLS": {to: "GRPCUseTLS"},
	"DockerContainerID": {to: "DockerContainerID"}, "Shell": {to: "Shell"},

	"TCPUseTLS": {refuse: true}, "UDP": {refuse: true},
	"H2PING": {refuse: true}, "AliasNode": {refuse: true}, "AliasService": {refuse: true},

	"H2PingUseTLS":      {why: "Consul uses it only with H2PING, which is refused"},
	"Namespace":         {why: "Consul Enterprise; one namespace in cairn"},
	"Partition":         {why: "Consul Enterprise; one partition in cairn"},
	"AgentServiceCheck": {why: "embedded; its fields are listed one by one"},
}

// notFromCheckJSON are the checks.Definition fields that Consul's check
// JSON does not set: the catalog fills them in.
var notFromCheckJSON = map[string]string{
	"Output": "only catalog registrations (/v1/catalog/register) set an initial output",
}

// TestEveryCheckFieldReachesTheProber registers checks through the agent
// API with the official client, every field set, and compares what the
// catalog hands to the check runner with what was sent. The agent once
// copied the definition field by field and dropped TLSServerName, so that
// HTTPS checks probed with an empty SNI.
func TestEveryCheckFieldReachesTheProber(t *testing.T) {
	t.Parallel()
	// Every field of the official client's check JSON has a rule, and
	// every field of the definition comes from one (or is explained).
	reached := map[string]bool{}
	for _, typ := range []reflect.Type{reflect.TypeFor[api.AgentServiceCheck](), reflect.TypeFor[api.AgentCheckRegistration]()} {
		for f := range typ.Fields() {
			rule, ok := checkFieldRules[f.Name]
			if !ok {
				t.Errorf("%s.%s has no rule in checkFieldRules: carry it to checks.Definition, refuse it with a 400, or say why neither", typ.Name(), f.Name)
			}
			if rule.to != "" {
				reached[rule.to] = true
			}
		}
	}
	for f := range reflect.TypeFor[checks.Definition]().Fields() {
		if !reached[f.Name] && notFromCheckJSON[f.Name] == "" {
			t.Errorf("checks.Definition.%s is set by no field of Consul's check JSON; map one to it in checkFieldRules or explain it in notFromCheckJSON", f.Name)
		}
	}

	ta, cat := newCatalogAPI(t, func(c *catalog.Config) { c.EnableScriptChecks = true })
	run := newRecordingRunner()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cat.Run(ctx, nil, run) }()
	t.Cleanup(func() { cancel(); <-done })

	// One check of each type, together setting every carried field to a
	// value that is not its zero.
	header := map[string][]string{"X-Probe": {"a", "b"}}
	serviceChecks := []*api.AgentServiceCheck{
		{CheckID: "http", Name: "http check", Notes: "n-http", Status: "warning",
			HTTP: "https://10.0.0.1:8443/health", Header: header, Method: "POST", Body: `{"deep":true}`,
			TLSServerName: "web.internal", TLSSkipVerify: true, Interval: "7s", Timeout: "3s",
			SuccessBeforePassing: 2, FailuresBeforeWarning: 3, FailuresBeforeCritical: 4,
			DeregisterCriticalServiceAfter: "90m"},
		{CheckID: "tcp", Name: "tcp check", TCP: "10.0.0.1:5432", Interval: "11s"},
		{CheckID: "ttl", Name: "ttl check", TTL: "45s", Status: "passing"},
		{CheckID: "script", Name: "script check", Args: []string{"/bin/check", "-w", "80"}, Interval: "13s"},
		{CheckID: "grpc", Name: "grpc check", GRPC: "10.0.0.1:9090/web", GRPCUseTLS: true, Interval: "19s"},
		{CheckID: "docker", Name: "docker check", DockerContainerID: "3df1ab6e16cf", Shell: "/bin/bash", Args: []string{"/bin/check"}, Interval: "23s"},
	}
	if err := ta.client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 8443, Checks: serviceChecks}); err != nil {
		t.Fatalf("ServiceRegister: %v", err)
	}
	nodeCheck := &api.AgentCheckRegistration{ID: "reg", Name: "registered", Notes: "n-reg", ServiceID: "web-1",
		AgentServiceCheck: api.AgentServiceCheck{HTTP: "http://10.0.0.1:8080/", Interval: "17s"}}
	if err := ta.client.Agent().CheckRegister(nodeCheck); err != nil {
		t.Fatalf("CheckRegister: %v", err)
	}

	sent := map[string]reflect.Value{}
	for _, c := range serviceChecks {
		sent[c.CheckID] = reflect.ValueOf(*c)
	}
	sent["reg"] = reflect.ValueOf(*nodeCheck)
	seen := map[string]bool{}
	for id, in := range sent {
		got := run.wait(t, id)
		gotV := reflect.ValueOf(got)
		for name, rule := range checkFieldRules {
			if rule.to == "" {
				continue
			}
			f := in.FieldByName(name) // invalid when that struct has no such field
			if !f.IsValid() || f.IsZero() {
				continue
			}
			seen[name] = true
			want := f.Interface()
			if s, ok := want.(string); ok && gotV.FieldByName(rule.to).Type() == reflect.TypeFor[time.Duration]() {
				d, err := time.ParseDuration(s)
				if err != nil {
					t.Fatalf("test value %s=%q: %v", name, s, err)
				}
				want = d
			}
			gotF := gotV.FieldByName(rule.to)
			if gotF.Kind() == reflect.String {
				gotF = reflect.ValueOf(gotF.String()) // checks.Status is a string
			}
			if diff := cmp.Diff(want, gotF.Interface()); diff != "" {
				t.Errorf("check %q: %s sent as %v reached the runner as %s=%v (-sent +runner):\n%s", id, name, f.Interface(), rule.to, gotF.Interface(), diff)
			}
		}
	}
	for name, rule := range checkFieldRules {
		if rule.to != "" && !seen[name] && name != "CheckID" && name != "ID" {
			// CheckID and ID both become ID; one of them is enough.
			t.Errorf("no test check sets %s; give one of them a value for it", name)
		}
	}
	if !seen["CheckID"] || !seen["ID"] {
		t.Errorf("the test checks must set both CheckID (a service's check) and ID (a registered check)")
	}

	// The refused fields answer 400, each with its name.
	for name, rule := range checkFieldRules {
		if !rule.refuse {
			continue
		}
		t.Run("refuses "+name, func(t *testing.T) {
			c := api.AgentServiceCheck{CheckID: "x", TTL: "10s"}
			f := reflect.ValueOf(&c).Elem().FieldByName(name)
			switch f.Kind() {
			case reflect.String:
				f.SetString("v")
			case reflect.Bool:
				f.SetBool(true)
			default:
				t.Fatalf("%s is a %s; set it here", name, f.Kind())
			}
			err := ta.client.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "refused", Check: &c})
			if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), name) {
				t.Errorf("ServiceRegister with %s set = %v, want a 400 that names %s", name, err, name)
			}
		})
	}
}
