package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/agent/catalog"
	"github.com/cairn-dev/cairn/agent/checks"
	"github.com/cairn-dev/cairn/agent/consuljson"
	"github.com/cairn-dev/cairn/kv"
	"github.com/hashicorp/go-memdb"
)

// Catalog is what the HTTP API needs from the service catalog (a
// *catalog.Catalog): the catalog and health reads, each with an index and
// a watch set, catalog registrations, and this agent's own services and
// checks. Every read is answered from the agent's memory; methods are
// called from request goroutines, concurrently, and never block.
type Catalog interface {
	// Block runs a read as a blocking query (catalog.Catalog.Block).
	Block(ctx context.Context, minIndex uint64, wait time.Duration, read func(ws memdb.WatchSet) uint64) (uint64, error)
	Services(ws memdb.WatchSet, f catalog.Filter) (uint64, map[string][]string)
	ServiceNodes(ws memdb.WatchSet, name string, f catalog.Filter) (uint64, []catalog.Instance)
	ServiceHealth(ws memdb.WatchSet, name string, f catalog.Filter) (uint64, []catalog.Instance)
	// ServiceIndex is the index ServiceNodes and ServiceHealth would
	// answer at, without reading the instances.
	ServiceIndex(ws memdb.WatchSet, name string, f catalog.Filter) uint64
	Nodes(ws memdb.WatchSet, f catalog.Filter) (uint64, []*catalog.Node)
	Node(ws memdb.WatchSet, name string) (uint64, *catalog.Node, []*catalog.Service)
	ServiceChecks(ws memdb.WatchSet, name string, f catalog.Filter) (uint64, []*catalog.Check)
	NodeChecks(ws memdb.WatchSet, node string) (uint64, []*catalog.Check)
	ChecksInState(ws memdb.WatchSet, state string, f catalog.Filter) (uint64, []*catalog.Check, error)
	Register(reg catalog.Registration) error
	Deregister(d catalog.Deregistration) error

	LocalServices() []*catalog.Service
	LocalService(id string) *catalog.Service
	LocalChecks() []*catalog.Check
	RegisterService(def catalog.ServiceDefinition, replaceExistingChecks bool) error
	DeregisterService(id string) error
	RegisterCheck(def checks.Definition) error
	DeregisterCheck(id string) error
	UpdateTTL(id, status, output string) error
	SetMaintenance(serviceID string, enable bool, reason string) error
}

// catalogRead answers a catalog read as a Consul blocking query: read runs
// until the index it reports passes ?index= or ?wait runs out, woken by
// the catalog's watch channels. Reads are local, so the answer is never
// stale with respect to this agent and there is always a "leader": the
// headers say so (X-Consul-KnownLeader true, LastContact 0). An ?index=
// above this agent's own index (from another agent, or from before a
// restart of an older build) is answered at once, so that the client
// starts over instead of hanging for the whole wait.
func (h *handler) catalogRead(c *call, read func(ws memdb.WatchSet) uint64) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	if err := parseQueryFilter(c); err != nil {
		return err
	}
	idx, err := h.catalog.Block(c.ctx, o.MinIndex, o.MaxWait, read)
	if err != nil {
		return err
	}
	setMeta(c.w, kv.QueryMeta{Index: idx, KnownLeader: true}, o)
	if has(c.query, "cached") {
		// Consul's agent cache: every catalog read here is answered from
		// the agent's own copy, kept current by gossip, so it is always a
		// hit and never older than the last change it has heard of.
		c.w.Header().Set("X-Cache", "HIT")
		c.w.Header().Set("Age", "0")
	}
	return nil
}

var errNoCatalog = &httpError{code: http.StatusInternalServerError, msg: "this agent has no service catalog"}

// parseQueryFilter parses ?filter= into c.filter; one that does not
// parse is a 400 with Consul's text.
func parseQueryFilter(c *call) error {
	expr := c.query.Get("filter")
	if expr == "" {
		return nil
	}
	f, err := parseFilter(expr)
	if err != nil {
		return badRequest("%v", err)
	}
	c.filter = f
	return nil
}

// writeFiltered answers 200 with out, less what ?filter= leaves out.
func writeFiltered(c *call, out any) error {
	out, err := c.filter.apply(out)
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, out)
}

// queryFilter reads ?tag= (repeatable), ?node-meta=key:value (repeatable)
// and ?passing.
func queryFilter(q url.Values) (catalog.Filter, error) {
	var f catalog.Filter
	f.Tags = q["tag"]
	for _, nm := range q["node-meta"] {
		k, v, ok := strings.Cut(nm, ":")
		if !ok || k == "" {
			return f, badRequest("Invalid node-meta: ?node-meta=%q is not key:value; give e.g. ?node-meta=rack:r1", nm)
		}
		if f.NodeMeta == nil {
			f.NodeMeta = map[string]string{}
		}
		f.NodeMeta[k] = v
	}
	if has(q, "passing") {
		// Consul: ?passing, ?passing=true, ?passing=1 filter; ?passing=false does not.
		switch strings.ToLower(q.Get("passing")) {
		case "", "true", "1":
			f.Passing = true
		case "false", "0":
		default:
			return f, badRequest("Invalid value for ?passing: %q; use ?passing or ?passing=true", q.Get("passing"))
		}
	}
	return f, nil
}

// ---- /v1/catalog ----

// catalogDatacenters serves GET /v1/catalog/datacenters: cairn knows its
// own datacenter only.
func (h *handler) catalogDatacenters(c *call) error {
	return writeJSON(c.w, http.StatusOK, []string{h.self.Datacenter})
}

// catalogServices serves GET /v1/catalog/services: every service name
// with its tags.
func (h *handler) catalogServices(c *call) error {
	f, err := queryFilter(c.query)
	if err != nil {
		return err
	}
	var out map[string][]string
	var insts []consuljson.CatalogService // every instance, read only for ?filter=
	if err := h.catalogRead(c, func(ws memdb.WatchSet) uint64 {
		idx, m := h.catalog.Services(ws, f)
		out, insts = m, nil
		if c.filter != nil {
			for name := range m {
				_, in := h.catalog.ServiceNodes(ws, name, f)
				for _, i := range in {
					insts = append(insts, consuljson.FromInstance(i))
				}
			}
		}
		return idx
	}); err != nil {
		return err
	}
	// Consul's filterServices: the names the token may read.
	if !c.aclOff() {
		kept := make(map[string][]string, len(out))
		for name, tags := range out {
			if c.can(acl.Service, name, acl.Read) {
				kept[name] = tags
			}
		}
		if len(kept) != len(out) {
			c.markFiltered()
		}
		out = kept
		insts = filterList(c, insts, func(s consuljson.CatalogService) bool { return c.can(acl.Service, s.ServiceName, acl.Read) })
	}
	if c.filter == nil {
		return writeJSON(c.w, http.StatusOK, out)
	}
	// As in Consul, ?filter= judges each instance (api.CatalogService's
	// selectors: ServiceName, ServiceTags, NodeMeta, ...); a service is
	// listed with the tags of the instances that pass.
	kept, err := c.filter.apply(insts)
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, servicesWithTags(kept.([]consuljson.CatalogService)))
}

// servicesWithTags is /v1/catalog/services' answer for insts: each
// service name with the union of its instances' tags, sorted.
func servicesWithTags(insts []consuljson.CatalogService) map[string][]string {
	out := map[string][]string{}
	for _, in := range insts {
		out[in.ServiceName] = append(out[in.ServiceName], in.ServiceTags...)
	}
	for name, tags := range out {
		slices.Sort(tags)
		out[name] = slices.Compact(tags)
		if out[name] == nil {
			out[name] = []string{}
		}
	}
	return out
}

// catalogService serves GET /v1/catalog/service/<name>.
func (h *handler) catalogService(c *call) error {
	if c.arg == "" {
		return badRequest("Missing service name: use /v1/catalog/service/<name>")
	}
	f, err := queryFilter(c.query)
	if err != nil {
		return err
	}
	return h.serviceAnswer(c, "catalog", f, h.catalog.ServiceNodes, func(insts []catalog.Instance) any {
		out := make([]consuljson.CatalogService, 0, len(insts))
		for _, in := range insts {
			out = append(out, consuljson.FromInstance(in))
		}
		sortNear(h, c, out, func(s consuljson.CatalogService) string { return s.Node })
		return out
	})
}

// catalogConnect serves GET /v1/catalog/connect/<service>: the
// Connect-capable instances for the service (health.go's
// connectCapable).
func (h *handler) catalogConnect(c *call) error {
	if c.arg == "" {
		return badRequest("Missing service name: use /v1/catalog/connect/<service>")
	}
	f, err := queryFilter(c.query)
	if err != nil {
		return err
	}
	var insts []catalog.Instance
	if err := h.catalogRead(c, func(ws memdb.WatchSet) uint64 {
		idx, in := h.connectCapable(ws, c.arg, f, h.catalog.ServiceNodes)
		insts = in
		return idx
	}); err != nil {
		return err
	}
	insts = filterInstances(c, insts)
	out := make([]consuljson.CatalogService, 0, len(insts))
	for _, in := range insts {
		out = append(out, consuljson.FromInstance(in))
	}
	return writeFiltered(c, out)
}

// catalogNodes serves GET /v1/catalog/nodes.
func (h *handler) catalogNodes(c *call) error {
	f, err := queryFilter(c.query)
	if err != nil {
		return err
	}
	var nodes []*catalog.Node
	if err := h.catalogRead(c, func(ws memdb.WatchSet) uint64 {
		idx, ns := h.catalog.Nodes(ws, f)
		nodes = ns
		return idx
	}); err != nil {
		return err
	}
	// Consul's filterNodes: node read on each.
	nodes = filterList(c, nodes, func(n *catalog.Node) bool { return c.can(acl.Node, n.Node, acl.Read) })
	out := make([]*consuljson.Node, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, consuljson.FromNode(n))
	}
	sortNear(h, c, out, func(n *consuljson.Node) string { return n.Node })
	return writeFiltered(c, out)
}

// readNode reads one node and its services for the /v1/catalog/node
// endpoints; use names the endpoint for the missing-name message.
func (h *handler) readNode(c *call, use string) (*catalog.Node, []*catalog.Service, error) {
	if c.arg == "" {
		return nil, nil, badRequest("Missing node name: use %s", use)
	}
	var (
		node *catalog.Node
		svcs []*catalog.Service
	)
	err := h.catalogRead(c, func(ws memdb.WatchSet) uint64 {
		idx, n, s := h.catalog.Node(ws, c.arg)
		node, svcs = n, s
		return idx
	})
	if err != nil || node == nil || c.aclOff() {
		return node, svcs, err
	}
	// Consul's filterNodeServices: nothing without node read, then the
	// services the token may read.
	if !c.can(acl.Node, node.Node, acl.Read) {
		c.markFiltered()
		return nil, nil, nil
	}
	svcs = filterList(c, svcs, func(s *catalog.Service) bool { return c.can(acl.Service, s.Name, acl.Read) })
	return node, svcs, nil
}

// catalogNode serves GET /v1/catalog/node/<node>: the node and a map of
// its services by ID; null (200) when there is no such node, as Consul.
func (h *handler) catalogNode(c *call) error {
	node, svcs, err := h.readNode(c, "/v1/catalog/node/<node>")
	if err != nil || node == nil {
		return nilOrErr(c, err)
	}
	out := consuljson.FromNodeServices(node, svcs)
	// ?filter= narrows the services (api.AgentService's selectors).
	kept, err := c.filter.apply(out.Services)
	if err != nil {
		return err
	}
	out.Services = kept.(map[string]*consuljson.Service)
	return writeJSON(c.w, http.StatusOK, out)
}

// catalogNodeServices serves GET /v1/catalog/node-services/<node>: the
// same as catalogNode with the services as a list, which ?filter= narrows.
func (h *handler) catalogNodeServices(c *call) error {
	node, svcs, err := h.readNode(c, "/v1/catalog/node-services/<node>")
	if err != nil || node == nil {
		return nilOrErr(c, err)
	}
	list := make([]*consuljson.Service, 0, len(svcs))
	for _, s := range svcs {
		list = append(list, consuljson.FromService(s))
	}
	kept, err := c.filter.apply(list)
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, struct {
		Node     *consuljson.Node
		Services []*consuljson.Service
	}{consuljson.FromNode(node), kept.([]*consuljson.Service)})
}

// nilOrErr returns err, or answers Consul's 200 null for a missing node.
func nilOrErr(c *call, err error) error {
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, nil)
}

// catalogRegistration is the body of PUT /v1/catalog/register
// (api.CatalogRegistration).
type catalogRegistration struct {
	ID              string
	Node            string
	Address         string
	TaggedAddresses map[string]string
	NodeMeta        map[string]string
	Datacenter      string
	Service         *serviceIn
	Check           *checkIn
	Checks          []*checkIn
	SkipNodeUpdate  bool
}

// serviceIn is a service as a catalog registration gives it
// (api.AgentService).
type serviceIn struct {
	Kind              string
	ID                string
	Service           string
	Tags              []string
	Address           string
	TaggedAddresses   map[string]consuljson.ServiceAddress
	Meta              map[string]string
	Port              int
	Ports             []consuljson.ServicePort
	SocketPath        string
	Weights           consuljson.Weights
	EnableTagOverride bool
	Connect           json.RawMessage
	Proxy             json.RawMessage
	Locality          *consuljson.Locality
	Namespace         string
	Partition         string
	ModifyIndex       uint64 // for CAS in /v1/txn
}

// checkIn is a check as a catalog registration gives it (api.AgentCheck,
// api.HealthCheck): a fixed status.
type checkIn struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	Type        string
	Definition  *checkDefinitionRead
	ModifyIndex uint64 // for CAS in /v1/txn
}

// checkDefinitionRead is a HealthCheckDefinition as a catalog
// registration carries it: kept and answered, never run.
type checkDefinitionRead struct {
	HTTP                                   string
	Header                                 map[string][]string
	Method                                 string
	Body                                   string
	TLSServerName                          string
	TLSSkipVerify                          bool
	TCP                                    string
	TCPUseTLS                              bool
	UDP                                    string
	GRPC                                   string
	GRPCUseTLS                             bool
	OSService                              string
	Interval                               durationIn
	Timeout                                durationIn
	DeregisterCriticalServiceAfter         durationIn
	IntervalDuration                       durationIn
	TimeoutDuration                        durationIn
	DeregisterCriticalServiceAfterDuration durationIn
}

// check is the check in the catalog's form, of service serviceID.
func (ch *checkIn) check(serviceID string) (*catalog.Check, error) {
	def, err := ch.Definition.definition(ch.CheckID)
	if err != nil {
		return nil, err
	}
	typ := ch.Type
	if typ == "" {
		typ = definitionType(def)
	}
	return &catalog.Check{
		CheckID: ch.CheckID, Name: ch.Name, Status: ch.Status, Notes: ch.Notes,
		Output: ch.Output, ServiceID: serviceID, Type: typ, Definition: def,
	}, nil
}

// definitionType is the Type Consul reports for a registered check
// whose registration names none: the kind its definition describes.
func definitionType(d catalog.Definition) string {
	switch {
	case d.HTTP != "":
		return "http"
	case d.TCP != "":
		return "tcp"
	case d.UDP != "":
		return "udp"
	case d.GRPC != "":
		return "grpc"
	case d.OSService != "":
		return "os_service"
	}
	return ""
}

// definition is d in the catalog's form; the *Duration fields (the
// client's newer names) win over the older ones, as Consul reads them.
func (d *checkDefinitionRead) definition(check string) (catalog.Definition, error) {
	if d == nil {
		return catalog.Definition{}, nil
	}
	out := catalog.Definition{
		HTTP: d.HTTP, Header: d.Header, Method: d.Method, Body: d.Body, TLSServerName: d.TLSServerName,
		TLSSkipVerify: d.TLSSkipVerify, TCP: d.TCP, TCPUseTLS: d.TCPUseTLS, UDP: d.UDP, GRPC: d.GRPC,
		GRPCUseTLS: d.GRPCUseTLS, OSService: d.OSService,
	}
	for _, f := range []struct {
		name     string
		old, new durationIn
		dst      *time.Duration
	}{
		{"Interval", d.Interval, d.IntervalDuration, &out.Interval},
		{"Timeout", d.Timeout, d.TimeoutDuration, &out.Timeout},
		{"DeregisterCriticalServiceAfter", d.DeregisterCriticalServiceAfter, d.DeregisterCriticalServiceAfterDuration, &out.DeregisterCriticalServiceAfter},
	} {
		v, err := f.new.get(check, f.name+"Duration")
		if err != nil {
			return out, err
		}
		if v == 0 {
			if v, err = f.old.get(check, f.name); err != nil {
				return out, err
			}
		}
		*f.dst = v
	}
	return out, nil
}

func (s *serviceIn) service() (*catalog.Service, error) {
	// The agent API's rules (kinds, namespaces, Ports) hold here too.
	reg := serviceRegistration{
		Kind: s.Kind, ID: s.ID, Name: s.Service, Tags: s.Tags, Address: s.Address, Port: s.Port,
		Ports: s.Ports, SocketPath: s.SocketPath, TaggedAddresses: s.TaggedAddresses, Meta: s.Meta,
		EnableTagOverride: s.EnableTagOverride, Proxy: s.Proxy, Connect: s.Connect, Locality: s.Locality,
		Namespace: s.Namespace, Partition: s.Partition,
	}
	def, _, err := reg.definition()
	if err != nil {
		return nil, err
	}
	out := def.Service
	out.Weights = catalog.Weights(s.Weights)
	return &out, nil
}

// catalogRegister serves PUT /v1/catalog/register. The entries belong to
// this agent: they are spread with its state and go when it goes.
func (h *handler) catalogRegister(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	var in catalogRegistration
	if err := decodeJSONBody(c, &in, "a catalog registration"); err != nil {
		return err
	}
	if in.Datacenter != "" && in.Datacenter != h.self.Datacenter {
		return badRequest("Datacenter %q is not this agent's %q, and cairn does not federate datacenters; leave Datacenter out", in.Datacenter, h.self.Datacenter)
	}
	reg := catalog.Registration{
		Node: catalog.Node{
			ID: in.ID, Node: in.Node, Address: in.Address,
			TaggedAddresses: in.TaggedAddresses, Meta: in.NodeMeta,
		},
		SkipNodeUpdate: in.SkipNodeUpdate,
	}
	if in.Service != nil {
		svc, err := in.Service.service()
		if err != nil {
			return err
		}
		reg.Service = svc
	}
	checks := in.Checks
	if in.Check != nil {
		checks = append([]*checkIn{in.Check}, checks...)
	}
	for _, ch := range checks {
		if ch == nil {
			continue
		}
		if ch.Node != "" && !strings.EqualFold(ch.Node, in.Node) {
			return badRequest("check %q is for node %q but the registration is for node %q; register each node's checks with it", ch.CheckID, ch.Node, in.Node)
		}
		serviceID := ch.ServiceID
		if serviceID == "" && ch.ServiceName != "" && reg.Service != nil && strings.EqualFold(ch.ServiceName, reg.Service.Name) {
			serviceID = reg.Service.ID
			if serviceID == "" {
				serviceID = reg.Service.Name
			}
		}
		chk, err := ch.check(serviceID)
		if err != nil {
			return err
		}
		reg.Checks = append(reg.Checks, chk)
	}
	if err := checkRegister(c, reg); err != nil {
		return err
	}
	if err := h.catalog.Register(reg); err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, true)
}

// catalogDeregister serves PUT /v1/catalog/deregister.
func (h *handler) catalogDeregister(c *call) error {
	if h.catalog == nil {
		return errNoCatalog
	}
	var in struct {
		Node       string
		Datacenter string
		ServiceID  string
		CheckID    string
	}
	if err := decodeJSONBody(c, &in, "a catalog deregistration"); err != nil {
		return err
	}
	if in.Datacenter != "" && in.Datacenter != h.self.Datacenter {
		return badRequest("Datacenter %q is not this agent's %q, and cairn does not federate datacenters; leave Datacenter out", in.Datacenter, h.self.Datacenter)
	}
	if err := h.checkDeregister(c, in.Node, in.ServiceID, in.CheckID); err != nil {
		return err
	}
	if err := h.catalog.Deregister(catalog.Deregistration{Node: in.Node, ServiceID: in.ServiceID, CheckID: in.CheckID}); err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, true)
}

// decodeJSONBody decodes the request body into v, with Consul's 400 text
// for a body that is not the JSON expected.
func decodeJSONBody(c *call, v any, what string) error {
	body, err := readBody(c, maxBodySize, what)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return badRequest("Request decode failed: the body is empty; send %s as JSON", what)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("Request decode failed: %v; send %s as JSON", err, what)
	}
	return nil
}

// filterInstances keeps the instances whose node and service the token
// may read (Consul's filterServiceNodes and filterCheckServiceNodes).
func filterInstances(c *call, insts []catalog.Instance) []catalog.Instance {
	return filterList(c, insts, func(in catalog.Instance) bool {
		return c.can(acl.Node, in.Node.Node, acl.Read) && c.can(acl.Service, in.Service.Name, acl.Read)
	})
}

// filterChecks keeps the checks whose node the token may read, and whose
// service too for a service's check (Consul's filterHealthChecks).
func filterChecks(c *call, checks []*catalog.Check) []*catalog.Check {
	return filterList(c, checks, func(ch *catalog.Check) bool {
		return c.can(acl.Node, ch.Node, acl.Read) && (ch.ServiceName == "" || c.can(acl.Service, ch.ServiceName, acl.Read))
	})
}

// checkRegister is Consul's vetRegisterWithACL: node write on the node
// (unless SkipNodeUpdate), service write on the service, and for each
// check service write on its service or, for a node check, node write.
func checkRegister(c *call, reg catalog.Registration) error {
	if !reg.SkipNodeUpdate {
		if err := c.allow(acl.Node, reg.Node.Node, acl.Write); err != nil {
			return err
		}
	}
	if reg.Service != nil {
		if err := c.allow(acl.Service, reg.Service.Name, acl.Write); err != nil {
			return err
		}
	}
	for _, ch := range reg.Checks {
		var err error
		if ch.ServiceID != "" {
			name := ch.ServiceName
			if name == "" && reg.Service != nil {
				name = reg.Service.Name
			}
			err = c.allow(acl.Service, name, acl.Write)
		} else {
			err = c.allow(acl.Node, reg.Node.Node, acl.Write)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkDeregister is Consul's vetDeregisterWithACL: service write on the
// service removed (or on the service of the check removed), node write
// for a node check or the whole node.
func (h *handler) checkDeregister(c *call, node, serviceID, checkID string) error {
	if c.aclOff() {
		return nil
	}
	_, _, svcs := h.catalog.Node(nil, node)
	serviceName := func(id string) (string, bool) {
		for _, s := range svcs {
			if s.ID == id {
				return s.Name, true
			}
		}
		return "", false
	}
	switch {
	case serviceID != "":
		name, ok := serviceName(serviceID)
		if !ok {
			name = serviceID
		}
		return c.allow(acl.Service, name, acl.Write)
	case checkID != "":
		_, checks := h.catalog.NodeChecks(nil, node)
		for _, ch := range checks {
			if ch.CheckID == checkID && ch.ServiceID != "" {
				return c.allow(acl.Service, ch.ServiceName, acl.Write)
			}
		}
	}
	return c.allow(acl.Node, node, acl.Write)
}
