package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cairn-dev/cairn/agent"
	"github.com/cairn-dev/cairn/template"
)

const templateHelp = `
Usage: cairn template [options]

  Renders consul-template templates from a Consul-compatible agent (cairn
  or Consul) and keeps them current, as consul-template does: the same
  functions, the same -template "source:destination:command" form and
  HCL config file. With -check, each result is validated before it
  stays: the new file is put in place, the check runs (with the
  destination in $CAIRN_TEMPLATE_FILE), and when it fails the previous
  file is put back and the command does not run. (In place, because
  "nginx -t" checks the whole configuration that includes the file.)

    cairn template -template "web.ctmpl:/etc/nginx/conf.d/web.conf:nginx -s reload" \
                   -check "nginx -t" -wait 1s:5s

  Exit status: 0 after a clean stop (or a successful -once), 1 on errors,
  2 when a check refused a result with -once.
`

// templateFlags are the flags of `cairn template`.
type templateFlags struct {
	templates    []string
	configs      []string
	consulAddr   string
	token        string
	once, dry    bool
	wait         string
	check        string
	checkTimeout time.Duration
	logLevel     string
	set          map[string]bool // flags given on the command line
}

func runTemplate(args []string, stdout, stderr io.Writer) int {
	c := &command{stdout: stdout, stderr: stderr}
	var f templateFlags
	fs := c.bareFlagSet("cairn template", templateHelp)
	fs.Var(listFlag{&f.templates}, "template", `Template to render, "source[:destination[:command]]"; repeatable.`)
	fs.Var(listFlag{&f.configs}, "config", "consul-template config file (HCL or JSON) with template {} blocks; repeatable.")
	fs.StringVar(&f.consulAddr, "consul-addr", "", "Agent HTTP address (cairn or Consul). Default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500.")
	fs.StringVar(&f.token, "consul-token", "", "ACL token. Default: CONSUL_HTTP_TOKEN.")
	fs.BoolVar(&f.once, "once", false, "Render every template once, run the commands, and exit.")
	fs.BoolVar(&f.dry, "dry", false, `Print what would be written ("> destination" then the contents) instead of writing; run no command or check.`)
	fs.StringVar(&f.wait, "wait", "", `Quiescence "min:max" (or "min", max = 4*min): render after min without changes, at the latest max after the first.`)
	fs.StringVar(&f.check, "check", "", `Command that validates each result of the -template templates before it stays (e.g. "nginx -t"); $CAIRN_TEMPLATE_FILE names the destination.`)
	fs.DurationVar(&f.checkTimeout, "check-timeout", template.DefaultCommandTimeout, "How long -check may run.")
	fs.StringVar(&f.logLevel, "log-level", "info", "Log level: trace, debug, info, warn or err.")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	if !c.noArgs(fs) {
		return 1
	}

	cfg, addr, token, level, err := f.config()
	if err != nil {
		c.error("cairn template: %v", err)
		return 1
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)

	src, err := template.DialHTTP(ctx, template.HTTPConfig{Address: addr, Token: token})
	if err != nil {
		c.error("cairn template: %v", err)
		return 1
	}
	defer src.Close()
	logger.Debug("connected", "protocol", src.Protocol())

	cfg.Source = src
	cfg.Logger = logger
	cfg.DryOutput = stdout
	cfg.CommandOutput = stderr
	r, err := template.New(cfg)
	if err != nil {
		c.error("cairn template: %v", err)
		return 1
	}
	if err := r.Run(ctx); err != nil {
		c.error("cairn template: %v", err)
		if errors.Is(err, template.ErrCheckFailed) {
			return 2
		}
		return 1
	}
	return 0
}

// config merges the config files and the flags: the files' templates
// first, then the -template ones (which -check applies to); flags win
// over the files' settings.
func (f *templateFlags) config() (cfg template.Config, addr, token string, level slog.Level, err error) {
	logLevel := ""
	for _, path := range f.configs {
		fc, err := template.LoadConfigFile(path)
		if err != nil {
			return cfg, "", "", 0, err
		}
		cfg.Templates = append(cfg.Templates, fc.Templates...)
		if fc.ConsulAddr != "" {
			addr = fc.ConsulAddr
		}
		if fc.Token != "" {
			token = fc.Token
		}
		if fc.LogLevel != "" {
			logLevel = fc.LogLevel
		}
		if fc.Wait != nil {
			cfg.Wait = *fc.Wait
		}
	}
	for _, s := range f.templates {
		t, err := template.ParseTemplateFlag(s)
		if err != nil {
			return cfg, "", "", 0, err
		}
		t.Check, t.CheckTimeout = f.check, f.checkTimeout
		cfg.Templates = append(cfg.Templates, t)
	}
	if f.check != "" && len(f.templates) == 0 {
		return cfg, "", "", 0, errors.New("-check applies to -template templates and there are none; in a -config file, set check in the template {} block")
	}
	if f.wait != "" {
		if cfg.Wait, err = template.ParseWait(f.wait); err != nil {
			return cfg, "", "", 0, fmt.Errorf("-wait: %w", err)
		}
	}
	if f.consulAddr != "" {
		addr = f.consulAddr
	}
	if f.token != "" {
		token = f.token
	}
	if f.set["log-level"] || logLevel == "" {
		logLevel = f.logLevel
	}
	if level, err = agent.ParseLogLevel(logLevel); err != nil {
		return cfg, "", "", 0, err
	}
	cfg.Once, cfg.Dry = f.once, f.dry
	return cfg, addr, token, level, nil
}
