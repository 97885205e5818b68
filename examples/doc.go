// Package examples holds cairn's runnable setups (nginx/, compose/,
// systemd/), each with a README a user can follow, and the code that
// keeps those READMEs honest: Script extracts a README's shell blocks
// marked for testing, so that a test runs exactly what the README says.
// It imports nothing of cairn's.
package examples
