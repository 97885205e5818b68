package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/cairn-dev/cairn/agent/acl"
	"github.com/cairn-dev/cairn/kv"
)

// ACLSystem is what the /v1/acl endpoints and /v1/agent/token/* use;
// nil in Config means ACLs are off (401 "ACL support disabled", as
// Consul answers).
type ACLSystem struct {
	Store *acl.Store
	// Resolver resolves the caller's token (the default token standing
	// in for none).
	Resolver interface {
		Identity(ctx context.Context, secret string) (*acl.Identity, error)
	}
	// SetAgentToken sets (and persists, with enable_token_persistence)
	// one of the agent's tokens; kind is an acl.TokenKind.
	SetAgentToken func(kind, secret string) error
}

var errACLDisabled = &httpError{code: http.StatusUnauthorized, msg: "ACL support disabled"}

// aclRoutes are the ACL system's endpoints.
func (h *handler) aclRoutes() []route {
	get, put := []string{http.MethodGet}, []string{http.MethodPut}
	crud := []string{http.MethodGet, http.MethodPut, http.MethodDelete}
	return []route{
		{"/v1/acl/bootstrap", put, h.aclBootstrap},
		{"/v1/acl/replication", get, h.aclReplication},
		{"/v1/acl/policies", get, h.aclPolicyList},
		{"/v1/acl/policy", put, h.aclPolicyCreate},
		{"/v1/acl/policy/name/", get, h.aclPolicyByName},
		{"/v1/acl/policy/", crud, h.aclPolicy},
		{"/v1/acl/roles", get, h.aclRoleList},
		{"/v1/acl/role", put, h.aclRoleCreate},
		{"/v1/acl/role/name/", get, h.aclRoleByName},
		{"/v1/acl/role/", crud, h.aclRole},
		{"/v1/acl/tokens", get, h.aclTokenList},
		{"/v1/acl/token", put, h.aclTokenCreate},
		{"/v1/acl/token/self", get, h.aclTokenSelf},
		{"/v1/acl/token/", crud, h.aclToken},
		{"/v1/agent/token/", put, h.agentToken},
	}
}

// aclErr maps the ACL store's errors to Consul's status codes.
func aclErr(err error) error {
	var inv *acl.InvalidError
	var na *acl.BootstrapNotAllowedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &inv):
		return badRequest("%s", inv.Error())
	case errors.As(err, &na):
		return &httpError{code: http.StatusForbidden, msg: (&acl.PermissionDeniedError{Cause: na.Error()}).Error()}
	case errors.Is(err, acl.ErrNotFound), errors.Is(err, acl.ErrPermissionDenied):
		return &httpError{code: http.StatusForbidden, msg: err.Error()}
	}
	return err
}

// aclAuthz resolves the caller and checks acl:<want>.
func (h *handler) aclAuthz(c *call, want acl.Access) (*acl.Identity, error) {
	if h.acls == nil {
		return nil, errACLDisabled
	}
	id, err := h.acls.Resolver.Identity(c.ctx, kv.Token(c.ctx))
	if err != nil {
		return nil, aclErr(err)
	}
	if !id.Authorizer.Allowed(acl.ACL, "", want) {
		return nil, aclErr(acl.Denied(id.Authorizer, acl.ACL, "", want))
	}
	return id, nil
}

// hideSecrets redacts secrets for callers with acl:read only (Consul's
// "<hidden>").
func hideSecrets(id *acl.Identity, ts ...*acl.Token) {
	if id.Authorizer.Allowed(acl.ACL, "", acl.Write) {
		return
	}
	for _, t := range ts {
		t.SecretID = "<hidden>"
	}
}

func (h *handler) aclBootstrap(c *call) error {
	if h.acls == nil {
		return errACLDisabled
	}
	t, err := h.acls.Store.Bootstrap(c.ctx)
	if err != nil {
		return aclErr(err)
	}
	return writeJSON(c.w, http.StatusOK, t)
}

// aclReplication answers Consul's replication status: cairn has one
// datacenter, so replication is never enabled.
func (h *handler) aclReplication(c *call) error {
	if _, err := h.aclAuthz(c, acl.Read); err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, map[string]any{
		"Enabled": false, "Running": false, "SourceDatacenter": h.self.Datacenter,
		"ReplicationType": "", "ReplicatedIndex": 0, "ReplicatedRoleIndex": 0, "ReplicatedTokenIndex": 0,
		"LastSuccess": "0001-01-01T00:00:00Z", "LastError": "0001-01-01T00:00:00Z", "LastErrorMessage": "",
	})
}

// ---- policies ----

func (h *handler) aclPolicyList(c *call) error {
	if _, err := h.aclAuthz(c, acl.Read); err != nil {
		return err
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	meta, ps, err := h.acls.Store.PolicyList(c.ctx, o)
	if err != nil {
		return aclErr(err)
	}
	out := make([]*acl.PolicyListEntry, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Stub())
	}
	setMeta(c.w, meta, o)
	return writeJSON(c.w, http.StatusOK, out)
}

func (h *handler) aclPolicyCreate(c *call) error {
	if _, err := h.aclAuthz(c, acl.Write); err != nil {
		return err
	}
	var p acl.Policy
	if err := decodeJSONBody(c, &p, "a policy"); err != nil {
		return err
	}
	out, err := h.acls.Store.PolicyCreate(c.ctx, &p)
	if err != nil {
		return aclErr(err)
	}
	return writeJSON(c.w, http.StatusOK, out)
}

func (h *handler) aclPolicyByName(c *call) error {
	if _, err := h.aclAuthz(c, acl.Read); err != nil {
		return err
	}
	if c.arg == "" {
		return badRequest("Missing policy Name: use /v1/acl/policy/name/<name>")
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	meta, p, err := h.acls.Store.PolicyReadByName(c.ctx, o, c.arg)
	return h.writeACLRecord(c, meta, o, p, p == nil, err)
}

func (h *handler) writeACLRecord(c *call, meta kv.QueryMeta, o kv.QueryOptions, v any, missing bool, err error) error {
	if err != nil {
		return aclErr(err)
	}
	if missing {
		return aclErr(acl.ErrNotFound)
	}
	setMeta(c.w, meta, o)
	return writeJSON(c.w, http.StatusOK, v)
}

func (h *handler) aclPolicy(c *call) error {
	st := h.acls.Store
	return aclItem(h, c, "policy", "Policy", func(p *acl.Policy) *string { return &p.ID },
		st.PolicyRead, st.PolicyUpdate, st.PolicyDelete)
}

// aclItem answers /v1/acl/<kind>/<id>, a policy's or a role's: GET reads
// it, PUT updates it (the ID in the body, if any, must be the URL's),
// DELETE deletes it. Policies and roles differ only in their type and
// store methods.
func aclItem[T any](h *handler, c *call, kind, title string, idOf func(*T) *string,
	read func(context.Context, kv.QueryOptions, string) (kv.QueryMeta, *T, error),
	update func(context.Context, *T) (*T, error),
	del func(context.Context, string) error) error {
	want := acl.Write
	if c.r.Method == http.MethodGet {
		want = acl.Read
	}
	if _, err := h.aclAuthz(c, want); err != nil {
		return err
	}
	if c.arg == "" {
		return badRequest("Missing %s ID: use /v1/acl/%s/<id>", kind, kind)
	}
	switch c.r.Method {
	case http.MethodGet:
		o, err := readOptions(c.query)
		if err != nil {
			return err
		}
		meta, v, err := read(c.ctx, o, c.arg)
		return h.writeACLRecord(c, meta, o, v, v == nil, err)
	case http.MethodPut:
		v := new(T)
		if err := decodeJSONBody(c, v, "a "+kind); err != nil {
			return err
		}
		id := idOf(v)
		if *id != "" && *id != c.arg {
			return badRequest("%s ID in URL and payload do not match", title)
		}
		*id = c.arg
		out, err := update(c.ctx, v)
		if err != nil {
			return aclErr(err)
		}
		return writeJSON(c.w, http.StatusOK, out)
	default:
		if err := del(c.ctx, c.arg); err != nil {
			return aclErr(err)
		}
		return writeJSON(c.w, http.StatusOK, true)
	}
}

// ---- roles ----

func (h *handler) aclRoleList(c *call) error {
	if _, err := h.aclAuthz(c, acl.Read); err != nil {
		return err
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	meta, rs, err := h.acls.Store.RoleList(c.ctx, o, c.query.Get("policy"))
	if err == nil {
		err = h.acls.Store.FillRolePolicies(c.ctx, rs)
	}
	if err != nil {
		return aclErr(err)
	}
	if rs == nil {
		rs = []*acl.Role{}
	}
	setMeta(c.w, meta, o)
	return writeJSON(c.w, http.StatusOK, rs)
}

func (h *handler) aclRoleCreate(c *call) error {
	if _, err := h.aclAuthz(c, acl.Write); err != nil {
		return err
	}
	var r acl.Role
	if err := decodeJSONBody(c, &r, "a role"); err != nil {
		return err
	}
	out, err := h.acls.Store.RoleCreate(c.ctx, &r)
	if err != nil {
		return aclErr(err)
	}
	return writeJSON(c.w, http.StatusOK, out)
}

func (h *handler) aclRoleByName(c *call) error {
	if _, err := h.aclAuthz(c, acl.Read); err != nil {
		return err
	}
	if c.arg == "" {
		return badRequest("Missing role Name: use /v1/acl/role/name/<name>")
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	meta, r, err := h.acls.Store.RoleReadByName(c.ctx, o, c.arg)
	return h.writeACLRecord(c, meta, o, r, r == nil, err)
}

func (h *handler) aclRole(c *call) error {
	st := h.acls.Store
	return aclItem(h, c, "role", "Role", func(r *acl.Role) *string { return &r.ID },
		st.RoleRead, st.RoleUpdate, st.RoleDelete)
}

// ---- tokens ----

func (h *handler) aclTokenList(c *call) error {
	id, err := h.aclAuthz(c, acl.Read)
	if err != nil {
		return err
	}
	o, err := readOptions(c.query)
	if err != nil {
		return err
	}
	f := acl.TokenFilter{Policy: c.query.Get("policy"), Role: c.query.Get("role"),
		ServiceName: c.query.Get("servicename"), AuthMethod: c.query.Get("authmethod")}
	meta, ts, err := h.acls.Store.TokenList(c.ctx, o, f)
	if err != nil {
		return aclErr(err)
	}
	hideSecrets(id, ts...)
	if ts == nil {
		ts = []*acl.Token{}
	}
	setMeta(c.w, meta, o)
	return writeJSON(c.w, http.StatusOK, ts)
}

func (h *handler) aclTokenCreate(c *call) error {
	if _, err := h.aclAuthz(c, acl.Write); err != nil {
		return err
	}
	var t acl.Token
	if err := decodeJSONBody(c, &t, "a token"); err != nil {
		return err
	}
	out, err := h.acls.Store.TokenCreate(c.ctx, &t)
	if err != nil {
		return aclErr(err)
	}
	return writeJSON(c.w, http.StatusOK, out)
}

// aclTokenSelf answers the caller's own token; any valid token may.
func (h *handler) aclTokenSelf(c *call) error {
	if h.acls == nil {
		return errACLDisabled
	}
	secret := kv.Token(c.ctx)
	if secret == "" {
		return aclErr(acl.ErrNotFound)
	}
	t, err := h.acls.Store.TokenBySecret(c.ctx, secret)
	if err == nil && t == nil {
		err = acl.ErrNotFound
	}
	if err != nil {
		return aclErr(err)
	}
	return writeJSON(c.w, http.StatusOK, t)
}

func (h *handler) aclToken(c *call) error {
	accessor, action, _ := strings.Cut(c.arg, "/")
	want := acl.Write
	if c.r.Method == http.MethodGet {
		want = acl.Read
	}
	id, err := h.aclAuthz(c, want)
	if err != nil {
		return err
	}
	if accessor == "" {
		return badRequest("Missing token ID: use /v1/acl/token/<accessor-id>")
	}
	switch {
	case action == "clone":
		if c.r.Method != http.MethodPut {
			return &methodNotAllowedError{method: c.r.Method, allow: []string{http.MethodOptions, http.MethodPut}}
		}
		var body struct{ Description string }
		if c.r.ContentLength != 0 {
			if err := decodeJSONBody(c, &body, "the clone's description"); err != nil {
				return err
			}
		}
		t, err := h.acls.Store.TokenClone(c.ctx, accessor, body.Description)
		if err != nil {
			return aclErr(err)
		}
		return writeJSON(c.w, http.StatusOK, t)
	case action != "":
		return &httpError{code: http.StatusNotFound, msg: "no API endpoint at " + c.r.URL.Path + "; use /v1/acl/token/<accessor-id> or /v1/acl/token/<accessor-id>/clone"}
	}
	switch c.r.Method {
	case http.MethodGet:
		o, err := readOptions(c.query)
		if err != nil {
			return err
		}
		meta, t, err := h.acls.Store.TokenRead(c.ctx, o, accessor)
		if t != nil {
			hideSecrets(id, t)
		}
		return h.writeACLRecord(c, meta, o, t, t == nil, err)
	case http.MethodPut:
		var t acl.Token
		if err := decodeJSONBody(c, &t, "a token"); err != nil {
			return err
		}
		if t.AccessorID != "" && t.AccessorID != accessor {
			return badRequest("Token Accessor ID in URL and payload do not match")
		}
		t.AccessorID = accessor
		out, err := h.acls.Store.TokenUpdate(c.ctx, &t)
		if err != nil {
			return aclErr(err)
		}
		return writeJSON(c.w, http.StatusOK, out)
	default:
		if self, err := h.acls.Store.TokenBySecret(c.ctx, kv.Token(c.ctx)); err == nil && self != nil && self.AccessorID == accessor {
			return badRequest("Deletion of the request's authorization token is not permitted")
		}
		if err := h.acls.Store.TokenDelete(c.ctx, accessor); err != nil {
			return aclErr(err)
		}
		return writeJSON(c.w, http.StatusOK, true)
	}
}

// agentToken serves PUT /v1/agent/token/<kind> {"Token": "..."}.
func (h *handler) agentToken(c *call) error {
	if _, err := h.aclAuthz(c, acl.Write); err != nil {
		return err
	}
	kind, ok := acl.TokenKind(c.arg)
	if !ok {
		return &httpError{code: http.StatusNotFound, msg: "Token \"" + c.arg + "\" is unknown; use default, agent, agent_recovery, replication, config_file_service_registration or dns"}
	}
	var body struct{ Token string }
	if err := decodeJSONBody(c, &body, `{"Token": "<secret>"}`); err != nil {
		return err
	}
	if err := h.acls.SetAgentToken(kind, body.Token); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}
