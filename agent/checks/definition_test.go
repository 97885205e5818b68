package checks

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	httpCheck := Definition{ID: "web", HTTP: "http://127.0.0.1:8080/health", Interval: 10 * time.Second}
	for _, tc := range []struct {
		name    string
		def     Definition
		scripts bool // -enable-script-checks
		wantErr string
	}{
		{"http", httpCheck, false, ""},
		{"tcp", Definition{ID: "db", TCP: "127.0.0.1:5432", Interval: time.Second}, false, ""},
		{"ttl", Definition{ID: "app", TTL: 30 * time.Second}, false, ""},
		{"script enabled", Definition{ID: "mem", Args: []string{"/usr/local/bin/check_mem"}, Interval: time.Minute}, true, ""},
		{"interval below the minimum is raised, not refused", Definition{ID: "db", TCP: "db:5432", Interval: time.Millisecond}, false, ""},
		{"everything", Definition{ID: "web", ServiceID: "web", HTTP: "https://web/health", Method: "POST",
			Header: map[string][]string{"X-Token": {"t"}}, Body: "{}", TLSSkipVerify: true, Interval: 5 * time.Second,
			Timeout: time.Second, SuccessBeforePassing: 2, FailuresBeforeWarning: 1, FailuresBeforeCritical: 3,
			DeregisterCriticalServiceAfter: time.Hour, Status: Passing}, false, ""},

		{"no ID", Definition{TTL: time.Minute}, false,
			"check has no ID; set ID (Consul uses the check's Name when ID is empty)"},
		{"no type", Definition{ID: "web", Interval: 10 * time.Second}, false,
			`check "web": no check type: set exactly one of HTTP, TCP, TTL, GRPC or Args (with Interval for all but TTL)`},
		{"two types", Definition{ID: "web", HTTP: "http://web/", TCP: "web:80", Interval: time.Second}, false,
			`check "web": it sets HTTP="http://web/" and TCP="web:80"; a check has exactly one of HTTP, TCP, TTL, GRPC or Args`},
		{"three types", Definition{ID: "web", HTTP: "http://web/", TTL: time.Minute, Args: []string{"true"}}, true,
			`check "web": it sets HTTP="http://web/", TTL=1m0s and Args=["true"]; a check has exactly one of HTTP, TCP, TTL, GRPC or Args`},
		{"script checks disabled", Definition{ID: "mem", Args: []string{"sh", "-c", "exit 0"}, Interval: time.Minute}, false,
			`check "mem": Args=["sh" "-c" "exit 0"] is a script check, but script checks are disabled on this agent; start it with -enable-script-checks`},
		{"empty program", Definition{ID: "mem", Args: []string{"", "-w"}, Interval: time.Minute}, true,
			`check "mem": Args=["" "-w"]: Args[0] is empty; it must name the program to run, like ["/usr/local/bin/check_mem", "-w", "80"]`},
		{"http without interval", Definition{ID: "web", HTTP: "http://web/"}, false,
			`check "web": Interval=0s: an HTTP check needs a positive Interval (how often to run it), such as 10s`},
		{"tcp with negative interval", Definition{ID: "db", TCP: "db:5432", Interval: -time.Second}, false,
			`check "db": Interval=-1s: a TCP check needs a positive Interval (how often to run it), such as 10s`},
		{"script without interval", Definition{ID: "mem", Args: []string{"true"}}, true,
			`check "mem": Interval=0s: a script check needs a positive Interval (how often to run it), such as 10s`},
		{"ttl with interval", Definition{ID: "app", TTL: 30 * time.Second, Interval: 10 * time.Second}, false,
			`check "app": TTL=30s and Interval=10s are both set; a TTL check is updated by the application, not run on an interval: drop Interval`},
		{"negative ttl", Definition{ID: "app", TTL: -5 * time.Second}, false,
			`check "app": TTL=-5s is negative; a TTL check needs a positive TTL, such as 30s`},
		{"url does not parse", Definition{ID: "web", HTTP: "http://web:port/", Interval: time.Second}, false,
			`check "web": HTTP="http://web:port/" is not a URL (invalid port ":port" after host); give one like http://127.0.0.1:8080/health`},
		{"url without scheme", Definition{ID: "web", HTTP: "127.0.0.1:8080/health", Interval: time.Second}, false,
			`check "web": HTTP="127.0.0.1:8080/health" is not a URL (first path segment in URL cannot contain colon); give one like http://127.0.0.1:8080/health`},
		{"url of another scheme", Definition{ID: "web", HTTP: "ftp://web/health", Interval: time.Second}, false,
			`check "web": HTTP="ftp://web/health" is not an http:// or https:// URL; give one like http://127.0.0.1:8080/health`},
		{"url without host", Definition{ID: "web", HTTP: "http:///health", Interval: time.Second}, false,
			`check "web": HTTP="http:///health" has no host; give a URL like http://127.0.0.1:8080/health`},
		{"bad method", Definition{ID: "web", HTTP: "http://web/", Method: "GE T", Interval: time.Second}, false,
			`check "web": Method="GE T" is not an HTTP method; use one like GET, HEAD or POST, or leave it empty for GET`},
		{"tcp without port", Definition{ID: "db", TCP: "db", Interval: time.Second}, false,
			`check "db": TCP="db" is not host:port (missing port in address); give an address like 127.0.0.1:6379`},
		{"negative timeout", Definition{ID: "web", HTTP: "http://web/", Interval: time.Second, Timeout: -time.Second}, false,
			`check "web": Timeout=-1s is negative; use 0 for the default (10s, 30s for a script check)`},
		{"negative success threshold", Definition{ID: "web", HTTP: "http://web/", Interval: time.Second, SuccessBeforePassing: -1}, false,
			`check "web": SuccessBeforePassing=-1 is negative; use 0 to change status on the first such result`},
		{"negative failure threshold", Definition{ID: "web", HTTP: "http://web/", Interval: time.Second, FailuresBeforeCritical: -2}, false,
			`check "web": FailuresBeforeCritical=-2 is negative; use 0 to change status on the first such result`},
		{"warning after critical", Definition{ID: "web", HTTP: "http://web/", Interval: time.Second, FailuresBeforeWarning: 5, FailuresBeforeCritical: 3}, false,
			`check "web": FailuresBeforeWarning=5 is more than FailuresBeforeCritical=3; a check warns before it goes critical, so use at most 3 (0 means no warning step)`},
		{"negative deregister", Definition{ID: "web", TTL: time.Minute, DeregisterCriticalServiceAfter: -time.Minute}, false,
			`check "web": DeregisterCriticalServiceAfter=-1m0s is negative; use 0 to never deregister the service`},
		{"unknown status", Definition{ID: "web", TTL: time.Minute, Status: "ok"}, false,
			`check "web": Status="ok" is not a check status; use passing, warning or critical (empty means critical)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.def.Validate(tc.scripts)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.wantErr {
				t.Errorf("Validate(%s) error\n got %q\nwant %q", tc.name, got, tc.wantErr)
			}
		})
	}
}

func TestType(t *testing.T) {
	for _, tc := range []struct {
		def  Definition
		want string
	}{
		{Definition{HTTP: "http://web/"}, "http"},
		{Definition{TCP: "db:1"}, "tcp"},
		{Definition{TTL: time.Second}, "ttl"},
		{Definition{Args: []string{"true"}}, "script"},
		{Definition{}, ""},
	} {
		if got := tc.def.Type(); got != tc.want {
			t.Errorf("%+v.Type() = %q, want %q", tc.def, got, tc.want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"no sink", func(c *Config) { c.Sink = nil },
			"checks: Config.Sink is nil; the runner needs somewhere to report check results (the catalog)"},
		{"negative output size", func(c *Config) { c.OutputMaxSize = -1 },
			"checks: OutputMaxSize=-1 is negative; use 0 for the default (4096 bytes)"},
		{"negative deregister minimum", func(c *Config) { c.MinDeregisterAfter = -time.Second },
			"checks: MinDeregisterAfter=-1s is negative; use 0 for the default (1m)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, newRecorder(false))
			tc.change(&cfg)
			_, err := New(cfg)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("New(%s) error\n got %v\nwant %q", tc.name, err, tc.wantErr)
			}
		})
	}
}

func TestZeroConfigMeansDefaults(t *testing.T) {
	got, err := Config{Sink: newRecorder(false)}.validate()
	if err != nil {
		t.Fatal(err)
	}
	if got.OutputMaxSize != BufSize || got.MinDeregisterAfter != time.Minute || got.DialContext == nil || got.Logger == nil {
		t.Errorf("Config{Sink}.validate() = %+v; want OutputMaxSize 4096, MinDeregisterAfter 1m, a dialer and a logger", got)
	}
}

func TestAddRejectsInvalidDefinition(t *testing.T) {
	rec := newRecorder(false)
	cfg := testConfig(t, rec)
	cfg.EnableScriptChecks = false
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Add(Definition{ID: "mem", Args: []string{"true"}, Interval: time.Second})
	if err == nil || !strings.Contains(err.Error(), "start it with -enable-script-checks") {
		t.Errorf("Add(script check) on an agent without script checks = %v, want the -enable-script-checks error", err)
	}
}
