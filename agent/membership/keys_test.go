package membership

import (
	"bytes"
	"testing"
)

func TestGenerateKeyDecodes(t *testing.T) {
	k1, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := GenerateKey()
	if k1 == k2 {
		t.Errorf("GenerateKey() returned %q twice", k1)
	}
	key, err := DecodeKey(k1)
	if err != nil || len(key) != 32 {
		t.Errorf("DecodeKey(GenerateKey()) = %d bytes, %v; want 32 bytes", len(key), err)
	}
}

func TestDecodeKey(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wantLen  int
		wantErr  string
	}{
		{"32 bytes", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", 32, ""},
		{"24 bytes", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3", 24, ""},
		{"16 bytes with a trailing newline", "MDEyMzQ1Njc4OWFiY2RlZg==\n", 16, ""},
		{"empty", "  ", 0, `-encrypt key is empty; make one with "cairn keygen"`},
		{"not base64", "not base64!", 0,
			`-encrypt key is not valid standard base64 (illegal base64 data at input byte 3); make one with "cairn keygen"`},
		{"wrong length", "MDEyMzQ1Njc4OQ==", 0,
			`-encrypt key: it decodes to 10 bytes, but a gossip key must be 16, 24 or 32 bytes; make one with "cairn keygen"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := DecodeKey(tc.in)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if len(key) != tc.wantLen || gotErr != tc.wantErr {
				t.Errorf("DecodeKey(%q) = %d bytes, %q; want %d bytes, %q", tc.in, len(key), gotErr, tc.wantLen, tc.wantErr)
			}
			if tc.wantErr != "" && bytes.Contains([]byte(gotErr), []byte(tc.in)) && len(tc.in) > 3 {
				t.Errorf("DecodeKey error %q repeats the (secret) key", gotErr)
			}
		})
	}
}
