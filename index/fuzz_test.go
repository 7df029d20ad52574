package index

import (
	"encoding/base64"
	"fmt"
	"testing"
)

// FuzzParseCheckpoint: no panic; whatever is accepted has a non-empty
// origin, and formats back to a body with the same first three lines.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("example.com/log\n4\nYEKBEc4IFzdW1Gf1UuCpYFx/RT2V1LLkSWDrDJoTTwA=\n"))
	f.Add([]byte("a\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\next\n"))
	f.Add([]byte("a\n01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Add([]byte("a\n1\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		cp, err := ParseCheckpoint(body)
		if err != nil {
			return
		}
		head := fmt.Sprintf("%s\n%d\n%s\n", cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]))
		if string(body[:len(head)]) != head {
			t.Fatalf("accepted %q but it formats as %q", body, head)
		}
	})
}

func TestParseCheckpoint(t *testing.T) {
	root := "YEKBEc4IFzdW1Gf1UuCpYFx/RT2V1LLkSWDrDJoTTwA="
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{"example.com/log\n4\n" + root + "\n", true},
		{"example.com/log\n4\n" + root + "\nextension line\n", true},
		{"example.com/log\n4\n" + root, false},          // no final newline
		{"example.com/log\n04\n" + root + "\n", false},  // leading zero
		{"example.com/log\n-4\n" + root + "\n", false},  // sign
		{"example.com/log\n4\nYEKB\n", false},           // short hash
		{"\n4\n" + root + "\n", false},                  // empty origin
		{"example.com/log\n4\n" + root + "\n\n", false}, // empty extension
		{"example.com/log\n4\n", false},                 // no hash
	} {
		_, err := ParseCheckpoint([]byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("ParseCheckpoint(%q): err %v, want ok=%v", tc.body, err, tc.ok)
		}
	}
}
