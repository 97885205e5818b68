package kv

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Raft entries are JSON (see command). KV writes, the bulk of the log,
// take a fast path both ways: under concurrent writers encoding/json's
// reflection and validation scan cost a server 5% of its CPU per write.
// The fast path writes and reads exactly the bytes encoding/json writes
// for such a command, so the log stays what any version reads; whatever
// it does not handle (a string that needs escaping, any other layout,
// any other command) goes through encoding/json as before.

// Pieces of a KV write command as encoding/json lays it out: Op's fields
// in order, none omitted, and WriteID only when set.
const (
	kvHead      = `{"Type":1,"Op":{"Verb":"`
	kvKey       = `","Key":"`
	kvValue     = `","Value":`
	kvFlags     = `,"Flags":`
	kvIndex     = `,"Index":`
	kvSession   = `,"Session":"`
	kvOpEnd     = `"}`
	kvWriteID   = `,"WriteID":"`
	kvEntryTail = `"}`
)

func (c command) encode() ([]byte, error) {
	if c.Op != nil {
		// The fixed pieces, two numbers of up to 20 digits, the rest.
		size := 150 + len(c.Op.Verb) + len(c.Op.Key) + base64.StdEncoding.EncodedLen(len(c.Op.Value)) + len(c.Op.Session) + len(c.WriteID)
		if b, ok := c.appendKV(make([]byte, 0, size)); ok {
			return b, nil
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("kv: encode command: %w", err)
	}
	return b, nil
}

// appendKV appends c as encoding/json would when c is a KV write whose
// strings need no escaping; ok is false (and the bytes unusable)
// otherwise.
func (c command) appendKV(b []byte) (_ []byte, ok bool) {
	if c.Type != cmdKV || c.Op == nil || c.Ops != nil || c.Session != nil || c.ID != "" || c.Index != 0 {
		return nil, false
	}
	op := c.Op
	for _, s := range [...]string{string(op.Verb), op.Key, op.Session, c.WriteID} {
		if !plainJSON(s) {
			return nil, false
		}
	}
	b = append(b, kvHead...)
	b = append(b, op.Verb...)
	b = append(b, kvKey...)
	b = append(b, op.Key...)
	b = append(b, kvValue...)
	if op.Value == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, op.Value)
		b = append(b, '"')
	}
	b = append(b, kvFlags...)
	b = strconv.AppendUint(b, op.Flags, 10)
	b = append(b, kvIndex...)
	b = strconv.AppendUint(b, op.Index, 10)
	b = append(b, kvSession...)
	b = append(b, op.Session...)
	b = append(b, kvOpEnd...)
	if c.WriteID != "" {
		b = append(b, kvWriteID...)
		b = append(b, c.WriteID...)
		b = append(b, kvEntryTail...)
	} else {
		b = append(b, '}')
	}
	return b, true
}

// plainJSON reports whether encoding/json writes s between quotes as it
// is: valid UTF-8 without control characters, quotes, backslashes, the
// characters it escapes for HTML (<, >, &) or U+2028/U+2029.
func plainJSON(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size
	}
	return true
}

// decodeCommand reads a Raft entry's command.
func decodeCommand(data []byte) (command, error) {
	if c, ok := decodeKV(data); ok {
		return c, nil
	}
	var c command
	err := json.Unmarshal(data, &c)
	return c, err
}

// decodeKV reads what appendKV writes; ok is false for anything else,
// including a KV write laid out otherwise (escapes, other field order,
// extra fields), which encoding/json then reads.
func decodeKV(data []byte) (_ command, ok bool) {
	d := kvReader{rest: data}
	d.expect(kvHead)
	verb := d.plain()
	d.expect(kvKey)
	key := d.plain()
	d.expect(kvValue)
	var value []byte
	if !d.skip("null") {
		d.expect(`"`)
		value = d.base64()
		d.expect(`"`)
	}
	d.expect(kvFlags)
	flags := d.uint()
	d.expect(kvIndex)
	index := d.uint()
	d.expect(kvSession)
	session := d.plain()
	d.expect(kvOpEnd)
	var writeID string
	if d.skip(kvWriteID) {
		writeID = d.plain()
		d.expect(kvEntryTail)
	} else {
		d.expect("}")
	}
	if d.bad || len(d.rest) != 0 {
		return command{}, false
	}
	op := &Op{Verb: Verb(verb), Key: key, Value: value, Flags: flags, Index: index, Session: session}
	return command{Type: cmdKV, Op: op, WriteID: writeID}, true
}

// kvReader reads the pieces of a KV write command; the first mismatch
// sets bad and makes every later read a no-op.
type kvReader struct {
	rest []byte
	bad  bool
}

func (d *kvReader) skip(s string) bool {
	if d.bad || !bytes.HasPrefix(d.rest, []byte(s)) {
		return false
	}
	d.rest = d.rest[len(s):]
	return true
}

func (d *kvReader) expect(s string) {
	if !d.skip(s) {
		d.bad = true
	}
}

// plain reads a string up to its closing quote, which stays unread; a
// string with an escape or anything plainJSON refuses is not for the
// fast path.
func (d *kvReader) plain() string {
	if d.bad {
		return ""
	}
	end := bytes.IndexByte(d.rest, '"')
	if end < 0 {
		d.bad = true
		return ""
	}
	s := string(d.rest[:end])
	if !plainJSON(s) {
		d.bad = true
		return ""
	}
	d.rest = d.rest[end:]
	return s
}

func (d *kvReader) base64() []byte {
	if d.bad {
		return nil
	}
	end := bytes.IndexByte(d.rest, '"')
	if end < 0 {
		d.bad = true
		return nil
	}
	v, err := base64.StdEncoding.AppendDecode(make([]byte, 0, base64.StdEncoding.DecodedLen(end)), d.rest[:end])
	if err != nil {
		d.bad = true
		return nil
	}
	d.rest = d.rest[end:]
	return v
}

// uint reads a decimal number as encoding/json writes one: no sign, no
// leading zero, no fraction or exponent.
func (d *kvReader) uint() uint64 {
	if d.bad {
		return 0
	}
	var n uint64
	end := 0
	for ; end < len(d.rest) && d.rest[end] >= '0' && d.rest[end] <= '9'; end++ {
		digit := uint64(d.rest[end] - '0')
		if n > (math.MaxUint64-digit)/10 {
			d.bad = true // overflows: encoding/json refuses it too
			return 0
		}
		n = n*10 + digit
	}
	if end == 0 || (end > 1 && d.rest[0] == '0') {
		d.bad = true
		return 0
	}
	d.rest = d.rest[end:]
	return n
}
