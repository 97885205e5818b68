package registrator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/cairn-dev/cairn/registrator"
	"github.com/cairn-dev/cairn/registrator/registratortest"
)

// BenchmarkBurst10k starts 10,000 containers through a fake engine's event
// stream (create+start each), waits until the registry holds all 10,000,
// then removes them all (kill+die+destroy) and waits until it holds none.
// Nothing may be lost: a missing registration fails the wait. Reports
// registrations/s and deregistrations/s (first event to the registry
// matching) and events/s over the whole run.
func BenchmarkBurst10k(b *testing.B) {
	benchBurst(b, 10000, nil)
}

// BenchmarkBurst10kSlowRegistry is the same with 100µs per registry call,
// about a loopback HTTP round trip to an agent: what the workers buy.
func BenchmarkBurst10kSlowRegistry(b *testing.B) {
	benchBurst(b, 10000, func(r *registratortest.Registry) { r.SetDelay(100 * time.Microsecond) })
}

func benchBurst(b *testing.B, n int, mod func(r *registratortest.Registry)) {
	var regTime, deregTime time.Duration
	var events int
	iters := 0
	for b.Loop() {
		e, reg := registratortest.NewEngine(), registratortest.NewRegistry()
		reg.Quiet()
		if mod != nil {
			mod(reg)
		}
		cfg := DefaultConfig()
		cfg.Hostname, cfg.HostIP = "host1", "10.0.0.1"
		r, err := New(cfg, e, reg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		<-e.Subscribed()

		t0 := time.Now()
		for i := range n {
			e.Set(webContainer(i), "create", "start")
		}
		reg.WaitFor(b, fmt.Sprintf("%d services", n), func() bool { return reg.LenLocked() == n })
		t1 := time.Now()
		for i := range n {
			e.Remove(fmt.Sprintf("c%d", i), "kill", "die", "destroy")
		}
		reg.WaitFor(b, "no services", func() bool { return reg.LenLocked() == 0 })
		t2 := time.Now()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		regTime += t1.Sub(t0)
		deregTime += t2.Sub(t1)
		events += 5 * n
		iters++
	}
	b.ReportMetric(float64(n*iters)/regTime.Seconds(), "registrations/s")
	b.ReportMetric(float64(n*iters)/deregTime.Seconds(), "deregistrations/s")
	b.ReportMetric(float64(events)/(regTime+deregTime).Seconds(), "events/s")
	b.ReportMetric(0, "lost")
}
