package agent

import (
	"context"
	"path/filepath"

	"github.com/cairn-dev/cairn/agent/httpapi"
	"github.com/cairn-dev/cairn/agent/membership"
)

// keyringFile is where the gossip keyring is kept in the data dir:
// Consul's path, so that a rotated keyring survives restarts.
func keyringFile(dataDir string) string { return filepath.Join(dataDir, "serf", "local.keyring") }

// keyring adapts membership's keyring operations to httpapi.Keyring.
type keyring struct{ ml *membership.Membership }

func (k keyring) Keyring(ctx context.Context, op, key string) (httpapi.KeyringResult, error) {
	r, err := k.ml.Keyring(ctx, op, key)
	if err != nil {
		return httpapi.KeyringResult{}, err
	}
	return httpapi.KeyringResult{Keys: r.Keys, PrimaryKeys: r.PrimaryKeys, NumNodes: r.NumNodes, Messages: r.Messages}, nil
}
