package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/catalogtxn"
	"github.com/cairn-dev/cairn/agent/logging"
	"github.com/cairn-dev/cairn/kv"
)

// Store is what the HTTP API needs from the replicated store: a *kv.Server
// on server agents, a forwarder to the servers on client agents. Methods
// are called from request goroutines, concurrently; the read methods block
// for Consul's blocking queries until ctx is done or q.MaxWait runs out.
type Store interface {
	Get(ctx context.Context, q kv.QueryOptions, key string) (kv.QueryMeta, *kv.Entry, error)
	List(ctx context.Context, q kv.QueryOptions, prefix string) (kv.QueryMeta, []*kv.Entry, error)
	Keys(ctx context.Context, q kv.QueryOptions, prefix, separator string) (kv.QueryMeta, []string, error)
	Apply(ctx context.Context, op kv.Op) (bool, error)
	Txn(ctx context.Context, q kv.QueryOptions, ops []kv.Op) (kv.QueryMeta, []kv.TxnResult, []kv.TxnError, error)

	CreateSession(ctx context.Context, s kv.Session) (string, error)
	DestroySession(ctx context.Context, id string) error
	RenewSession(ctx context.Context, id string) (*kv.Session, error)
	SessionInfo(ctx context.Context, q kv.QueryOptions, id string) (kv.QueryMeta, *kv.Session, error)
	Sessions(ctx context.Context, q kv.QueryOptions) (kv.QueryMeta, []*kv.Session, error)
	NodeSessions(ctx context.Context, q kv.QueryOptions, node string) (kv.QueryMeta, []*kv.Session, error)

	// Leader is the Raft leader's address, "" when there is none.
	Leader() string
	// Peers are the Raft addresses of the voting servers.
	Peers() ([]string, error)
}

// Config configures the handler; zero values mean defaults.
type Config struct {
	// Store answers every KV, txn, session and status request. Required.
	Store Store
	// Self holds the facts /v1/agent/self reports.
	Self Self
	// Cluster answers /v1/agent/members, join, leave, force-leave and
	// /v1/operator/raft/configuration. Optional: without it those
	// endpoints answer 500.
	Cluster Cluster
	// Catalog answers /v1/catalog, /v1/health and this agent's services
	// and checks (/v1/agent/service*, /v1/agent/check*). Optional:
	// without it those endpoints answer 500.
	Catalog Catalog
	// Events answers /v1/event/fire and /v1/event/list. Optional:
	// without it those endpoints answer 500.
	Events Events
	// Coordinates answers /v1/coordinate/* and ?near=. Optional:
	// without it /v1/coordinate/* answers 500 and ?near= sorts nothing.
	Coordinates Coordinates
	// PreparedQueries answers /v1/query. Optional: without it those
	// endpoints answer 500.
	PreparedQueries PreparedQueries
	// Autopilot answers /v1/operator/autopilot/health. Optional:
	// without it that endpoint answers 500.
	Autopilot Autopilot
	// ConnectRoot is the Connect CA root that /v1/agent/connect/ca/roots
	// answers (nil: an empty list), TrustDomain its trust domain.
	ConnectRoot *CARoot
	TrustDomain string
	// Logger gets one line per failed request (5xx) and per recovered
	// panic; nil discards.
	Logger *slog.Logger
	// Ops answers the operator endpoints (ops.go); optional.
	Ops Ops
	// Keyring answers /v1/operator/keyring (keyring.go); optional.
	Keyring Keyring
	// CatalogTxn commits the /v1/txn transactions that have catalog
	// operations (txn_atomic.go); the agent runs its recovery loop.
	// Optional: without it, one over Catalog without recovery.
	CatalogTxn *catalogtxn.Coordinator
	// ACLSystem answers /v1/acl/* and /v1/agent/token/* (acl.go); nil
	// when ACLs are off.
	ACLSystem *ACLSystem
	// ACL resolves the request's token to what it may do; every endpoint
	// checks before it acts (enforce.go). nil: ACLs are off and
	// everything is allowed.
	ACL acl.Resolver
	// EnableKeyListPolicy is Consul's acl.enable_key_list_policy: ?recurse
	// and ?keys also need "list" on the prefix (otherwise, as in Consul,
	// they only drop the keys the token cannot read).
	EnableKeyListPolicy bool
}

// Self is what the agent knows about itself, for /v1/agent/self.
type Self struct {
	NodeName   string
	NodeID     string
	Datacenter string // default "dc1"
	Version    string
	Revision   string
	Server     bool
	BindAddr   string

	// ClientAddr is the IP of the HTTP API and DNS; NodeMeta the node's
	// meta (Consul's own keys included); BootstrapExpect and
	// EnableScriptChecks as configured.
	ClientAddr         string
	NodeMeta           map[string]string
	BootstrapExpect    int
	EnableScriptChecks bool

	SerfLANPort int
	HTTPPort    int
	DNSPort     int
	ServerPort  int

	// Stats, when set, adds sections to /v1/agent/self's Stats (e.g.
	// "vip": the VIP allocator's state); called once per request.
	Stats func() map[string]map[string]string
}

// DefaultDatacenter is Consul's default datacenter name.
const DefaultDatacenter = "dc1"

// handler routes /v1/* requests to the endpoint functions.
type handler struct {
	store       Store
	cluster     Cluster                 // nil when the agent has none
	catalog     Catalog                 // nil when the agent has none
	events      Events                  // nil when the agent has none
	coordinates Coordinates             // nil when the agent has none
	queries     PreparedQueries         // nil when the agent has none
	autopilot   Autopilot               // nil when the agent has none
	txns        *catalogtxn.Coordinator // nil when the catalog keeps no transaction ledger
	keyring     Keyring                 // nil when the agent has none
	self        Self
	log         *slog.Logger
	ops         Ops
	routes      []route
	acls        *ACLSystem  // nil when ACLs are off
	answers     answerCache // encoded catalog answers (answercache.go)

	connectRoot *CARoot
	trustDomain string

	acl           acl.Resolver // nil: ACLs off
	keyListPolicy bool
}

// route is one Consul endpoint. A path ending in "/" (other than "/"
// itself) matches every path under it and passes the rest to fn as call.arg (Consul registers them
// the same way on its ServeMux); any other path matches exactly.
type route struct {
	path    string
	methods []string
	fn      func(c *call) error
}

// call is one request as the endpoint functions see it.
type call struct {
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	arg   string     // the path after a prefix route, e.g. the key of /v1/kv/<key>
	query url.Values // parsed once; ?flag and ?flag= both count as present
	// filter is ?filter= parsed (nil when absent), for the answers that
	// Consul filters.
	filter *filter

	h        *handler
	token    string         // the caller's ACL token ("" anonymous)
	authz    acl.Authorizer // resolved on first check (enforce.go)
	authzErr error
}

// NewHandler validates cfg and returns the /v1 API handler. It starts
// nothing; mount it on an http.Server.
func NewHandler(cfg Config) (http.Handler, error) {
	h, err := newHandler(cfg)
	if err != nil {
		return nil, err
	}
	return h.observed(cfg.Ops.Observer), nil
}

// newHandler is NewHandler without the observer.
func newHandler(cfg Config) (*handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("httpapi: Config.Store is nil; pass the store that answers KV, session and status requests (the kv server, or a forwarder on client agents)")
	}
	if cfg.Self.Datacenter == "" {
		cfg.Self.Datacenter = DefaultDatacenter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{store: cfg.Store, cluster: cfg.Cluster, catalog: cfg.Catalog, self: cfg.Self, log: cfg.Logger,
		connectRoot: cfg.ConnectRoot, trustDomain: cfg.TrustDomain, ops: cfg.Ops,
		acl: cfg.ACL, keyListPolicy: cfg.EnableKeyListPolicy}
	h.events, h.coordinates, h.queries, h.autopilot = cfg.Events, cfg.Coordinates, cfg.PreparedQueries, cfg.Autopilot
	h.keyring = cfg.Keyring
	if h.txns = cfg.CatalogTxn; h.txns == nil {
		h.txns = newTxnCoordinator(cfg)
	}
	get, put := []string{http.MethodGet}, []string{http.MethodPut}
	h.routes = []route{
		{"/v1/kv/", []string{http.MethodGet, http.MethodPut, http.MethodDelete}, h.kv},
		{"/v1/txn", put, h.txn},
		{"/v1/session/create", put, h.sessionCreate},
		{"/v1/session/destroy/", put, h.sessionDestroy},
		{"/v1/session/renew/", put, h.sessionRenew},
		{"/v1/session/info/", get, h.sessionInfo},
		{"/v1/session/node/", get, h.sessionNode},
		{"/v1/session/list", get, h.sessionList},
		{"/v1/status/leader", get, h.statusLeader},
		{"/v1/status/peers", get, h.statusPeers},
		{"/v1/agent/self", get, h.agentSelf},
		{"/v1/agent/members", get, h.agentMembers},
		{"/v1/agent/join/", put, h.agentJoin},
		{"/v1/agent/leave", put, h.agentLeave},
		{"/v1/agent/force-leave/", put, h.agentForceLeave},
		{"/v1/operator/raft/configuration", get, h.operatorRaftConfiguration},
		{"/v1/agent/connect/ca/roots", get, h.connectCARoots},
		{"/v1/connect/ca/roots", get, h.connectCARoots},

		// The catalog, answered from this agent's memory (catalog.go,
		// health.go). Exact paths before the prefixes they share.
		{"/v1/catalog/datacenters", get, h.catalogDatacenters},
		{"/v1/catalog/services", get, h.catalogServices},
		{"/v1/catalog/service/", get, h.catalogService},
		{"/v1/catalog/nodes", get, h.catalogNodes},
		{"/v1/catalog/node/", get, h.catalogNode},
		{"/v1/catalog/node-services/", get, h.catalogNodeServices},
		{"/v1/catalog/register", put, h.catalogRegister},
		{"/v1/catalog/deregister", put, h.catalogDeregister},
		{"/v1/catalog/connect/", get, h.catalogConnect},
		{"/v1/health/connect/", get, h.healthConnect},
		{"/v1/health/service/", get, h.healthService},
		{"/v1/health/checks/", get, h.healthChecks},
		{"/v1/health/node/", get, h.healthNode},
		{"/v1/health/state/", get, h.healthState},
		{"/v1/agent/services", get, h.agentServices},
		{"/v1/agent/service/register", put, h.agentServiceRegister},
		{"/v1/agent/service/deregister/", put, h.agentServiceDeregister},
		{"/v1/agent/service/maintenance/", put, h.agentServiceMaintenance},
		{"/v1/agent/maintenance", put, h.agentMaintenance},
		{"/v1/agent/health/service/id/", get, h.agentHealthServiceByID},
		{"/v1/agent/health/service/name/", get, h.agentHealthServiceByName},
		{"/v1/agent/service/", get, h.agentService},
		{"/v1/agent/checks", get, h.agentChecks},
		{"/v1/agent/check/register", put, h.agentCheckRegister},
		{"/v1/agent/check/deregister/", put, h.agentCheckDeregister},
		{"/v1/agent/check/pass/", put, h.agentCheckStatus(catalog.StatusPassing)},
		{"/v1/agent/check/warn/", put, h.agentCheckStatus(catalog.StatusWarning)},
		{"/v1/agent/check/fail/", put, h.agentCheckStatus(catalog.StatusCritical)},
		{"/v1/agent/check/update/", put, h.agentCheckUpdate},
		{"/v1/event/fire/", put, h.eventFire},
		{"/v1/event/list", get, h.eventList},
		{"/v1/coordinate/datacenters", get, h.coordinateDatacenters},
		{"/v1/coordinate/nodes", get, h.coordinateNodes},
		{"/v1/coordinate/node/", get, h.coordinateNode},
		{"/v1/coordinate/update", put, h.coordinateUpdate},
		{"/v1/query", []string{http.MethodGet, http.MethodPost}, h.preparedQueries},
		{"/v1/query/", []string{http.MethodGet, http.MethodPut, http.MethodDelete}, h.preparedQuery},
		{"/v1/operator/autopilot/health", get, h.operatorAutopilotHealth},
		{"/v1/operator/keyring", []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}, h.operatorKeyring},
		{"/", get, h.index}, // exactly "/": the page a browser opens first
	}
	h.routes = append(h.routes, h.opsRoutes()...)
	h.acls = cfg.ACLSystem
	h.routes = append(h.aclRoutes(), h.routes...)
	return h, nil
}

func (h *handler) match(path string) (*route, string, bool) {
	for i := range h.routes {
		rt := &h.routes[i]
		if strings.HasSuffix(rt.path, "/") && rt.path != "/" {
			if rest, ok := strings.CutPrefix(path, rt.path); ok {
				return rt, rest, true
			}
		} else if path == rt.path {
			return rt, "", true
		}
	}
	return nil, "", false
}

// ServeHTTP dispatches like Consul's HTTPHandlers.wrap: method check
// (OPTIONS answers the Allow list), query parsing, the endpoint, and one
// place that turns the endpoint's error into a status code.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, arg, ok := h.match(r.URL.Path)
	h.serve(w, r, requestID(w, r), matched{rt, arg, ok})
}

// matched is h.match's answer, found once per request.
type matched struct {
	rt  *route
	arg string
	ok  bool
}

// requestID is the request's ID (the caller's X-Request-ID when fit to
// log, else a new one), also sent back in the answer's header.
func requestID(w http.ResponseWriter, r *http.Request) string {
	id := logging.AcceptRequestID(r.Header.Get(logging.RequestIDHeader))
	w.Header()[logging.RequestIDHeader] = []string{id}
	return id
}

// serve is ServeHTTP for a request whose ID is known; the ID rides on
// the request's context (to a server too, when the request is forwarded).
func (h *handler) serve(w http.ResponseWriter, r *http.Request, id string, m matched) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.log.Error("httpapi: panic serving request", "method", r.Method, "path", r.URL.Path, logging.RequestIDKey, id, "panic", p, "stack", string(debug.Stack()))
			writeText(w, http.StatusInternalServerError, "internal error serving this request; see the agent's log")
		}
	}()

	rt, arg, ok := m.rt, m.arg, m.ok
	if !ok {
		writeText(w, http.StatusNotFound, fmt.Sprintf("no API endpoint at %s", r.URL.Path))
		return
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", strings.Join(append([]string{http.MethodOptions}, rt.methods...), ","))
		w.WriteHeader(http.StatusOK)
		return
	}
	c := &call{w: w, r: r, ctx: logging.WithRequestID(r.Context(), id), arg: arg, h: h}
	err := checkMethod(r.Method, rt.methods)
	if err == nil {
		c.query, err = parseQuery(r.URL.RawQuery)
	}
	if err == nil {
		// The caller's ACL token travels with the request, to the servers
		// too (kv.WithToken), which check it again; here each endpoint
		// checks it before acting (enforce.go).
		c.token = requestToken(r, c.query)
		c.ctx = kv.WithToken(c.ctx, c.token)
		if h.acl != nil && !tokenless(rt.path) {
			// Once per request; an unknown token is a 403 "ACL not
			// found" before anything else happens, as in Consul.
			_, err = c.authorizer()
		}
	}
	if err == nil {
		err = h.checkDatacenter(c.query)
	}
	var pretty *prettyWriter
	if err == nil && has(c.query, "pretty") {
		pretty = &prettyWriter{ResponseWriter: w}
		c.w = pretty
	}
	if err == nil {
		err = rt.fn(c)
	}
	if err != nil {
		h.fail(c, err)
	}
	if pretty != nil {
		pretty.finish()
	}
}

func checkMethod(method string, allowed []string) error {
	for _, m := range allowed {
		if m == method {
			return nil
		}
	}
	return &methodNotAllowedError{method: method, allow: append([]string{http.MethodOptions}, allowed...)}
}

// checkDatacenter refuses ?dc= naming another datacenter: cairn agents
// know only their own (Consul would forward over the WAN).
func (h *handler) checkDatacenter(q url.Values) error {
	if dc := q.Get("dc"); dc != "" && dc != h.self.Datacenter {
		return fmt.Errorf("%w: ?dc=%s is not this agent's datacenter %q, and cairn does not federate datacenters", errNoDCPath, dc, h.self.Datacenter)
	}
	return nil
}

// requestToken is the caller's ACL token where Consul looks for it: the
// X-Consul-Token header, an "Authorization: Bearer" header, or ?token=.
func requestToken(r *http.Request, q url.Values) string {
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && t != "" {
		return strings.TrimSpace(t)
	}
	return q.Get("token")
}
