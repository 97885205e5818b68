package kv

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// benchLogs is a batch of n committed KV sets to 64 keys, 128-byte values,
// each with a write ID as the HTTP API sends them: what the FSM gets from
// one Raft commit under n concurrent writers.
func benchLogs(b *testing.B, first uint64, n int) []*raft.Log {
	b.Helper()
	v := make([]byte, 128)
	logs := make([]*raft.Log, n)
	for i := range logs {
		idx := first + uint64(i)
		c := command{Type: cmdKV, Op: &Op{Verb: VerbSet, Key: fmt.Sprintf("bench/%d/%d", i%16, idx%64), Value: v}, WriteID: fmt.Sprintf("bench-w%d", idx)}
		data, err := c.encode()
		if err != nil {
			b.Fatal(err)
		}
		logs[i] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}
	}
	return logs
}

// BenchmarkFSMApply is the state machine's share of a KV PUT: decoding
// the entry, the write-ID record and the memdb write, for batches of 1,
// 8 and 64 committed entries: what one Raft commit hands the FSM under
// one writer; about what it handed the servers of three under 16
// writers on a 2-CPU machine (6.2 entries on the leader, 8.1 on a
// follower); and 64 writers' worth. One op is one entry; cpu-ns/op is the
// process's CPU time per entry (GC included), steadier than ns/op on a
// shared machine.
func BenchmarkFSMApply(b *testing.B) {
	for _, n := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			f := newFSM(nil)
			logs := benchLogs(b, 1, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			for len(logs) > 0 {
				batch := logs[:min(n, len(logs))]
				logs = logs[len(batch):]
				for _, res := range applyAll(f, batch) {
					if ok, _ := res.(bool); !ok {
						b.Fatalf("apply = %v", res)
					}
				}
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// applyAll hands logs to f as raft's runFSM does: in one ApplyBatch when
// f batches, else one Apply each.
func applyAll(f raft.FSM, logs []*raft.Log) []any {
	if bf, ok := f.(raft.BatchingFSM); ok {
		return bf.ApplyBatch(logs)
	}
	out := make([]any, len(logs))
	for i, l := range logs {
		out[i] = f.Apply(l)
	}
	return out
}
