package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/query"
)

func TestVerdictSubject(t *testing.T) {
	const path = "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-hello"
	dir := t.TempDir()
	result := filepath.Join(dir, "result")
	if err := os.Symlink(path, result); err != nil {
		t.Fatal(err)
	}
	ca := "sha256:" + strings.Repeat("a", 64) + "!out"
	oci := claim.OCISubject("github.com/x/y", "abcdef1", "image", "x86_64-linux")
	for _, tc := range []struct {
		kind, arg string
		want      claim.Kind
		subject   string
		err       string
	}{
		{"", path, claim.KindNix, path, ""},
		{"", path + "/bin/hello", claim.KindNix, path, ""},
		{"", "0c6kzph7l0dcbfmjap64f0czdafn3b7x-hello", claim.KindNix, path, ""},
		{"", result, claim.KindNix, path, ""},
		{"", ca, claim.KindNixCA, ca, ""},
		{"", oci, claim.KindOCI, oci, ""},
		{"nix", "/tmp/nothing", "", "", "not a store path"},
		{"", "/nix/store/short-hello", "", "", "not a store path"},
		{"oci", "github.com/x/y", "", "", "not a valid oci subject"},
		{"nix-ca", "sha256:zz!out", "", "", "not a valid nix-ca subject"},
		{"rpm", "x", "", "", "unknown --kind"},
	} {
		kind, subject, err := verdictSubject(tc.kind, tc.arg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %s: got %v, want an error containing %q", tc.kind, tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil || kind != tc.want || subject != tc.subject {
			t.Errorf("%s %s: got %s %s %v, want %s %s", tc.kind, tc.arg, kind, subject, err, tc.want, tc.subject)
		}
	}
}

func FuzzVerdictSubject(f *testing.F) {
	for _, s := range []string{"/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-hello/bin/x", "0c6kzph7l0dcbfmjap64f0czdafn3b7x-a",
		"sha256:" + strings.Repeat("a", 64) + "!out", "github.com/x/y@abcdef1#image?system=x86_64-linux", "", "!", "/nix/store/"} {
		f.Add("", s)
		f.Add("oci", s)
	}
	f.Fuzz(func(t *testing.T, kind, arg string) {
		k, subject, err := verdictSubject(kind, arg)
		if err != nil {
			return
		}
		if k == claim.KindNix {
			if err := claim.ValidStorePath(subject); err != nil {
				t.Fatalf("%q gave the invalid store path %q: %v", arg, subject, err)
			}
		} else if subject != arg {
			t.Fatalf("%s subject %q was changed to %q", k, arg, subject)
		}
	})
}

func TestVerdictWithoutIndex(t *testing.T) {
	dir := t.TempDir()
	_, vkey, err := note.GenerateKey(rand.Reader, "alice")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "vouch.toml")
	toml := "state = \"" + filepath.Join(dir, "state") + "\"\nlisten = \"127.0.0.1:1\"\n" +
		"[[builder]]\nname = \"alice\"\nvkey = \"" + vkey + "\"\nlog = \"http://127.0.0.1:9/log/\"\n"
	if err := os.WriteFile(cfgPath, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := query.Open(cfg); err == nil || !strings.Contains(err.Error(), "run vouch sync --config "+cfgPath) {
		t.Fatalf("got %v, want advice to run vouch sync", err)
	}
	if code := dispatch([]string{"verdict", "--config", cfgPath, "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-hello"}); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "index.db")); err == nil {
		t.Fatal("vouch verdict created an index")
	}
}
