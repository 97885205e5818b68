package template

import (
	"fmt"
	"sort"
)

// Scratch is the per-render scratch space `scratch` returns, with
// consul-template's methods: values set while rendering, read later in the
// same render. The setters return "" so that {{ scratch.Set "k" 1 }}
// prints nothing.
type Scratch struct {
	values map[string]any
}

func (s *Scratch) init() {
	if s.values == nil {
		s.values = make(map[string]any)
	}
}

// Key reports whether k is set.
func (s *Scratch) Key(k string) bool {
	_, ok := s.values[k]
	return ok
}

// Get returns the value of k, nil when unset.
func (s *Scratch) Get(k string) any { return s.values[k] }

// Set sets k to v, replacing what it held.
func (s *Scratch) Set(k string, v any) string {
	s.init()
	s.values[k] = v
	return ""
}

// SetX sets k to v unless k is already set.
func (s *Scratch) SetX(k string, v any) string {
	s.init()
	if _, ok := s.values[k]; !ok {
		s.values[k] = v
	}
	return ""
}

// MapSet sets key mk of the map named k to v.
func (s *Scratch) MapSet(k, mk string, v any) (string, error) {
	s.init()
	return s.mapSet(k, mk, v, true)
}

// MapSetX sets key mk of the map named k to v unless mk is already set.
func (s *Scratch) MapSetX(k, mk string, v any) (string, error) {
	s.init()
	return s.mapSet(k, mk, v, false)
}

func (s *Scratch) mapSet(k, mk string, v any, overwrite bool) (string, error) {
	if _, ok := s.values[k]; !ok {
		s.values[k] = make(map[string]any)
	}
	m, ok := s.values[k].(map[string]any)
	if !ok {
		return "", fmt.Errorf("%q is not a map", k)
	}
	if _, ok := m[mk]; overwrite || !ok {
		m[mk] = v
	}
	return "", nil
}

// MapValues returns the values of the map named k, sorted by their keys;
// nil when k is not a map.
func (s *Scratch) MapValues(k string) ([]any, error) {
	s.init()
	m, ok := s.values[k].(map[string]any)
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(m))
	for mk := range m {
		keys = append(keys, mk)
	}
	sort.Strings(keys)
	out := make([]any, len(keys))
	for i, mk := range keys {
		out[i] = m[mk]
	}
	return out, nil
}
