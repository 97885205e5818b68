// Package compat runs the tests that ship inside
// github.com/hashicorp/consul/api against cairn (go test -tags compat
// ./compat, or make test-compat): consulstandin plays the `consul` binary
// that the tests' testutil starts, and OUT_OF_SCOPE.md lists, with a
// reason each, the tests that are not expected to pass. It holds no code
// of cairn's own and imports nothing of it.
package compat
