package membership

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// The gossip keyring: the keys -encrypt started with, rotated on every
// live member at once as `consul keyring` does (install a new key
// everywhere, make it the primary, remove the old one). Each agent keeps
// its keyring in KeyringFile (Consul's serf/local.keyring: a JSON array
// of base64 keys, the primary first) so that a restart keeps the rotated
// keys; when that file exists it wins over -encrypt.
//
// An operation reaches the members as membership's own gossip message
// (msgKeyringRequest, sent over TCP to each live member, encrypted with
// the current primary key); each member applies it to its keyring, saves
// the file, and answers with msgKeyringResponse: its keys, its primary,
// or its error. The caller collects the answers until every member has
// answered or KeyringTimeout passes.

// Keyring operations, as the HTTP API and the CLI name them.
const (
	KeyringList    = "list"
	KeyringInstall = "install"
	KeyringUse     = "use"
	KeyringRemove  = "remove"
)

// ErrNoEncryption: keyring operations need gossip encryption.
var ErrNoEncryption = errors.New("gossip encryption is not enabled on this agent; start every agent with -encrypt (make a key with `cairn keygen`) to use keyring operations")

// KeyringTimeout is how long an operation waits for the members' answers.
const KeyringTimeout = 5 * time.Second

// KeyringResult is the cluster's answer to a keyring operation, in the
// shape of Consul's KeyringResponse.
type KeyringResult struct {
	// Keys counts the members holding each key (base64).
	Keys map[string]int
	// PrimaryKeys counts the members whose primary key each key is.
	PrimaryKeys map[string]int
	// NumNodes is how many members were asked (this agent included).
	NumNodes int
	// Messages are the members' errors, by node name; a member that did
	// not answer in time is there too.
	Messages map[string]string
}

// Failed reports how many members answered with an error or not at all.
func (r KeyringResult) Failed() int { return len(r.Messages) }

type keyringRequest struct {
	ID   uint64
	From string
	// Addr is From's gossip address: the answer goes there, even when
	// the member's own table has not caught up with a restart yet.
	Addr string `json:",omitempty"`
	Op   string
	Key  string `json:",omitempty"`
}

type keyringResponse struct {
	ID      uint64
	Node    string
	Keys    []string `json:",omitempty"`
	Primary string   `json:",omitempty"`
	Error   string   `json:",omitempty"`
}

// keyringState is the pending operations of this agent.
type keyringState struct {
	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan keyringResponse
	fileMu  sync.Mutex // serializes writes of KeyringFile
}

// loadKeyring makes memberlist's keyring from KeyringFile, or from
// EncryptKey (saving it to the file). nil, nil means no encryption.
func (c Config) loadKeyring(log interface{ Warn(string, ...any) }) (*memberlist.Keyring, error) {
	if c.KeyringFile != "" {
		keys, err := readKeyringFile(c.KeyringFile)
		switch {
		case err == nil:
			if c.EncryptKey != nil && !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, c.EncryptKey) }) {
				log.Warn("-encrypt is ignored: the keyring file exists and wins (its keys may have been rotated with `cairn keyring`); remove the file to start from -encrypt", "file", c.KeyringFile)
			}
			return memberlist.NewKeyring(keys, keys[0])
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
	}
	if c.EncryptKey == nil {
		return nil, nil
	}
	if c.KeyringFile != "" {
		if err := writeKeyringFile(c.KeyringFile, [][]byte{c.EncryptKey}); err != nil {
			return nil, err
		}
	}
	return memberlist.NewKeyring(nil, c.EncryptKey)
}

func readKeyringFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var encoded []string
	if err := json.Unmarshal(b, &encoded); err != nil {
		return nil, fmt.Errorf("keyring file %s is not a JSON array of base64 keys: %v; fix or remove it (the agent then starts from -encrypt)", path, err)
	}
	if len(encoded) == 0 {
		return nil, fmt.Errorf("keyring file %s holds no key; remove it to start from -encrypt", path)
	}
	keys := make([][]byte, 0, len(encoded))
	for _, e := range encoded {
		k, err := DecodeKey(e)
		if err != nil {
			return nil, fmt.Errorf("keyring file %s: %w", path, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func writeKeyringFile(path string, keys [][]byte) error {
	encoded := make([]string, len(keys))
	for i, k := range keys {
		encoded[i] = base64.StdEncoding.EncodeToString(k)
	}
	b, _ := json.Marshal(encoded)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save the gossip keyring: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save the gossip keyring: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save the gossip keyring: %w", err)
	}
	return nil
}

// keyring is memberlist's keyring; nil without encryption.
func (m *Membership) keyring() *memberlist.Keyring { return m.kr }

// applyKeyring runs op on this agent's keyring and saves it; it returns
// this agent's answer.
func (m *Membership) applyKeyring(op, key string) keyringResponse {
	resp := keyringResponse{Node: m.cfg.NodeName}
	kr := m.keyring()
	if kr == nil {
		resp.Error = ErrNoEncryption.Error()
		return resp
	}
	var err error
	if op != KeyringList {
		var k []byte
		if k, err = DecodeKey(key); err == nil {
			m.keyringState.fileMu.Lock()
			switch op {
			case KeyringInstall:
				err = kr.AddKey(k)
			case KeyringUse:
				err = kr.UseKey(k)
			case KeyringRemove:
				err = kr.RemoveKey(k)
			default:
				err = fmt.Errorf("unknown keyring operation %q", op)
			}
			if err == nil && m.cfg.KeyringFile != "" {
				err = writeKeyringFile(m.cfg.KeyringFile, kr.GetKeys())
			}
			m.keyringState.fileMu.Unlock()
		}
	}
	if err != nil {
		resp.Error = err.Error()
	}
	for _, k := range kr.GetKeys() {
		resp.Keys = append(resp.Keys, base64.StdEncoding.EncodeToString(k))
	}
	resp.Primary = base64.StdEncoding.EncodeToString(kr.GetPrimaryKey())
	return resp
}

// Keyring runs a keyring operation (KeyringList, KeyringInstall,
// KeyringUse, KeyringRemove; key is base64, unused by list) on this
// agent and every live member, and returns their answers. Removing the
// primary key is refused before anything is sent.
func (m *Membership) Keyring(ctx context.Context, op, key string) (KeyringResult, error) {
	kr := m.keyring()
	if kr == nil {
		return KeyringResult{}, ErrNoEncryption
	}
	switch op {
	case KeyringList:
	case KeyringInstall, KeyringUse, KeyringRemove:
		k, err := DecodeKey(key)
		if err != nil {
			return KeyringResult{}, err
		}
		if op == KeyringRemove && bytes.Equal(k, kr.GetPrimaryKey()) {
			return KeyringResult{}, errors.New("Removing the primary key is not allowed")
		}
	default:
		return KeyringResult{}, fmt.Errorf("unknown keyring operation %q; use list, install, use or remove", op)
	}
	var asked []string
	_, members := m.table.list(nil)
	for _, mem := range members {
		if mem.Name == m.cfg.NodeName || (mem.Status != StatusAlive && mem.Status != StatusLeaving) {
			continue
		}
		asked = append(asked, mem.Name)
	}
	st := &m.keyringState
	st.mu.Lock()
	st.next++
	id := st.next
	answers := make(chan keyringResponse, len(asked))
	if st.pending == nil {
		st.pending = map[uint64]chan keyringResponse{}
	}
	st.pending[id] = answers
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.pending, id)
		st.mu.Unlock()
	}()

	self := m.LocalMember()
	req, _ := json.Marshal(keyringRequest{ID: id, From: m.cfg.NodeName, Addr: netip.AddrPortFrom(self.Addr, uint16(self.Port)).String(), Op: op, Key: key})
	msg := append([]byte{msgKeyringRequest}, req...)
	res := KeyringResult{Keys: map[string]int{}, PrimaryKeys: map[string]int{}, Messages: map[string]string{}, NumNodes: len(asked) + 1}
	add := func(r keyringResponse) {
		if r.Error != "" {
			res.Messages[r.Node] = r.Error
		}
		for _, k := range r.Keys {
			res.Keys[k]++
		}
		if r.Primary != "" {
			res.PrimaryKeys[r.Primary]++
		}
	}
	// This agent first: for install, it then holds the key the others'
	// answers may come encrypted with after a use.
	add(m.applyKeyring(op, key))
	waiting := map[string]bool{}
	for _, name := range asked {
		to, err := (&Channel{m: m}).member(name)
		if err == nil {
			err = m.ml.SendReliable(to, msg)
		}
		if err != nil {
			res.Messages[name] = fmt.Sprintf("not reached: %v", err)
			continue
		}
		waiting[name] = true
	}
	timer := time.NewTimer(KeyringTimeout)
	defer timer.Stop()
	for len(waiting) > 0 {
		select {
		case r := <-answers:
			if waiting[r.Node] {
				delete(waiting, r.Node)
				add(r)
			}
		case <-timer.C:
			for name := range waiting {
				res.Messages[name] = fmt.Sprintf("no answer within %v", KeyringTimeout)
			}
			return res, nil
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	return res, nil
}

// handleKeyringRequest answers another agent's keyring operation. It is
// called from memberlist's goroutine; the answer is sent from a new one.
func (m *Membership) handleKeyringRequest(buf []byte) {
	var req keyringRequest
	if err := json.Unmarshal(buf, &req); err != nil {
		m.log.Warn("ignoring a malformed keyring request", "err", err)
		return
	}
	resp := m.applyKeyring(req.Op, req.Key)
	resp.ID = req.ID
	if resp.Error == "" && req.Op != KeyringList {
		m.log.Info("gossip keyring changed", "op", req.Op, "by", req.From)
	}
	b, _ := json.Marshal(resp)
	msg := append([]byte{msgKeyringResponse}, b...)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		to, err := (&Channel{m: m}).member(req.From)
		if ap, perr := netip.ParseAddrPort(req.Addr); perr == nil {
			to, err = &memberlist.Node{Name: req.From, Addr: net.IP(ap.Addr().AsSlice()), Port: ap.Port()}, nil
		}
		if err == nil {
			err = m.ml.SendReliable(to, msg)
		}
		if err != nil {
			m.log.Warn("could not answer a keyring request", "to", req.From, "err", err)
		}
	}()
}

// handleKeyringResponse hands an answer to the operation waiting for it.
func (m *Membership) handleKeyringResponse(buf []byte) {
	var resp keyringResponse
	if err := json.Unmarshal(buf, &resp); err != nil {
		return
	}
	st := &m.keyringState
	st.mu.Lock()
	ch := st.pending[resp.ID]
	st.mu.Unlock()
	if ch != nil {
		select {
		case ch <- resp:
		default:
		}
	}
}
