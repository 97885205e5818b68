package nft

import (
	"time"

	"golang.org/x/sys/unix"
)

// membarrierCmdGlobal is MEMBARRIER_CMD_GLOBAL (linux/membarrier.h),
// which x/sys/unix does not name. The kernel implements it as
// synchronize_rcu(): it returns once every CPU has left the RCU
// read-side sections it was in when the call began.
const membarrierCmdGlobal = 1

// graceFallback is how long waitGrace waits when the kernel refuses
// membarrier (nohz_full CPUs, or a seccomp profile without it). An RCU
// grace period on an idle machine is a few milliseconds; this is a
// guess with room, not a guarantee, so it is only the fallback.
const graceFallback = 20 * time.Millisecond

// waitGrace returns once no packet can still be inside a netfilter hook
// it entered before the call: a packet walks the hook under
// rcu_read_lock (nf_hook), so an RCU grace period covers its whole
// traversal, however long a preempted virtual CPU makes it.
//
// builder.commit calls it between its transactions. The kernel walks a
// chain's rules in the generation a packet entered with but looks set
// elements up in the current one; after a grace period no packet of the
// previous generation is left, so the next transaction cannot meet one
// half way (TestSystemGenerationRace).
func waitGrace() {
	_, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0)
	if errno != 0 {
		time.Sleep(graceFallback)
	}
}
