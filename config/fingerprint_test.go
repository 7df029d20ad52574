package config

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

func TestPolicyFingerprint(t *testing.T) {
	vkey := vkey(t, "alice")
	_, wvk, err := note.GenerateKey(rand.Reader, "w")
	if err != nil {
		t.Fatal(err)
	}
	cosig, err := fnote.VKeyToCosignatureV1(wvk)
	if err != nil {
		t.Fatal(err)
	}
	load := func(text string) *Config {
		t.Helper()
		p := filepath.Join(t.TempDir(), "vouch.toml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	alice := "[[builder]]\nname = \"alice\"\nvkey = \"" + vkey + "\"\nlog = \"http://a.example/log\"\n"
	base := load("listen = \"127.0.0.1:1\"\n" + alice)
	same := load("# a comment\nlisten = \"127.0.0.1:2\"\n[[upstream]]\nurl = \"https://cache.example\"\n" +
		"[[builder]]\nname = \"alice\"\nvkey = \"" + vkey + "\"\nlog = \"http://a.example/log/\"\noperator = \"alice\"\nweight = 1\n[quorum]\nmin = 1\non-conflict = \"refuse\"\n")
	if base.PolicyFingerprint() != same.PolicyFingerprint() {
		t.Errorf("defaults written out, comments, listen and upstreams changed the fingerprint")
	}
	for name, text := range map[string]string{
		"operator":  "[[builder]]\nname = \"alice\"\nvkey = \"" + vkey + "\"\nlog = \"http://a.example/log/\"\noperator = \"org\"\n",
		"name":      "[[builder]]\nname = \"alice2\"\nvkey = \"" + vkey + "\"\nlog = \"http://a.example/log/\"\n",
		"log":       "[[builder]]\nname = \"alice\"\nvkey = \"" + vkey + "\"\nlog = \"http://b.example/log/\"\n",
		"quorum":    alice + "[quorum]\nmin = 1\non-conflict = \"majority\"\n",
		"weight":    "[[builder]]\nname = \"alice\"\nvkey = \"" + vkey + "\"\nlog = \"http://a.example/log/\"\nweight = 2\n",
		"witness":   alice + "[[witness]]\nname = \"w\"\nvkey = \"" + cosig + "\"\nurl = \"http://w.example/\"\n",
		"group":     alice + "[[group]]\nname = \"g\"\nthreshold = 1\nmembers = [\"alice\"]\n[quorum]\ngroup = \"g\"\n",
		"exception": alice + "[[exception]]\nname = \"foo-doc-*\"\nreason = \"timestamps\"\n",
		"witnesses": alice + "[[witness]]\nname = \"w\"\nvkey = \"" + cosig + "\"\nurl = \"http://w.example/\"\n[quorum]\nwitnesses = 1\n",
	} {
		c := load(text)
		if c.PolicyFingerprint() == base.PolicyFingerprint() {
			t.Errorf("%s: another policy has the same fingerprint", name)
		}
	}
}
