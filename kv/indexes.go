package kv

import "fmt"

// stringIndex indexes the rows of one table by a string field, as
// memdb.StringFieldIndex does (the string and a NUL; no entry for an
// empty string; a prefix is the string alone), but reads the field with
// a function: StringFieldIndex looks the field up by name through
// reflection on every insert, and every server inserts every KV write.
type stringIndex[T any] struct {
	field func(*T) string
}

func (x stringIndex[T]) FromObject(raw any) (bool, []byte, error) {
	row, ok := raw.(*T)
	if !ok {
		return false, nil, fmt.Errorf("kv: a %T in the index of %T rows", raw, row)
	}
	v := x.field(row)
	if v == "" {
		return false, nil, nil
	}
	return true, nulTerminated(v), nil
}

func (stringIndex[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("kv: a string index takes one argument, not %d", len(args))
	}
	v, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("kv: a string index takes a string, not %#v", args[0])
	}
	return nulTerminated(v), nil
}

func (x stringIndex[T]) PrefixFromArgs(args ...any) ([]byte, error) {
	b, err := x.FromArgs(args...)
	if err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil
}

func nulTerminated(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}
