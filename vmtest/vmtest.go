// Package vmtest boots a real Linux kernel under qemu (software
// emulation: no KVM needed) with one program as its payload, for tests
// that need kernel features the host lacks, such as IPVS, dummy
// interfaces or loadable modules. The usual payload is a package's own
// test binary (`go test -c`), whose tests run inside the VM when
// InGuest reports true.
//
// The kernel is Debian's linux-image-cloud-amd64, unpacked by
// vmtest/prepare.sh into a cache directory (CacheDir); Run builds an
// initramfs in memory (busybox, the requested modules and their
// dependencies, a small init script, the payload), boots it with the
// serial console on qemu's stdout, streams that console, and reads the
// payload's exit code from a marker line the init prints. Nothing leaves
// the VM: it has no network card.
//
// vmtest owns only the VM plumbing. It imports nothing of cairn's but
// systemtest (to skip or, under CI=true, fail when qemu or the kernel is
// missing), and never imports agent or any of its packages.
package vmtest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EnvGuest is the environment variable the VM's init sets to "1" for the
// payload, so that tests can tell they run inside the VM.
const EnvGuest = "CAIRN_VMTEST"

// InGuest reports whether this process is a payload running inside a
// vmtest VM.
func InGuest() bool { return os.Getenv(EnvGuest) == "1" }

// CacheDir is where vmtest/prepare.sh leaves the kernel:
// $CAIRN_VMTEST_DIR if set, else cairn-vmtest in the user's cache
// directory ($XDG_CACHE_HOME, else $HOME/.cache).
func CacheDir() (string, error) {
	if d := os.Getenv("CAIRN_VMTEST_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("vmtest cache directory: %w; set CAIRN_VMTEST_DIR", err)
	}
	return filepath.Join(d, "cairn-vmtest"), nil
}

// Kernel is a kernel and its modules as prepare.sh unpacked them.
type Kernel struct {
	Dir     string // holds vmlinuz, busybox and lib/modules/<Version>
	Version string // the kernel release, e.g. 6.1.0-57-cloud-amd64
	// deps maps a module name (dashes as underscores) to its file and
	// its dependencies' files, relative to lib/modules/<Version>, from
	// modules.dep.
	deps map[string][]string
}

// FindKernel returns the kernel prepared in dir (see CacheDir), or an
// error that says to run prepare.sh.
func FindKernel(dir string) (*Kernel, error) {
	cur := filepath.Join(dir, "current")
	if _, err := os.Stat(filepath.Join(cur, "ready")); err != nil {
		return nil, fmt.Errorf("find kernel: no prepared kernel in %s (%w); run vmtest/prepare.sh as root", cur, err)
	}
	real, err := filepath.EvalSymlinks(cur)
	if err != nil {
		return nil, fmt.Errorf("find kernel: %w", err)
	}
	v, err := os.ReadFile(filepath.Join(real, "kernel-version"))
	if err != nil {
		return nil, fmt.Errorf("find kernel: %w; run vmtest/prepare.sh again", err)
	}
	k := &Kernel{Dir: real, Version: strings.TrimSpace(string(v))}
	dep, err := os.ReadFile(filepath.Join(k.moduleDir(), "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("find kernel: %w; run vmtest/prepare.sh again", err)
	}
	k.deps = parseModulesDep(dep)
	return k, nil
}

func (k *Kernel) moduleDir() string { return filepath.Join(k.Dir, "lib", "modules", k.Version) }

// parseModulesDep reads depmod's "path: dep dep ..." lines.
func parseModulesDep(b []byte) map[string][]string {
	m := make(map[string][]string)
	for line := range strings.Lines(string(b)) {
		path, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		m[moduleName(path)] = append([]string{path}, strings.Fields(rest)...)
	}
	return m
}

// moduleName turns kernel/net/foo/ip_vs-x.ko into ip_vs_x.
func moduleName(path string) string {
	base := filepath.Base(path)
	base, _, _ = strings.Cut(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// loadOrder returns the module files to insmod, dependencies first,
// each once. A module the kernel has built in (absent from modules.dep
// but listed in modules.builtin) is skipped; an unknown one is an error.
func (k *Kernel) loadOrder(modules []string) ([]string, error) {
	var order []string
	seen := make(map[string]bool)
	var visit func(path string, stack int) error
	visit = func(path string, stack int) error {
		if seen[path] {
			return nil
		}
		if stack > 64 {
			return fmt.Errorf("module dependency loop at %s", path)
		}
		for _, d := range k.deps[moduleName(path)][1:] {
			if err := visit(d, stack+1); err != nil {
				return err
			}
		}
		seen[path] = true
		order = append(order, path)
		return nil
	}
	builtin, _ := os.ReadFile(filepath.Join(k.moduleDir(), "modules.builtin"))
	for _, m := range modules {
		m = strings.ReplaceAll(m, "-", "_")
		e, ok := k.deps[m]
		if !ok {
			if bytes.Contains(builtin, []byte("/"+m+".ko")) {
				continue
			}
			return nil, fmt.Errorf("kernel %s has no module %q", k.Version, m)
		}
		if err := visit(e[0], 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Config says what to boot.
type Config struct {
	Kernel *Kernel // required (FindKernel)
	// Payload is the path of a static linux/amd64 program (CGO_ENABLED=0)
	// the init runs with Args once the modules are loaded; required.
	Payload string
	Args    []string
	// Modules are loaded (with their dependencies) before the payload
	// starts, e.g. "ip_vs", "ip_vs_rr", "dummy", "veth".
	Modules []string
	// Env is extra KEY=value for the payload, besides EnvGuest=1.
	Env []string
	// MemoryMiB is the VM's memory; 0 means 512.
	MemoryMiB int
	// Timeout bounds the whole boot-run-poweroff; 0 means 10 minutes.
	Timeout time.Duration
	// QEMU is the qemu-system-x86_64 to run; "" looks it up on PATH.
	QEMU string
	// Console, if set, gets the serial console line by line (payload
	// output, kernel messages), without carriage returns, as it comes.
	Console io.Writer
}

// Result is how a VM run ended.
type Result struct {
	ExitCode int           // the payload's exit status
	Boot     time.Duration // from starting qemu to the payload's start
	Total    time.Duration // from starting qemu to its exit
	Console  []byte        // the whole serial console
}

// ErrNoExit says the VM stopped (or timed out) without the init's
// marker line for the payload's exit: a kernel panic, a payload that
// hung, or qemu that failed to start. The error text gives the reason;
// Result.Console has the console.
var ErrNoExit = errors.New("the VM stopped before the payload exited")

// Run boots the VM, runs the payload, and returns when qemu has exited.
// An error means the payload's exit code is unknown; a payload that
// exited non-zero is a Result with that ExitCode and a nil error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Kernel == nil || cfg.Payload == "" {
		return nil, errors.New("vmtest run: Config.Kernel and Config.Payload are required")
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 512
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	qemu := cfg.QEMU
	if qemu == "" {
		var err error
		if qemu, err = exec.LookPath("qemu-system-x86_64"); err != nil {
			return nil, fmt.Errorf("vmtest run: %w; run vmtest/prepare.sh as root", err)
		}
	}
	var nonce [8]byte
	rand.Read(nonce[:])
	marker := "vmtest-" + hex.EncodeToString(nonce[:])

	tmp, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		return nil, fmt.Errorf("vmtest run: %w", err)
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initramfs.cpio")
	if err := buildInitramfs(initrd, cfg, marker); err != nil {
		return nil, fmt.Errorf("vmtest run: build initramfs: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-machine", "pc", "-accel", "tcg", "-cpu", "max", "-smp", "1",
		"-m", strconv.Itoa(cfg.MemoryMiB),
		"-nographic", "-no-reboot", "-nic", "none",
		"-kernel", filepath.Join(cfg.Kernel.Dir, "vmlinuz"),
		"-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
	)
	cmd.Stdin = nil // /dev/null
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("vmtest run: %w", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vmtest run: start %s: %w", qemu, err)
	}
	res := &Result{ExitCode: -1}
	exitRE := regexp.MustCompile(regexp.QuoteMeta(marker) + ` exit (\d+)`)
	var console bytes.Buffer
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	gotExit := false
	for sc.Scan() {
		line := strings.ReplaceAll(sc.Text(), "\r", "")
		console.WriteString(line)
		console.WriteByte('\n')
		switch {
		case strings.Contains(line, marker+" start"):
			res.Boot = time.Since(start)
		case exitRE.MatchString(line):
			res.ExitCode, _ = strconv.Atoi(exitRE.FindStringSubmatch(line)[1])
			gotExit = true
		}
		if cfg.Console != nil {
			fmt.Fprintln(cfg.Console, line)
		}
	}
	werr := cmd.Wait()
	res.Total = time.Since(start)
	res.Console = console.Bytes()
	switch {
	case gotExit:
		return res, nil
	case ctx.Err() != nil:
		return res, fmt.Errorf("vmtest run: %w: no exit after %v (Config.Timeout): %v", ErrNoExit, cfg.Timeout, ctx.Err())
	default:
		return res, fmt.Errorf("vmtest run: %w: qemu: %v: %s", ErrNoExit, werr, strings.TrimSpace(stderr.String()))
	}
}

// initScript is the VM's /init, run by busybox sh. It prints
// "<marker> start" and "<marker> exit <code>", which Run looks for: the
// marker is random per run, so no payload output can fake it.
func initScript(cfg Config, modules []string, marker string) string {
	var b strings.Builder
	b.WriteString("#!/bin/busybox sh\n")
	b.WriteString("/bin/busybox mount -t proc proc /proc\n")
	b.WriteString("/bin/busybox --install -s /bin\n")
	b.WriteString("mount -t sysfs sys /sys\nmount -t devtmpfs dev /dev 2>/dev/null\nmount -t tmpfs tmp /tmp\n")
	b.WriteString("mount -t tmpfs run /run\nmkdir -p /run/netns\n")
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod /lib/modules/%s/%s || echo '%s insmod %s failed'\n", cfg.Kernel.Version, m, marker, m)
	}
	b.WriteString("ip link set lo up\n")
	b.WriteString("export PATH=/bin HOME=/ TMPDIR=/tmp " + EnvGuest + "=1\n")
	for _, e := range cfg.Env {
		fmt.Fprintf(&b, "export %s\n", shellQuote(e))
	}
	fmt.Fprintf(&b, "echo '%s start'\n", marker)
	b.WriteString("cd /\n/payload")
	for _, a := range cfg.Args {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "echo \"%s exit $?\"\n", marker)
	b.WriteString("poweroff -f\n")
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// buildInitramfs writes an uncompressed newc cpio archive (the kernel
// unpacks it faster than a compressed one under emulation).
func buildInitramfs(path string, cfg Config, marker string) error {
	modules, err := cfg.Kernel.loadOrder(cfg.Modules)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := &cpioWriter{w: bufio.NewWriterSize(f, 1<<20)}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "run", "lib", "lib/modules"} {
		w.dir(d)
	}
	w.node("dev/console", 0o020600, 5, 1)
	w.fileFrom("bin/busybox", 0o755, filepath.Join(cfg.Kernel.Dir, "busybox"))
	w.fileFrom("payload", 0o755, cfg.Payload)
	w.file("init", 0o755, []byte(initScript(cfg, modules, marker)))
	made := map[string]bool{}
	for _, m := range modules {
		rel := filepath.Join("lib/modules", cfg.Kernel.Version, m)
		for d := filepath.Dir(rel); d != "lib/modules" && !made[d]; d = filepath.Dir(d) {
			made[d] = true
		}
	}
	dirs := make([]string, 0, len(made))
	for d := range made {
		dirs = append(dirs, d)
	}
	// Parents before children: shorter paths first is enough.
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Or(len(a)-len(b), strings.Compare(a, b)) })
	for _, d := range dirs {
		w.dir(d)
	}
	for _, m := range modules {
		w.fileFrom(filepath.Join("lib/modules", cfg.Kernel.Version, m), 0o644, filepath.Join(cfg.Kernel.moduleDir(), m))
	}
	w.trailer()
	if w.err != nil {
		f.Close()
		return w.err
	}
	if err := w.w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpioWriter writes the "newc" format the kernel's initramfs unpacker reads.
type cpioWriter struct {
	w   *bufio.Writer
	ino int
	n   int64
	err error
}

func (c *cpioWriter) header(name string, mode uint32, size int64, rmaj, rmin int) {
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmaj, rmin, len(name)+1, 0)
	c.write([]byte(h))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string)                         { c.header(name, 0o040755, 0, 0, 0) }
func (c *cpioWriter) node(name string, mode uint32, a, b int) { c.header(name, mode, 0, a, b) }

func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.header(name, 0o100000|perm, int64(len(data)), 0, 0)
	c.write(data)
	c.pad()
}

func (c *cpioWriter) fileFrom(name string, perm uint32, src string) {
	if c.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.err = err
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.err = err
		return
	}
	c.header(name, 0o100000|perm, st.Size(), 0, 0)
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, f)
	c.n += n
	if err == nil && n != st.Size() {
		err = fmt.Errorf("%s changed size while being read", src)
	}
	c.err = err
	c.pad()
}

func (c *cpioWriter) trailer() { c.header("TRAILER!!!", 0, 0, 0, 0) }
