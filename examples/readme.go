package examples

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// TestedFence opens a README block that tests run: a fenced block whose
// info string is "sh test". Markdown renderers take the first word as
// the language, so readers see an ordinary sh block.
const TestedFence = "```sh test"

// failTrap names the command that stopped the script.
const failTrap = `trap 'echo "README command failed (exit $?): $BASH_COMMAND" >&2' ERR` + "\n"

// Script returns the blocks of the markdown file at path that open with
// TestedFence, in order, as one bash script that stops at the first
// failing command (set -euo pipefail). The blocks run in one shell, so a
// later block sees the variables and background jobs of an earlier one.
func Script(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	b.WriteString("set -euo pipefail\n" + failTrap)
	in, blocks, line := false, 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line++
		text := sc.Text()
		switch {
		case !in && strings.TrimSpace(text) == TestedFence:
			in = true
			blocks++
			fmt.Fprintf(&b, "# %s:%d\n", path, line)
		case in && strings.TrimSpace(text) == "```":
			in = false
		case in:
			b.WriteString(text + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if in {
		return "", fmt.Errorf("%s: the last %q block is not closed", path, TestedFence)
	}
	if blocks == 0 {
		return "", fmt.Errorf("%s has no %q blocks to run", path, TestedFence)
	}
	return b.String(), nil
}
