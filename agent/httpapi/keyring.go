package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/cairn-dev/cairn/agent/acl"
)

// Keyring runs gossip keyring operations on every live member (Consul's
// /v1/operator/keyring, `consul keyring`). Called from request
// goroutines; it blocks until the members answered or a timeout passed.
type Keyring interface {
	// Keyring runs op ("list", "install", "use" or "remove"; key is the
	// base64 key, unused by list) and returns the members' answers.
	Keyring(ctx context.Context, op, key string) (KeyringResult, error)
}

// KeyringResult is the members' answers to a keyring operation.
type KeyringResult struct {
	Keys        map[string]int    // key -> members holding it
	PrimaryKeys map[string]int    // key -> members whose primary it is
	NumNodes    int               // members asked
	Messages    map[string]string // node -> its error
}

var errNoKeyring = errors.New("keyring operations are not available on this agent")

// keyringOut is api.KeyringResponse.
type keyringOut struct {
	WAN         bool
	Datacenter  string
	Segment     string
	Messages    map[string]string `json:",omitempty"`
	Keys        map[string]int
	PrimaryKeys map[string]int
	NumNodes    int
}

// operatorKeyring answers /v1/operator/keyring: GET lists, POST installs,
// PUT makes primary, DELETE removes the key of the body {"Key": "..."}.
func (h *handler) operatorKeyring(c *call) error {
	op := map[string]string{http.MethodGet: "list", http.MethodPost: "install", http.MethodPut: "use", http.MethodDelete: "remove"}[c.r.Method]
	// Consul's: keyring read to list, keyring write to change.
	access := acl.Write
	if op == "list" {
		access = acl.Read
	}
	if err := c.allow(acl.Keyring, "", access); err != nil {
		return err
	}
	if h.keyring == nil {
		return errNoKeyring
	}
	var body struct{ Key string }
	if op != "list" {
		b, err := io.ReadAll(io.LimitReader(c.r.Body, 64<<10))
		if err != nil {
			return badRequest("Request decode failed: %v", err)
		}
		if err := json.Unmarshal(b, &body); err != nil {
			return badRequest("Request decode failed: %v", err)
		}
		if body.Key == "" {
			return badRequest(`Request decode failed: the body must be {"Key": "<base64 gossip key>"}`)
		}
	}
	res, err := h.keyring.Keyring(c.ctx, op, body.Key)
	if err != nil {
		return err
	}
	if op != "list" {
		if len(res.Messages) > 0 {
			return fmt.Errorf("%d/%d nodes reported failure:%s", len(res.Messages), res.NumNodes, keyringMessages(res.Messages))
		}
		c.w.WriteHeader(http.StatusOK)
		return nil
	}
	out := []keyringOut{{
		Datacenter:  h.self.Datacenter,
		Messages:    res.Messages,
		Keys:        res.Keys,
		PrimaryKeys: res.PrimaryKeys,
		NumNodes:    res.NumNodes,
	}}
	return writeJSON(c.w, http.StatusOK, out)
}

func keyringMessages(m map[string]string) string {
	nodes := make([]string, 0, len(m))
	for n := range m {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "\n\t%s: %s", n, m[n])
	}
	return b.String()
}
