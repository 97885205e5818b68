package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// prettyWriter answers ?pretty as Consul does: a JSON answer indented by
// four spaces, with a newline at the end. The endpoints write compact
// JSON (and the answer caches hold it), so the answer is re-indented on
// its way out; anything that is not JSON (a raw value, a snapshot, the
// monitor's stream) passes through untouched.
type prettyWriter struct {
	http.ResponseWriter
	code    int          // held back until the body is indented; 0 until WriteHeader
	body    bytes.Buffer // the compact JSON body
	passing bool         // not JSON: writes go straight through
}

func (p *prettyWriter) WriteHeader(code int) {
	if p.code != 0 || p.passing {
		return
	}
	if p.Header().Get("Content-Type") != "application/json" {
		p.passing = true
		p.ResponseWriter.WriteHeader(code)
		return
	}
	p.code = code
}

func (p *prettyWriter) Write(b []byte) (int, error) {
	if p.code == 0 && !p.passing {
		p.WriteHeader(http.StatusOK)
	}
	if p.passing {
		return p.ResponseWriter.Write(b)
	}
	return p.body.Write(b)
}

// Flush sends what a streaming answer has written; it never applies to a
// held-back JSON answer, which finish writes whole.
func (p *prettyWriter) Flush() {
	if f, ok := p.ResponseWriter.(http.Flusher); ok && p.passing {
		f.Flush()
	}
}

func (p *prettyWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// finish writes the held-back JSON answer, indented.
func (p *prettyWriter) finish() {
	if p.code == 0 {
		return // nothing written, or passed through
	}
	body := p.body.Bytes()
	if len(body) > 0 {
		var out bytes.Buffer
		if json.Indent(&out, body, "", "    ") == nil {
			out.WriteByte('\n')
			body = out.Bytes()
		}
	}
	if p.Header().Get("Content-Length") != "" {
		p.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	p.ResponseWriter.WriteHeader(p.code)
	_, _ = p.ResponseWriter.Write(body)
}
