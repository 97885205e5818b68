// cairn's web view: reads and writes through the agent's /v1 API and
// stays current with blocking queries (?index=&wait=), as Consul's UI
// does. No framework, no build step.
"use strict";

const state = {
  token: sessionStorage.getItem("cairn-token") || "",
  view: "services",
  arg: "",
  generation: 0, // bumped when the view changes; stale watchers stop
};

// api calls the agent's HTTP API with the token, returning
// {status, index, body}; errors other than 404 are shown.
async function api(method, path, body) {
  const headers = {};
  if (state.token) headers["X-Consul-Token"] = state.token;
  const resp = await fetch(path, { method, headers, body });
  const text = await resp.text();
  if (!resp.ok && resp.status !== 404) {
    throw new Error(`${method} ${path}: ${resp.status} ${text}`);
  }
  let parsed = text;
  if ((resp.headers.get("Content-Type") || "").includes("json") && text) parsed = JSON.parse(text);
  return { status: resp.status, index: resp.headers.get("X-Consul-Index"), body: parsed };
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows) {
  return el("table", {}, el("tr", {}, headers.map((h) => el("th", {}, h))), rows);
}

function showError(err) {
  const box = document.getElementById("error");
  if (!err) { box.hidden = true; return; }
  box.textContent = String(err.message || err);
  box.hidden = false;
}

function setStatus(text) { document.getElementById("status").textContent = text; }

function statusOf(checks) {
  let s = "passing";
  for (const c of checks || []) {
    if (c.Status === "critical") return "critical";
    if (c.Status === "warning") s = "warning";
  }
  return s;
}

// watch runs a blocking query loop on path while the view that started
// it is shown, calling render(body) after each change.
async function watch(path, render) {
  const gen = state.generation;
  let index = 0;
  while (gen === state.generation) {
    try {
      const sep = path.includes("?") ? "&" : "?";
      const r = await api("GET", `${path}${sep}index=${index}&wait=30s`);
      if (gen !== state.generation) return;
      if (r.index && r.index === String(index)) continue; // wait timed out, nothing new
      index = Number(r.index || 0);
      await render(r.body, r.status);
      showError(null);
      setStatus(`live · index ${index} · ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      if (gen !== state.generation) return;
      showError(err);
      await new Promise((res) => setTimeout(res, 2000)); // back off before retrying
    }
  }
}

const views = {
  // Services: every service with its instances' health; a service's page
  // lists instances with each check's output. Health changes anywhere
  // wake /v1/health/state/any.
  async services(main) {
    await watch("/v1/health/state/any", async () => {
      const svcs = (await api("GET", "/v1/catalog/services")).body || {};
      const names = Object.keys(svcs).sort();
      const rows = [];
      for (const name of names) {
        const inst = (await api("GET", `/v1/health/service/${encodeURIComponent(name)}`)).body || [];
        const counts = { passing: 0, warning: 0, critical: 0 };
        for (const i of inst) counts[statusOf(i.Checks)]++;
        rows.push(el("tr", { "data-service": name },
          el("td", {}, el("a", { href: `#service/${encodeURIComponent(name)}` }, name)),
          el("td", {}, (svcs[name] || []).join(", ")),
          el("td", {}, inst.length),
          el("td", {}, el("span", { class: "passing" }, `${counts.passing} passing`), " ",
            counts.warning ? el("span", { class: "warning" }, `${counts.warning} warning `) : null,
            counts.critical ? el("span", { class: "critical" }, `${counts.critical} critical`) : null)));
      }
      main.replaceChildren(el("h2", {}, "Services"), table(["Service", "Tags", "Instances", "Health"], rows));
    });
  },

  async service(main, name) {
    await watch(`/v1/health/service/${encodeURIComponent(name)}`, async (inst) => {
      const rows = (inst || []).map((i) => el("tr", { "data-instance": i.Service.ID },
        el("td", {}, i.Node.Node),
        el("td", {}, i.Service.ID),
        el("td", {}, `${i.Service.Address || i.Node.Address}:${i.Service.Port}`),
        el("td", {}, (i.Service.Tags || []).join(", ")),
        el("td", {}, (i.Checks || []).map((c) => el("div", {},
          el("span", { class: c.Status }, `${c.Status} `), c.Name, c.Output ? el("pre", {}, c.Output) : null)))));
      main.replaceChildren(el("h2", {}, el("a", { href: "#services" }, "Services"), ` / ${name}`),
        table(["Node", "ID", "Address", "Tags", "Checks"], rows));
    });
  },

  // Nodes: gossip members (no blocking query in Consul's API for them;
  // the catalog's node list is watched instead and members re-read).
  async nodes(main) {
    await watch("/v1/catalog/nodes", async () => {
      const members = (await api("GET", "/v1/agent/members")).body || [];
      members.sort((a, b) => a.Name.localeCompare(b.Name));
      const statusName = ["none", "alive", "leaving", "left", "failed"];
      const rows = members.map((m) => {
        const s = statusName[m.Status] || String(m.Status);
        return el("tr", { "data-node": m.Name }, el("td", {}, m.Name), el("td", {}, `${m.Addr}:${m.Port}`),
          el("td", { class: s }, s), el("td", {}, (m.Tags && m.Tags.role) === "consul" ? "server" : "client"));
      });
      main.replaceChildren(el("h2", {}, "Nodes"), table(["Node", "Address", "Status", "Role"], rows));
    });
  },

  // Key/Value: browse by "/" levels; a key opens an editor.
  async kv(main, prefix) {
    prefix = prefix || "";
    if (prefix && !prefix.endsWith("/")) return views.kvkey(main, prefix);
    await watch(`/v1/kv/${encodePath(prefix)}?keys&separator=/`, async (keys, status) => {
      keys = status === 404 ? [] : keys || [];
      const parts = prefix.split("/").filter(Boolean);
      const crumbs = [el("a", { href: "#kv/" }, "(root)")];
      let acc = "";
      for (const p of parts) { acc += p + "/"; crumbs.push(el("a", { href: `#kv/${acc}` }, p + "/")); }
      const rows = keys.map((k) => el("tr", { "data-key": k }, el("td", {}, el("a", { href: `#kv/${k}` }, k))));
      const newKey = el("input", { id: "new-key", placeholder: `${prefix}new-key` });
      const create = el("form", { onsubmit: (e) => { e.preventDefault(); location.hash = `#kv/${newKey.value || prefix}`; } },
        newKey, el("button", { type: "submit" }, "Create or edit"));
      main.replaceChildren(el("h2", {}, "Key/Value"), el("div", { class: "crumbs" }, crumbs), create, table(["Key"], rows));
    });
  },

  async kvkey(main, key) {
    const r = await api("GET", `/v1/kv/${encodePath(key)}`);
    const entry = r.status === 404 ? null : r.body[0];
    const value = entry && entry.Value ? decodeBase64(entry.Value) : "";
    const area = el("textarea", { id: "kv-value" });
    area.value = value;
    const save = el("button", { id: "kv-save", onclick: async () => {
      try {
        await api("PUT", `/v1/kv/${encodePath(key)}`, area.value);
        setStatus(`saved ${key}`);
        showError(null);
      } catch (err) { showError(err); }
    } }, "Save");
    const del = el("button", { id: "kv-delete", onclick: async () => {
      if (!confirm(`Delete ${key}?`)) return;
      try {
        await api("DELETE", `/v1/kv/${encodePath(key)}`);
        location.hash = `#kv/${key.slice(0, key.lastIndexOf("/") + 1)}`;
      } catch (err) { showError(err); }
    } }, "Delete");
    const up = key.slice(0, key.lastIndexOf("/") + 1);
    main.replaceChildren(el("h2", {}, el("a", { href: `#kv/${up}` }, "Key/Value"), ` / ${key}`),
      entry ? el("p", {}, `ModifyIndex ${entry.ModifyIndex}, flags ${entry.Flags}${entry.Session ? ", locked by " + entry.Session : ""}`) : el("p", {}, "new key"),
      area, el("p", {}, save, " ", entry ? del : null));
  },

  // VIPs: the allocations the servers hold in the store, each with the
  // healthy instances the kernel balances its connections over.
  async vips(main) {
    await watch("/v1/health/state/any", async () => {
      const r = await api("GET", "/v1/kv/_cairn/vip/service/?recurse");
      const entries = r.status === 404 ? [] : r.body || [];
      const rows = [];
      for (const e of entries) {
        let rec = {};
        try { rec = JSON.parse(decodeBase64(e.Value)); } catch (_) { /* not a record */ }
        const name = rec.Service || e.Key.split("/").pop();
        const inst = (await api("GET", `/v1/health/service/${encodeURIComponent(name)}?passing`)).body || [];
        rows.push(el("tr", { "data-vip": name }, el("td", {}, el("a", { href: `#service/${encodeURIComponent(name)}` }, name)),
          el("td", {}, rec.Address || "?"),
          el("td", {}, inst.map((i) => el("div", {}, `${i.Service.Address || i.Node.Address}:${i.Service.Port} (${i.Node.Node})`)))));
      }
      main.replaceChildren(el("h2", {}, "VIPs"),
        rows.length ? table(["Service", "VIP", "Backends (passing)"], rows) : el("p", {}, "No VIPs (the agents run without -vip-cidr, or no service asked for one)."));
    });
  },

  // Agent: this agent's facts, and its template runner's counters from
  // its metrics.
  async agent(main) {
    const self = (await api("GET", "/v1/agent/self")).body;
    let tmpl = [];
    try {
      const m = (await api("GET", "/v1/agent/metrics")).body;
      tmpl = (m.Counters || []).filter((c) => c.Name === "cairn.template.events")
        .map((c) => el("tr", {}, el("td", {}, c.Labels.kind), el("td", {}, c.Count)));
    } catch (_) { /* metrics off */ }
    const cfg = self.Config || {};
    main.replaceChildren(el("h2", {}, "Agent"),
      table(["", ""], [
        el("tr", {}, el("td", {}, "Node"), el("td", {}, cfg.NodeName)),
        el("tr", {}, el("td", {}, "Datacenter"), el("td", {}, cfg.Datacenter)),
        el("tr", {}, el("td", {}, "Server"), el("td", {}, String(cfg.Server))),
        el("tr", {}, el("td", {}, "Version"), el("td", {}, cfg.Version)),
      ]),
      el("h3", {}, "Templates"),
      tmpl.length ? table(["Event", "Count"], tmpl) : el("p", {}, "No in-process templates (-template)."));
    setStatus(`read at ${new Date().toLocaleTimeString()}`);
  },
};

function encodePath(p) { return p.split("/").map(encodeURIComponent).join("/"); }

function decodeBase64(b64) {
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

function route() {
  const hash = decodeURIComponent(location.hash.slice(1)) || "services";
  const slash = hash.indexOf("/");
  state.view = slash < 0 ? hash : hash.slice(0, slash);
  state.arg = slash < 0 ? "" : hash.slice(slash + 1);
  state.generation++;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.id === `nav-${state.view === "service" ? "services" : state.view}`);
  }
  const main = document.getElementById("view");
  const render = views[state.view] || views.services;
  showError(null);
  render(main, state.arg).catch(showError);
}

document.getElementById("token").value = state.token;
document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = document.getElementById("token").value;
  sessionStorage.setItem("cairn-token", state.token);
  route();
});
window.addEventListener("hashchange", route);
route();
