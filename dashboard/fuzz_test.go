package dashboard

import (
	"strings"
	"testing"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/verdict"
)

// FuzzParseQuery: whatever is typed into the search box, every subject
// the query is taken for is a valid subject of its kind, every token is a
// hash part, an output or a package name, and there is always a note.
func FuzzParseQuery(f *testing.F) {
	for _, q := range []string{storePath("hello"), storePath("hello") + "/bin/hello", nix32("x", 32), "sha256:" + nix32("n", 52),
		"sha256:" + strings.Repeat("ab", 32), strings.Repeat("0f", 32), xssSubject, "sha256:" + strings.Repeat("0", 52) + "!out", "", "/nix/store/", "<script>", "hello", "hello-2.12", "-1", "0"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		exact, byToken, note := parseQuery(q)
		if note == "" {
			t.Errorf("%q: no note", q)
		}
		for _, ks := range exact {
			if err := verdict.CheckSubject(ks.kind, ks.subject); err != nil {
				t.Errorf("%q taken for an invalid %s subject %q: %v", q, ks.kind, ks.subject, err)
			}
		}
		for _, tok := range byToken {
			if tok[0] != "hash" && tok[0] != "output" && tok[0] != "name" {
				t.Errorf("%q: token kind %q", q, tok[0])
			}
			if tok[0] == "name" && (tok[1] == "" || !validPackageName(tok[1]) || packageName(tok[1]) != tok[1]) {
				t.Errorf("%q: name token %q is not a package name without its version", q, tok[1])
			}
			if tok[0] == "hash" && claim.ValidStorePath(claim.StoreDir+"/"+tok[1]+"-x") != nil {
				t.Errorf("%q: hash token %q is not a hash part", q, tok[1])
			}
		}
	})
}
