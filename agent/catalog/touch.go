package catalog

// Touch moves the index of the named services as a change would,
// without changing them: their blocking queries wake with an index that
// moved, and the change feed reports them. It is for what the agent adds
// to the catalog's answers from elsewhere (a service's VIP, as its
// consul-virtual tagged address), so that a query that blocks on the
// service sees it appear or change. Names are matched without regard to
// case; a name with no instances is skipped (its queries already wake
// on any service change).
func (c *Catalog) Touch(names ...string) {
	c.state.touch(names)
}

func (s *state) touch(names []string) {
	tx := s.db.Txn(true)
	defer tx.Abort()
	w := &writer{tx: tx, idx: s.index.Load() + 1, touched: map[string]bool{}, tables: map[string]bool{}}
	for _, n := range names {
		n = lower(n)
		raw, err := tx.First(tableServices, "service", n)
		must(err)
		if raw != nil {
			w.touched[n] = true
		}
	}
	if len(w.touched) == 0 {
		return
	}
	s.finish(w)
	s.index.Store(w.idx)
	tx.Commit()
}
