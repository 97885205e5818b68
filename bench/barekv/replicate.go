package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
)

// A replicated bare server is the ceiling of a three-server durable
// write: the leader answers a PUT once the record is synced to its own
// log and to a majority's (itself and one of two followers), with nothing
// else on the path: no consensus bookkeeping, no state, no encoding
// beyond a length prefix. It sends each record to the followers while it
// writes its own log (Raft thesis §10.2.1), which hashicorp/raft does
// not, so this is above what any hashicorp/raft server can reach.
//
// The stream to a follower is frames of records, one frame in flight:
//
//	frame: last seq (8 bytes) | count (4) | count × (length (4) | bytes)
//	ack:   last seq (8 bytes), once the frame's records are synced
//
// A frame carries every record added since the last one was sent, so a
// follower syncs once per frame, as Raft's followers sync once per
// AppendEntries.

// replicator keeps the records not yet on every follower and what each
// follower has acknowledged.
type replicator struct {
	mu    sync.Mutex
	cond  *sync.Cond
	recs  [][]byte // records base+1 .. base+len(recs)
	base  uint64
	seq   uint64   // the last record added
	acked []uint64 // per follower: the last record it has synced
	need  int      // follower acks a record needs: a majority with the leader
	err   error
}

// replicate connects to the followers at addrs and starts sending them
// records.
func replicate(addrs []string) (*replicator, error) {
	r := &replicator{acked: make([]uint64, len(addrs)), need: (len(addrs) + 1) / 2}
	r.cond = sync.NewCond(&r.mu)
	conns := make([]net.Conn, 0, len(addrs))
	for _, a := range addrs {
		c, err := net.Dial("tcp", a)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("connect to follower %s: %w (start it with -follow %s first)", a, err, a)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		go r.send(i, c)
	}
	return r, nil
}

// add queues a record for the followers and returns its sequence number.
func (r *replicator) add(data []byte) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	r.recs = append(r.recs, data)
	r.cond.Broadcast()
	return r.seq
}

// wait returns once enough followers have synced record seq.
func (r *replicator) wait(seq uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.err == nil {
		n := 0
		for _, a := range r.acked {
			if a >= seq {
				n++
			}
		}
		if n >= r.need {
			return nil
		}
		r.cond.Wait()
	}
	return r.err
}

// close stops sending: waiters return an error, and each follower's loop
// closes its connection at its next turn.
func (r *replicator) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = errors.New("replicator closed")
	}
	r.cond.Broadcast()
}

// send is follower i's loop: a frame of everything it lacks, then its ack.
func (r *replicator) send(i int, c net.Conn) {
	defer c.Close()
	w, rd := bufio.NewWriter(c), bufio.NewReader(c)
	var hdr [12]byte
	sent := uint64(0)
	for {
		r.mu.Lock()
		for sent == r.seq && r.err == nil {
			r.cond.Wait()
		}
		if r.err != nil {
			r.mu.Unlock()
			return
		}
		batch := r.recs[sent-r.base : r.seq-r.base]
		sent = r.seq
		r.mu.Unlock()

		binary.BigEndian.PutUint64(hdr[:8], sent)
		binary.BigEndian.PutUint32(hdr[8:], uint32(len(batch)))
		w.Write(hdr[:])
		for _, rec := range batch {
			binary.BigEndian.PutUint32(hdr[:4], uint32(len(rec)))
			w.Write(hdr[:4])
			w.Write(rec)
		}
		err := w.Flush()
		var ack uint64
		if err == nil {
			_, err = io.ReadFull(rd, hdr[:8])
			ack = binary.BigEndian.Uint64(hdr[:8])
		}

		r.mu.Lock()
		if err != nil {
			r.err = fmt.Errorf("follower %d: %w", i, err)
		} else {
			r.acked[i] = ack
			// Records every follower has are not needed any more.
			if low := slices.Min(r.acked); low > r.base {
				r.recs = r.recs[low-r.base:]
				r.base = low
			}
		}
		r.cond.Broadcast()
		r.mu.Unlock()
	}
}

// follow accepts the leader's stream on ln and keeps its records in log,
// acknowledging each frame once it is synced.
func follow(ln net.Listener, log *groupLog) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if err := receive(c, log); !errors.Is(err, io.EOF) {
				fmt.Fprintln(os.Stderr, "barekv: follower:", err)
			}
		}()
	}
}

// receive keeps the frames of one leader connection in log and answers
// each once it is synced; it returns what ended the stream, io.EOF when
// the leader closed it.
func receive(c net.Conn, log *groupLog) error {
	rd, w := bufio.NewReaderSize(c, 64<<10), bufio.NewWriter(c)
	var hdr [12]byte
	var recs [][]byte
	for {
		if _, err := io.ReadFull(rd, hdr[:]); err != nil {
			return err
		}
		last, n := binary.BigEndian.Uint64(hdr[:8]), binary.BigEndian.Uint32(hdr[8:])
		recs = recs[:0]
		for range n {
			if _, err := io.ReadFull(rd, hdr[:4]); err != nil {
				return err
			}
			rec := make([]byte, binary.BigEndian.Uint32(hdr[:4]))
			if _, err := io.ReadFull(rd, rec); err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		if err := log.append(recs...); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(hdr[:8], last)
		w.Write(hdr[:8])
		if err := w.Flush(); err != nil {
			return err
		}
	}
}
