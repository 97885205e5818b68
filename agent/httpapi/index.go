package httpapi

import (
	"fmt"
	"html"
)

// index answers GET / with a small page that says what this address
// serves and links the API, so that opening http://localhost:8500/ in a
// browser, the first thing a new user tries, is not a bare 404.
func (h *handler) index(c *call) error {
	c.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(c.w, indexPage, html.EscapeString(h.self.NodeName), html.EscapeString(h.self.Datacenter), html.EscapeString(h.self.Version))
	return nil
}

const indexPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>cairn agent %[1]s</title></head>
<body>
<h1>cairn agent %[1]s</h1>
<p>Datacenter %[2]s, cairn %[3]s. This address serves Consul's HTTP API under <code>/v1/</code>;
any Consul client (<code>consul</code>, <code>github.com/hashicorp/consul/api</code>, consul-template, <code>curl</code>) works against it.
A web UI, when this build has one, is at <a href="/ui/">/ui/</a>.</p>
<ul>
<li><a href="/v1/agent/self">/v1/agent/self</a>: this agent's configuration and state</li>
<li><a href="/v1/agent/members">/v1/agent/members</a>: the members of the cluster (cairn members)</li>
<li><a href="/v1/catalog/services">/v1/catalog/services</a>: every service and its tags</li>
<li><a href="/v1/health/state/any">/v1/health/state/any</a>: every health check</li>
<li><a href="/v1/kv/?recurse">/v1/kv/?recurse</a>: the key-value store</li>
<li><a href="/v1/status/leader">/v1/status/leader</a>: the Raft leader</li>
</ul>
</body></html>
`
