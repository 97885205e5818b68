package acl

import (
	"encoding/json"
	"strings"

	"github.com/cairn-dev/cairn/kv"
)

// IsReserved reports whether key lies under the ACL system's prefix,
// which users never reach through /v1/kv or /v1/txn.
func IsReserved(key string) bool { return strings.HasPrefix(key, Prefix) }

// ReservedReadAllowed says whether a read of key (or of every key under
// it, for a list) under Prefix, forwarded to a server with the caller's
// secret, may be answered: resolving a token reads that token's own
// record (by the hash of its secret), the bootstrap marker, and policies
// and roles, so those are open to any caller; everything else (other
// tokens, listings of tokens) needs acl:read. authz is the caller's
// (nil when the secret did not resolve).
func ReservedReadAllowed(key, secret string, authz Authorizer) bool {
	switch {
	case key == secretKey(secret), key == bootstrapKey,
		secret == "" && key == tokenPrefix+AnonymousAccessorID,
		strings.HasPrefix(key, policyPrefix), strings.HasPrefix(key, policyNamePfx),
		strings.HasPrefix(key, rolePrefix), strings.HasPrefix(key, roleNamePfx):
		return true
	}
	return authz != nil && authz.Allowed(ACL, "", Read)
}

// ReservedOpsAllowed says whether a transaction touching Prefix,
// forwarded to a server with the caller's secret, may be applied: with
// acl:write anything; without, only the first bootstrap (guarded by
// check-not-exists on the marker, so it succeeds once) and the making of
// the server's own initial_management token (initialManagement, "" when
// none is configured) by a caller presenting it.
func ReservedOpsAllowed(ops []kv.Op, secret string, authz Authorizer, initialManagement string) bool {
	if authz != nil && authz.Allowed(ACL, "", Write) {
		return true
	}
	firstBootstrap, makesInitial := false, initialManagement != "" && secret == initialManagement
	for _, op := range ops {
		if !IsReserved(op.Key) {
			continue
		}
		if op.Verb.IsRead() {
			if op.Key == bootstrapKey && op.Verb == kv.VerbCheckNotExists {
				firstBootstrap = true
			}
			continue
		}
		if op.Verb != kv.VerbSet {
			return false
		}
		switch {
		case op.Key == bootstrapKey:
			if !firstBootstrap && !makesInitial {
				return false
			}
		case strings.HasPrefix(op.Key, tokenPrefix), strings.HasPrefix(op.Key, secretPrefix):
			var t Token
			if json.Unmarshal(op.Value, &t) != nil || !managementOnly(&t) {
				return false
			}
			if !firstBootstrap && !(makesInitial && t.SecretID == initialManagement) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func managementOnly(t *Token) bool {
	return len(t.Policies) == 1 && t.Policies[0].ID == GlobalManagementID && len(t.Roles) == 0 &&
		len(t.ServiceIdentities) == 0 && len(t.NodeIdentities) == 0
}
