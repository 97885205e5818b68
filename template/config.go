package template

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Defaults of a template's commands, consul-template's.
const (
	// DefaultCommandTimeout is how long a command (and a check) may run
	// before it is killed: consul-template's command_timeout default.
	DefaultCommandTimeout = 30 * time.Second
	// DefaultPerms are the permissions of a destination that did not
	// exist; an existing destination keeps its own.
	DefaultPerms os.FileMode = 0o644
)

// Wait is consul-template's quiescence timer: after a change, render when
// Min has passed without another change, and at the latest Max after the
// first change. The zero Wait renders at once.
type Wait struct {
	Min, Max time.Duration
}

// Enabled reports whether w delays rendering.
func (w Wait) Enabled() bool { return w.Min > 0 }

func (w Wait) String() string {
	if !w.Enabled() {
		return "0s"
	}
	return w.Min.String() + ":" + w.Max.String()
}

// ParseWait parses "min" or "min:max" ("1s:5s"). A lone min gets a max
// of four times min, as in consul-template.
func ParseWait(s string) (Wait, error) {
	minS, maxS, hasMax := strings.Cut(strings.TrimSpace(s), ":")
	if strings.Contains(maxS, ":") {
		return Wait{}, fmt.Errorf("wait %q: too many colons; the form is min or min:max, e.g. 1s:5s", s)
	}
	lo, err := time.ParseDuration(strings.TrimSpace(minS))
	if err != nil {
		return Wait{}, fmt.Errorf("wait %q: min %q is not a duration; the form is min or min:max, e.g. 1s:5s", s, minS)
	}
	hi := 4 * lo
	if hasMax {
		if hi, err = time.ParseDuration(strings.TrimSpace(maxS)); err != nil {
			return Wait{}, fmt.Errorf("wait %q: max %q is not a duration; the form is min or min:max, e.g. 1s:5s", s, maxS)
		}
	}
	switch {
	case lo < 0 || hi < 0:
		return Wait{}, fmt.Errorf("wait %q: durations cannot be negative", s)
	case hi < lo:
		return Wait{}, fmt.Errorf("wait %q: max %s is less than min %s; give max >= min", s, hi, lo)
	}
	return Wait{Min: lo, Max: hi}, nil
}

// TemplateConfig is one template: consul-template's template{} block,
// plus cairn's check.
type TemplateConfig struct {
	// Source is the template file; Contents the template itself, for
	// templates given inline. Exactly one is set.
	Source   string
	Contents string
	// Destination is the file rendered to.
	Destination string
	// Command runs (sh -c) after the destination changed; several
	// templates that change together run a command they share once.
	Command string
	// CommandTimeout ends a command that runs longer; 0 is
	// DefaultCommandTimeout.
	CommandTimeout time.Duration
	// Check runs (sh -c) with the new contents in place at Destination
	// (also named by $CAIRN_TEMPLATE_FILE) before they count: when it
	// exits non-zero, the previous file is put back and Command is not
	// run. "nginx -t -c /etc/nginx/nginx.conf" checks a rendered include.
	Check string
	// CheckTimeout bounds Check; 0 is DefaultCommandTimeout.
	CheckTimeout time.Duration
	// Perms of the destination; 0 keeps those of the existing file, or
	// DefaultPerms for a new one.
	Perms os.FileMode
	// Backup keeps the previous file as <destination>.bak.
	Backup bool
	// Wait overrides Config.Wait for this template when set.
	Wait *Wait
	// LeftDelim and RightDelim replace "{{" and "}}".
	LeftDelim, RightDelim string
	// ErrMissingKey makes a missing map key an error, not a zero value.
	ErrMissingKey bool
}

// name is how messages refer to the template.
func (t TemplateConfig) name() string {
	if t.Source != "" {
		return t.Source
	}
	return "(dynamic)"
}

func (t TemplateConfig) validate(dry bool) error {
	switch {
	case t.Source == "" && t.Contents == "":
		return fmt.Errorf("template for %q has no source; give source (a file) or contents", t.Destination)
	case t.Source != "" && t.Contents != "":
		return fmt.Errorf("template %s has both source and contents; keep one", t.Source)
	case t.Destination == "" && !dry:
		return fmt.Errorf("template %s has no destination; use -template \"%s:<destination>\" (or -dry to print it)", t.name(), t.name())
	case t.CommandTimeout < 0 || t.CheckTimeout < 0:
		return fmt.Errorf("template %s: negative command or check timeout", t.name())
	case t.Perms&^os.ModePerm != 0:
		return fmt.Errorf("template %s: perms %#o are more than permission bits; give e.g. 0644", t.name(), uint32(t.Perms))
	case t.Wait != nil && (t.Wait.Min < 0 || t.Wait.Max < t.Wait.Min):
		return fmt.Errorf("template %s: wait %s: max must be at least min, and neither negative", t.name(), t.Wait)
	}
	return nil
}

// ParseTemplateFlag parses -template "source[:destination[:command]]" as
// consul-template does: the fields are split at colons, and everything
// after the second colon is the command, colons and all
// ("in.tmpl:out.conf:sh -c 'a; b'"). Windows drive letters are not
// recognized; on cairn's platforms a colon always separates.
func ParseTemplateFlag(s string) (TemplateConfig, error) {
	if strings.TrimSpace(s) == "" {
		return TemplateConfig{}, errors.New(`-template "": give source[:destination[:command]], e.g. -template "web.ctmpl:/etc/nginx/conf.d/web.conf:nginx -s reload"`)
	}
	source, rest, _ := strings.Cut(s, ":")
	dest, command, _ := strings.Cut(rest, ":")
	if source == "" {
		return TemplateConfig{}, fmt.Errorf("-template %q: the source (before the first colon) is empty; the form is source[:destination[:command]]", s)
	}
	return TemplateConfig{Source: source, Destination: dest, Command: command}, nil
}

// Config configures a Runner. Zero values mean defaults.
type Config struct {
	// Templates to render; at least one.
	Templates []TemplateConfig
	// Source answers the templates' queries. Required.
	Source Source
	// Wait is the quiescence of templates without their own.
	Wait Wait
	// Once renders every template once (after its data arrived), runs
	// the commands, and makes Run return: consul-template's -once. Waits
	// do not apply.
	Once bool
	// Dry prints what would be written to DryOutput ("> destination"
	// then the contents) instead of writing it, and runs no check and no
	// command.
	Dry       bool
	DryOutput io.Writer // nil: os.Stdout
	// Env ("NAME=value") is seen by env() before the process's
	// environment, and added to the environment of commands and checks.
	Env []string
	// CommandOutput receives the output of commands and checks; nil
	// discards it (the first line of a failing check is in its error).
	CommandOutput io.Writer
	// Logger gets one line per render, check, command and state change
	// of a view; nil discards.
	Logger *slog.Logger
}
