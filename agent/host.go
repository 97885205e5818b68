package agent

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// hostInfo is /v1/agent/host: Consul's shape (CollectionTime, Host,
// Memory, CPU, Disk), from /proc and the data dir's file system where
// the platform has them; a part it cannot read is left out.
func hostInfo(dataDir string) map[string]any {
	out := map[string]any{"CollectionTime": time.Now().UnixNano()}
	host := map[string]any{"os": runtime.GOOS, "kernelArch": runtime.GOARCH, "procs": runtime.NumGoroutine()}
	if h, err := os.Hostname(); err == nil {
		host["hostname"] = h
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		host["kernelVersion"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if up, err := strconv.ParseFloat(f[0], 64); err == nil {
				host["uptime"] = uint64(up)
				host["bootTime"] = uint64(time.Now().Add(-time.Duration(up * float64(time.Second))).Unix())
			}
		}
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "ID="); ok {
				host["platform"] = strings.Trim(v, `"`)
			}
			if v, ok := strings.CutPrefix(line, "VERSION_ID="); ok {
				host["platformVersion"] = strings.Trim(v, `"`)
			}
		}
	}
	out["Host"] = host
	out["CPU"] = []map[string]any{{"cores": runtime.NumCPU()}}
	if mem := meminfo(); mem != nil {
		out["Memory"] = mem
	}
	if disk := diskInfo(dataDir); disk != nil {
		out["Disk"] = disk
	}
	return out
}

// meminfo reads /proc/meminfo (kB) into gopsutil's field names, as Consul reports them.
func meminfo() map[string]any {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	kb := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err == nil {
			kb[k] = n * 1024
		}
	}
	total, avail := kb["MemTotal"], kb["MemAvailable"]
	if total == 0 {
		return nil
	}
	used := total - avail
	return map[string]any{"total": total, "available": avail, "used": used, "free": kb["MemFree"],
		"usedPercent": float64(used) / float64(total) * 100}
}
