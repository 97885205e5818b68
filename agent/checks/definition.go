package checks

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Status is a check's health, as Consul spells it in its API.
type Status string

// The three statuses a check can have.
const (
	Passing  Status = "passing"
	Warning  Status = "warning"
	Critical Status = "critical"
)

func (s Status) valid() bool { return s == Passing || s == Warning || s == Critical }

const (
	// MinInterval is the shortest Interval a check runs at; Add raises a
	// shorter one to it and logs a warning, as Consul does (to avoid fork
	// bombing the host with script checks).
	MinInterval = time.Second

	// BufSize is how much of a check's output is kept by default: the last
	// 4 KiB of an HTTP body or a script's output, the first 4 KiB of a TTL
	// update's note (Consul's DefaultBufSize). Config.OutputMaxSize changes
	// it.
	BufSize = 4 * 1024

	// UserAgent is the User-Agent of HTTP checks unless the definition's
	// Header sets one. It is Consul's, so that services that special-case
	// Consul's health checks (in logs, in access rules) treat cairn's alike.
	UserAgent = "Consul Health Check"

	// defaultTimeout is how long an HTTP or TCP check may take when its
	// Timeout is 0 (Consul's 10s); defaultScriptTimeout the same for a
	// script check (Consul's 30s). Either is capped at the Interval.
	defaultTimeout       = 10 * time.Second
	defaultScriptTimeout = 30 * time.Second
)

// Definition describes one check, with the fields of Consul's check
// definition (the JSON of /v1/agent/check/register and of a service's
// "Check"/"Checks"). Exactly one of HTTP, TCP, TTL or Args says what kind
// of check it is; Validate says what is wrong with one.
//
// It is the only check definition in cairn: the HTTP API decodes into it,
// the catalog stores and persists it, and the Runner runs it, so a field
// added here reaches the prober without an adapter that could drop it
// (one did drop TLSServerName).
//
// A definition with none of HTTP, TCP, TTL or Args is a check with a fixed
// Status and Output, which only the catalog keeps (Consul's
// /v1/catalog/register); Validate and the Runner refuse it.
type Definition struct {
	// ID names the check on this agent; Add replaces a check with the same
	// ID. Required: Consul defaults it to Name, which is the caller's job.
	ID string
	// Name and Notes are for people; the runner only carries them.
	Name, Notes string
	// ServiceID is the service this check belongs to, or "" for a node
	// check. Only a service check can deregister its service
	// (DeregisterCriticalServiceAfter).
	ServiceID string

	// HTTP makes this an HTTP check of that URL (http:// or https://).
	HTTP string
	// Method is the HTTP check's method; "" means GET.
	Method string
	// Header is sent with every HTTP check request. A "Host" entry sets
	// the request's Host. Unless set here, User-Agent is UserAgent and
	// Accept is "text/plain, text/*, */*", as in Consul.
	Header map[string][]string
	// Body is sent with every HTTP check request.
	Body string
	// TLSServerName is the server name an https check sends (SNI) and
	// verifies the certificate against; "" means the URL's host, as in
	// Consul.
	TLSServerName string
	// TLSSkipVerify makes an https check accept any certificate.
	TLSSkipVerify bool

	// TCP makes this a TCP check: a connection to this host:port.
	TCP string

	// TTL makes this a TTL check: the application must report its status
	// (Runner.TTL) at least this often, or the check goes critical.
	TTL time.Duration

	// Args makes this a script check: Args[0] is run with Args[1:] as its
	// arguments, without a shell (use "sh", "-c", "..." for one). Refused
	// unless Config.EnableScriptChecks.
	Args []string

	// GRPC makes this a gRPC health check (grpc.health.v1.Health/Check)
	// of this address, "host:port" or "host:port/service" to ask about
	// one service; SERVING is passing, anything else critical.
	// GRPCUseTLS dials it with TLS (TLSServerName and TLSSkipVerify
	// apply).
	GRPC       string
	GRPCUseTLS bool

	// DockerContainerID makes a script check (Args) run inside that
	// container through the Docker engine's exec API, as Consul's Docker
	// checks do. Shell is Consul's field for its shell-string form; with
	// Args it is not used. Like any script check it needs
	// Config.EnableScriptChecks.
	DockerContainerID string
	Shell             string

	// Interval is how often an HTTP, TCP or script check runs, from the end
	// of one run to the start of the next. Required for those; it must be
	// 0 for a TTL check. Below MinInterval it is raised to MinInterval.
	Interval time.Duration
	// Timeout is how long one run may take before it counts as critical.
	// 0 means 10s (30s for a script check). It never exceeds Interval, so a
	// slow service cannot delay the next run.
	Timeout time.Duration

	// SuccessBeforePassing is how many passing (or warning) results in a
	// row an HTTP, TCP or script check needs before its status changes to
	// that result; FailuresBeforeCritical how many critical results in a
	// row before it turns critical, and FailuresBeforeWarning how many
	// before it turns warning on the way (0 means the same as
	// FailuresBeforeCritical, so no warning step). 0 and 1 mean "at once".
	// A failure resets the success count and a success the failure count.
	// As in Consul, the first result after Add is taken at once whatever the
	// thresholds: they damp changes, not the initial state. TTL checks
	// ignore them.
	SuccessBeforePassing, FailuresBeforeWarning, FailuresBeforeCritical int

	// DeregisterCriticalServiceAfter, when positive on a service check,
	// deregisters the service (Sink.DeregisterService) once the check has
	// been critical for this long without a break. Below
	// Config.MinDeregisterAfter (1m, Consul's check_deregister_interval_min)
	// it is raised to that.
	DeregisterCriticalServiceAfter time.Duration

	// Status is the check's status from Add until its first result: ""
	// means critical, as in Consul, so that a new service is not sent
	// traffic before its check has passed once.
	Status Status
	// Output is the check's output from Add until its first result. Only
	// a check with a fixed status, registered through Consul's
	// /v1/catalog/register, sets it: that is all it ever reports.
	Output string
}

// kind is what a check does; kindNone only for an invalid definition.
type kind int

const (
	kindNone kind = iota
	kindHTTP
	kindTCP
	kindTTL
	kindScript
	kindGRPC
	kindDocker
)

func (k kind) String() string {
	switch k {
	case kindHTTP:
		return "http"
	case kindTCP:
		return "tcp"
	case kindTTL:
		return "ttl"
	case kindScript:
		return "script"
	case kindGRPC:
		return "grpc"
	case kindDocker:
		return "docker"
	}
	return ""
}

func (d Definition) kind() kind {
	switch {
	case d.HTTP != "":
		return kindHTTP
	case d.TCP != "":
		return kindTCP
	case d.TTL != 0:
		return kindTTL
	case d.GRPC != "":
		return kindGRPC
	case d.DockerContainerID != "":
		return kindDocker
	case len(d.Args) > 0:
		return kindScript
	}
	return kindNone
}

// Type is the check's type as Consul's /v1/agent/checks reports it:
// "http", "tcp", "ttl", "script", "grpc" or "docker". It is "" when no type is set, and
// meaningful only for a definition that Validate accepts.
func (d Definition) Type() string { return d.kind().String() }

// Validate reports the first thing wrong with d: what is wrong, with the
// value given and what to do. enableScriptChecks is the agent's
// -enable-script-checks; without it a script check (Args) is refused.
//
// Validate follows Consul's rules (CheckType.Validate) and adds a few of
// its own that Consul only discovers when the check runs (a URL that is
// not one, a TCP address without a port). Like Consul it accepts an
// Interval below MinInterval (Add raises it) and a
// DeregisterCriticalServiceAfter on a node check (it is ignored there).
func (d Definition) Validate(enableScriptChecks bool) error {
	if d.ID == "" {
		return fmt.Errorf("check has no ID; set ID (Consul uses the check's Name when ID is empty)")
	}
	if err := d.validate(enableScriptChecks); err != nil {
		return fmt.Errorf("check %q: %s", d.ID, err)
	}
	return nil
}

func (d Definition) validate(enableScriptChecks bool) error {
	// Exactly one type.
	var set []string
	if d.HTTP != "" {
		set = append(set, fmt.Sprintf("HTTP=%q", d.HTTP))
	}
	if d.TCP != "" {
		set = append(set, fmt.Sprintf("TCP=%q", d.TCP))
	}
	if d.TTL != 0 {
		set = append(set, fmt.Sprintf("TTL=%s", d.TTL))
	}
	if d.GRPC != "" {
		set = append(set, fmt.Sprintf("GRPC=%q", d.GRPC))
	}
	if len(d.Args) > 0 || d.DockerContainerID != "" {
		set = append(set, fmt.Sprintf("Args=%q", d.Args))
	}
	switch len(set) {
	case 0:
		return fmt.Errorf("no check type: set exactly one of HTTP, TCP, TTL, GRPC or Args (with Interval for all but TTL)")
	case 1:
	default:
		return fmt.Errorf("it sets %s; a check has exactly one of HTTP, TCP, TTL, GRPC or Args", andList(set))
	}

	k := d.kind()
	switch k {
	case kindHTTP:
		if err := validateURL(d.HTTP); err != nil {
			return err
		}
		if d.Method != "" && !isToken(d.Method) {
			return fmt.Errorf("Method=%q is not an HTTP method; use one like GET, HEAD or POST, or leave it empty for GET", d.Method)
		}
	case kindTCP:
		if _, _, err := net.SplitHostPort(d.TCP); err != nil {
			return fmt.Errorf("TCP=%q is not host:port (%v); give an address like 127.0.0.1:6379", d.TCP, unwrapAddrErr(err))
		}
	case kindTTL:
		if d.TTL < 0 {
			return fmt.Errorf("TTL=%s is negative; a TTL check needs a positive TTL, such as 30s", d.TTL)
		}
		if d.Interval != 0 {
			return fmt.Errorf("TTL=%s and Interval=%s are both set; a TTL check is updated by the application, not run on an interval: drop Interval", d.TTL, d.Interval)
		}
	case kindScript:
		if !enableScriptChecks {
			return fmt.Errorf("Args=%q is a script check, but script checks are disabled on this agent; start it with -enable-script-checks", d.Args)
		}
		if d.Args[0] == "" {
			return fmt.Errorf("Args=%q: Args[0] is empty; it must name the program to run, like [\"/usr/local/bin/check_mem\", \"-w\", \"80\"]", d.Args)
		}
	case kindGRPC:
		if err := validateGRPC(d.GRPC); err != nil {
			return err
		}
	case kindDocker:
		if !enableScriptChecks {
			return fmt.Errorf("DockerContainerID=%q is a Docker (script) check, but script checks are disabled on this agent; start it with -enable-script-checks", d.DockerContainerID)
		}
		if len(d.Args) == 0 || d.Args[0] == "" {
			return fmt.Errorf("DockerContainerID=%q with Args=%q: a Docker check needs Args, the command to run in the container, like [\"/bin/check\", \"-q\"]", d.DockerContainerID, d.Args)
		}
	}
	if k != kindTTL && d.Interval <= 0 {
		return fmt.Errorf("Interval=%s: %s check needs a positive Interval (how often to run it), such as 10s", d.Interval, k.described())
	}
	if d.Timeout < 0 {
		return fmt.Errorf("Timeout=%s is negative; use 0 for the default (10s, 30s for a script check)", d.Timeout)
	}
	for _, f := range []struct {
		name string
		n    int
	}{
		{"SuccessBeforePassing", d.SuccessBeforePassing},
		{"FailuresBeforeWarning", d.FailuresBeforeWarning},
		{"FailuresBeforeCritical", d.FailuresBeforeCritical},
	} {
		if f.n < 0 {
			return fmt.Errorf("%s=%d is negative; use 0 to change status on the first such result", f.name, f.n)
		}
	}
	if d.FailuresBeforeWarning > d.FailuresBeforeCritical {
		return fmt.Errorf("FailuresBeforeWarning=%d is more than FailuresBeforeCritical=%d; a check warns before it goes critical, so use at most %d (0 means no warning step)",
			d.FailuresBeforeWarning, d.FailuresBeforeCritical, d.FailuresBeforeCritical)
	}
	if d.DeregisterCriticalServiceAfter < 0 {
		return fmt.Errorf("DeregisterCriticalServiceAfter=%s is negative; use 0 to never deregister the service", d.DeregisterCriticalServiceAfter)
	}
	if d.Status != "" && !d.Status.valid() {
		return fmt.Errorf("Status=%q is not a check status; use passing, warning or critical (empty means critical)", d.Status)
	}
	return nil
}

func validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL; say it once.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return fmt.Errorf("HTTP=%q is not a URL (%v); give one like http://127.0.0.1:8080/health", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("HTTP=%q is not an http:// or https:// URL; give one like http://127.0.0.1:8080/health", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("HTTP=%q has no host; give a URL like http://127.0.0.1:8080/health", raw)
	}
	return nil
}

// unwrapAddrErr drops net.AddrError's repetition of the address.
func unwrapAddrErr(err error) string {
	if ae, ok := err.(*net.AddrError); ok {
		return ae.Err
	}
	return err.Error()
}

// isToken reports whether s is an RFC 9110 token, which a method must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// described names the kind in a sentence: "an HTTP", "a script".
func (k kind) described() string {
	switch k {
	case kindHTTP:
		return "an HTTP"
	case kindTCP:
		return "a TCP"
	case kindTTL:
		return "a TTL"
	case kindScript:
		return "a script"
	case kindGRPC:
		return "a gRPC"
	case kindDocker:
		return "a Docker"
	}
	return "a"
}

// andList joins "a", "b", "c" as "a, b and c".
func andList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// clone returns a deep copy of d, so that the caller may reuse its maps
// and slices after Add.
func (d Definition) clone() Definition {
	if d.Header != nil {
		d.Header = map[string][]string(http.Header(d.Header).Clone())
	}
	d.Args = slices.Clone(d.Args)
	return d
}
