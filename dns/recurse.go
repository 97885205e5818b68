package dns

import (
	mdns "github.com/miekg/dns"
)

// forward asks the recursors for req, in order, and returns the first
// answer that is not SERVFAIL or REFUSED, ready to send back (no OPT
// record: the caller adds its own), or nil when none gave one. Each
// exchange is bounded by Config.RecursorTimeout.
func (s *Server) forward(req *mdns.Msg) *mdns.Msg {
	for _, addr := range s.st.recursors {
		resp, err := s.exchange(req, addr)
		if err != nil {
			// Per query, so not worth a line at info: the SERVFAIL the
			// client gets when every recursor fails says enough.
			s.log.Debug("dns: recursor failed", "recursor", addr, "name", req.Question[0].Name, "err", err)
			continue
		}
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			s.log.Debug("dns: recursor refused", "recursor", addr, "name", req.Question[0].Name, "rcode", mdns.RcodeToString[resp.Rcode])
			continue
		}
		resp.Id = req.Id
		resp.Response = true
		resp.RecursionAvailable = true
		resp.Question = req.Question
		extra := resp.Extra[:0]
		for _, rr := range resp.Extra {
			if rr.Header().Rrtype != mdns.TypeOPT {
				extra = append(extra, rr)
			}
		}
		resp.Extra = extra
		return resp
	}
	return nil
}

// exchange asks one recursor over UDP, then over TCP when the UDP answer
// was truncated.
func (s *Server) exchange(req *mdns.Msg, addr string) (*mdns.Msg, error) {
	resp, _, err := s.udpc.Exchange(req, addr)
	if err == nil && resp.Truncated {
		resp, _, err = s.tcpc.Exchange(req, addr)
	}
	return resp, err
}
