package agent

import (
	"fmt"
	"os"
	"syscall"

	"github.com/cairn-dev/cairn/agent/catalogtxn"
)

// crashEnv names a crash point of agent/catalogtxn (committed, applying,
// applied) at which the agent kills itself with SIGKILL, as kill -9
// would: the crash tests of /v1/txn set it on a built binary. Unset in
// any real deployment.
const crashEnv = "CAIRN_TEST_TXN_CRASH"

// txnCoordinator returns the agent's coordinator of /v1/txn transactions
// with catalog operations (made once).
func (w *wiring) txnCoordinator() (*catalogtxn.Coordinator, error) {
	if w.txns != nil {
		return w.txns, nil
	}
	var crash func(string)
	if point := os.Getenv(crashEnv); point != "" {
		log := w.log
		crash = func(p string) {
			if p == point {
				log.Warn("txn: killing the agent at a crash point, as " + crashEnv + " asks")
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // the signal is on its way
			}
		}
	}
	co, err := catalogtxn.New(catalogtxn.Config{
		Node:    w.cfg.NodeName,
		Store:   w.tel.store(w.routerFor()),
		Agent:   w.routerFor().Internal(),
		Catalog: w.cat,
		Logger:  w.log,
		Crash:   crash,
	})
	if err != nil {
		return nil, fmt.Errorf("build the transaction coordinator: %w", err)
	}
	w.txns = co
	return co, nil
}

// txnRecoveryPart completes the transactions a crash interrupted between
// their Raft commit and their catalog half, then any whose intent shows
// up later (see agent/catalogtxn).
func (w *wiring) txnRecoveryPart() (part, bool, error) {
	co, err := w.txnCoordinator()
	if err != nil {
		return part{}, false, err
	}
	return part{"transaction recovery", co.Run}, true, nil
}
