package config

import "testing"

// FuzzParse: no input makes Parse panic, and whatever it accepts passes
// Validate (Parse must never hand back a config it would refuse).
func FuzzParse(f *testing.F) {
	f.Add([]byte("state = \"/tmp/x\"\n[quorum]\nmin = 1\n"))
	f.Add([]byte("[[builder]]\nname = \"a\"\nvkey = \"a+00000000+AQ==\"\nlog = \"http://x/\"\n"))
	f.Add([]byte("[follow]\ninterval = \"1s\"\n[[upstream]]\nurl = \"http://127.0.0.1:1\"\n"))
	f.Add([]byte("[nar-cache]\nmax-size = \"20GiB\"\ndir = \"/var/cache/vouch\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate refuses: %v", err)
		}
	})
}
