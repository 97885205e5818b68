// Package catalogtxn makes the catalog half of a Consul /v1/txn commit
// with its KV half, all or nothing, even across a kill -9.
//
// The KV store is replicated by Raft; the catalog is each agent's own
// (a durable log in its data dir, spread by gossip). A transaction that
// mixes them commits in one Raft transaction: its KV operations plus an
// intent, the catalog steps as JSON, under
//
//	_cairn/txn/<node>/<intent ID>
//
// That Raft commit is the transaction's one commit point. Before it,
// nothing of the transaction is visible (the catalog steps are checked,
// not applied); after it, the agent applies the steps to its catalog,
// records the intent's ID in the catalog's ledger (on disk), and deletes
// the key. A crash anywhere in between leaves the key: the agent's
// recovery loop (Coordinator.Run, level-triggered on the KV prefix of its
// node) applies every intent its ledger does not have, and deletes the
// ones it has. So after a restart either every operation of the
// transaction is visible or none is.
//
// Transactions with catalog steps are serialized per agent (Lock), so
// that their catalog preconditions (cas, get) are checked against a
// catalog no other transaction is changing, as Consul's state store
// serializes its transactions.
//
// It imports kv and agent/catalog, never agent or agent/httpapi.
package catalogtxn
