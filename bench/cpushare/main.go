// Command cpushare splits a server's CPU time per request into what it
// was spent on, from a `perf record -g` of the server process: the
// garbage collector, the scheduler, socket reads and writes, fsync,
// Raft and its log, the state machine, the HTTP handler and net/http's
// own work. Each sample is put in the first category its call stack
// matches (in the order of the table below), so a category's share is
// the CPU of everything under it. Dividing by the requests served while
// perf ran gives µs per request, which can be set beside the same split
// of another binary (or of bench/barekv) measured in the same minute.
//
//	perf record -F 999 -g -p PID -o cairn.data -- sleep 8   # while a load runs
//	cpushare -data cairn.data -seconds 8 -rate 8301           # rate: requests/s meanwhile
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// categories: the first whose marker is in a sample's stack takes it.
var categories = []struct {
	name    string
	markers []string
}{
	{"fsync", []string{"syscall.Fsync", "syscall.Fdatasync", "(*File).Sync"}},
	{"gc", []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.gcDrain"}},
	{"scheduler, idle", []string{"runtime.mcall", "runtime.schedule", "runtime.findRunnable", "runtime.sysmon", "runtime.mstart"}},
	{"socket write", []string{"netFD).Write", "conn).Write"}},
	{"socket read", []string{"netFD).Read", "conn).Read"}},
	{"state machine", []string{"kv.(*fsm)"}},
	{"raft and its log", []string{"hashicorp/raft.", "raft-wal"}},
	{"HTTP handler", []string{"serverHandler.ServeHTTP"}},
	{"net/http", []string{"net/http."}},
}

func main() {
	data := flag.String("data", "perf.data", "perf record -g output of the server process")
	seconds := flag.Float64("seconds", 0, "how long perf recorded")
	rate := flag.Float64("rate", 0, "requests per second the server answered meanwhile")
	hz := flag.Float64("hz", 999, "perf record's -F")
	flag.Parse()
	if *seconds <= 0 || *rate <= 0 {
		fmt.Fprintln(os.Stderr, "cpushare: -seconds and -rate are required (see the package comment)")
		os.Exit(2)
	}
	out, err := exec.Command("perf", "script", "-i", *data, "-F", "ip,sym").Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cpushare: perf script -i %s: %v\n", *data, err)
		os.Exit(1)
	}
	counts, kernel, total := split(out)
	perReq := func(n int) float64 { return float64(n) / *hz / *seconds * 1e6 / *rate }
	fmt.Printf("%s: %d samples, %.1f µs of CPU per request at %.0f/s\n", *data, total, perReq(total), *rate)
	for _, c := range categories {
		fmt.Printf("  %-18s %6.1f µs  (in the kernel %5.1f)\n", c.name, perReq(counts[c.name]), perReq(kernel[c.name]))
	}
	fmt.Printf("  %-18s %6.1f µs  (in the kernel %5.1f)\n", "other", perReq(counts["other"]), perReq(kernel["other"]))
}

// split counts the samples of perf script's output (blank-line
// separated stacks, leaf first, one "ip symbol" per line) by category,
// and of those, the ones whose leaf is in the kernel.
func split(out []byte) (counts, kernel map[string]int, total int) {
	counts, kernel = map[string]int{}, map[string]int{}
	for _, sample := range bytes.Split(out, []byte("\n\n")) {
		var frames []string
		sc := bufio.NewScanner(bytes.NewReader(sample))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if _, sym, ok := strings.Cut(line, " "); ok {
				frames = append(frames, sym)
			}
		}
		if len(frames) == 0 {
			continue
		}
		total++
		name := "other"
	find:
		for _, c := range categories {
			for _, f := range frames {
				for _, m := range c.markers {
					if strings.Contains(f, m) {
						name = c.name
						break find
					}
				}
			}
		}
		counts[name]++
		if inKernel(frames[0]) {
			kernel[name]++
		}
	}
	return counts, kernel, total
}

// inKernel: Go's symbols are package-qualified (a dot before any
// parenthesis); the kernel's are plain C names.
func inKernel(sym string) bool {
	if sym == "[unknown]" || strings.HasPrefix(sym, "__vdso") {
		return false
	}
	return !strings.Contains(sym, ".") || strings.Contains(sym, ".isra") || strings.Contains(sym, ".constprop") || strings.Contains(sym, ".part")
}
