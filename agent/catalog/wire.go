package catalog

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Wire format. One agent's whole state at one version is a record:
//
//	uvarint len(origin) | origin | uvarint version | body
//
// where body is the JSON of the nodes (wireBody), deflated: a node with a
// hundred services is some 40 KB of JSON and 4 KB on the wire. The header
// stays outside the compression, so a receiver drops a version it already
// has without inflating anything.
//
// A gossip message is a type byte (msgRecord) and a record. A push/pull
// state is a format byte (pushPullFormat) and records, each preceded by
// its uvarint length.

const (
	msgRecord      byte = 1
	pushPullFormat byte = 1
	// The signed forms (signing.go): each record ends with its origin's
	// ed25519 signature of everything before it.
	msgSignedRecord byte = 2
	pushPullSigned  byte = 2

	// maxBodySize bounds an inflated body (a hostile or broken peer must
	// not make us allocate without limit): 64 MiB is some 150,000
	// services.
	maxBodySize = 64 << 20
)

type wireBody struct {
	Nodes []nodeState
}

func encodeRecord(origin string, version uint64, nodes []nodeState) []byte {
	js, err := json.Marshal(wireBody{Nodes: nodes})
	if err != nil {
		// Every field is a plain value: not reached.
		panic(fmt.Sprintf("catalog: encode state: %v", err))
	}
	var b bytes.Buffer
	b.Grow(len(js)/4 + 64)
	hdr := binary.AppendUvarint(nil, uint64(len(origin)))
	hdr = append(hdr, origin...)
	hdr = binary.AppendUvarint(hdr, version)
	b.Write(hdr)
	zw, _ := flate.NewWriter(&b, flate.BestSpeed)
	zw.Write(js)
	zw.Close()
	// Records are kept for push/pull; do not keep the buffer's slack.
	return bytes.Clone(b.Bytes())
}

// recordHeader reads a record's origin and version, and returns the body.
func recordHeader(rec []byte) (origin string, version uint64, body []byte, err error) {
	n, w := binary.Uvarint(rec)
	if w <= 0 || n > uint64(len(rec)-w) || n == 0 {
		return "", 0, nil, errors.New("bad origin length")
	}
	origin = string(rec[w : w+int(n)])
	rest := rec[w+int(n):]
	version, w = binary.Uvarint(rest)
	if w <= 0 {
		return "", 0, nil, errors.New("bad version")
	}
	return origin, version, rest[w:], nil
}

// decodeBody inflates and decodes a record body. The bytes come from the
// network: anything malformed is an error, never a panic.
func decodeBody(body []byte) ([]nodeState, error) {
	zr := flate.NewReader(bytes.NewReader(body))
	defer zr.Close()
	js, err := io.ReadAll(io.LimitReader(zr, maxBodySize+1))
	if err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	if len(js) > maxBodySize {
		return nil, fmt.Errorf("state is larger than %d bytes", maxBodySize)
	}
	var wb wireBody
	if err := json.Unmarshal(js, &wb); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	for i := range wb.Nodes {
		ns := &wb.Nodes[i]
		if ns.Node == nil || ns.Node.Node == "" {
			return nil, errors.New("a node has no name")
		}
		normalizeNode(ns.Node)
		for _, s := range ns.Services {
			if s == nil || s.ID == "" || s.Name == "" {
				return nil, fmt.Errorf("node %q has a service without ID or name", ns.Node.Node)
			}
			s.Node = ns.Node.Node
			normalizeService(s)
		}
		for _, c := range ns.Checks {
			if c == nil || c.CheckID == "" || !ValidStatus(c.Status) {
				return nil, fmt.Errorf("node %q has a check without ID or with a bad status", ns.Node.Node)
			}
			c.Node = ns.Node.Node
			normalizeCheck(c)
		}
	}
	return wb.Nodes, nil
}

// splitPushPull returns the records of a push/pull state.
func splitPushPull(buf []byte) ([][]byte, error) {
	if len(buf) == 0 {
		return nil, nil
	}
	if buf[0] != pushPullFormat && buf[0] != pushPullSigned {
		return nil, fmt.Errorf("unknown format %d", buf[0])
	}
	var out [][]byte
	rest := buf[1:]
	for len(rest) > 0 {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return out, errors.New("bad record length")
		}
		out = append(out, rest[w:w+int(n)])
		rest = rest[w+int(n):]
	}
	return out, nil
}

// withSerfHealth adds the serfHealth check to the agent's own node (the
// one named like origin): its health as membership sees it. External
// nodes have none, as in Consul.
func withSerfHealth(nodes []nodeState, origin, status string) []nodeState {
	out := make([]nodeState, len(nodes))
	copy(out, nodes)
	for i, ns := range out {
		if lower(ns.Node.Node) != lower(origin) {
			continue
		}
		output := serfAliveOutput
		if status != StatusPassing {
			output = serfFailedOutput
		}
		serf := &Check{
			Node:    ns.Node.Node,
			CheckID: SerfCheckID,
			Name:    SerfCheckName,
			Status:  status,
			Output:  output,
		}
		checks := make([]*Check, 0, len(ns.Checks)+1)
		checks = append(checks, serf)
		for _, c := range ns.Checks {
			if c.CheckID != SerfCheckID {
				checks = append(checks, c)
			}
		}
		out[i].Checks = checks
	}
	return out
}
