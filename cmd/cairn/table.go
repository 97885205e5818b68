package main

import (
	"strings"
	"text/tabwriter"
)

// table lays rows out in columns separated by at least two spaces, as
// consul's commands do with columnize, with no trailing blanks.
func table(rows [][]string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		tw.Write([]byte(strings.Join(r, "\t") + "\n"))
	}
	tw.Flush()
	lines := strings.SplitAfter(b.String(), "\n")
	for i, l := range lines {
		if trimmed, ok := strings.CutSuffix(l, "\n"); ok {
			lines[i] = strings.TrimRight(trimmed, " ") + "\n"
		}
	}
	return strings.Join(lines, "")
}
