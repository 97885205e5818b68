package membership

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// GenerateKey returns a new gossip encryption key: 32 random bytes (AES-256)
// in standard base64, the form -encrypt takes. It backs `cairn keygen`, like
// `consul keygen`.
func GenerateKey() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate gossip key: read random bytes: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}

// DecodeKey decodes an -encrypt value: standard base64 of 16, 24 or 32
// bytes (AES-128, -192 or -256). Surrounding white space is ignored, so a
// key read from a file with a trailing newline works.
func DecodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf(`-encrypt key is empty; make one with "cairn keygen"`)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		// The key is a secret: say where it went wrong, never echo it.
		return nil, fmt.Errorf(`-encrypt key is not valid standard base64 (%v); make one with "cairn keygen"`, err)
	}
	if err := checkKeyLen(len(key)); err != nil {
		return nil, fmt.Errorf("-encrypt key: %w", err)
	}
	return key, nil
}

func checkKeyLen(n int) error {
	switch n {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf(`it decodes to %d bytes, but a gossip key must be 16, 24 or 32 bytes; make one with "cairn keygen"`, n)
}
