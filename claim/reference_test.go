package claim

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// parseReference is Parse as it was first written: line by line with the
// standard library's string functions, a map of the keys seen and
// time.Parse. It is slower, and plainly correct, so the tests hold the
// fast Parse to it: the same claim or the same error for every input.
// (Both end with the same Validate.)
func parseReference(b []byte) (*Claim, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrSyntax, len(b), MaxSize)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%w: must end with a newline", ErrSyntax)
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if lines[0] != Header {
		return nil, syntaxErr(1, "header is %q, want %q", trunc(lines[0]), Header)
	}
	c := &Claim{}
	// order lists the keys allowed for the kind in their required order;
	// pos is the index of the next key that may appear.
	var order []string
	pos := 0
	seen := map[string]bool{}
	for i, l := range lines[1:] {
		n := i + 2
		k, v, ok := strings.Cut(l, " ")
		if !ok || v == "" || strings.ContainsAny(v, " \t\r\x00") {
			return nil, syntaxErr(n, "want \"key value\" with a non-empty value and no spaces, got %q", trunc(l))
		}
		if n == 2 {
			if k != "kind" {
				return nil, syntaxErr(n, "first key must be kind, got %q", trunc(k))
			}
			c.Kind = Kind(v)
			switch c.Kind {
			case KindNix:
				order = []string{"subject", "nar-hash", "nar-size", "ref", "deriver", "time"}
			case KindNixCA:
				order = []string{"subject", "out-path", "nar-hash", "nar-size", "ref", "time"}
			case KindOCI:
				order = []string{"subject", "digest", "nar-hash", "time"}
			default:
				return nil, syntaxErr(n, "unknown kind %q (known: nix, nix-ca, oci)", trunc(v))
			}
			continue
		}
		j := pos
		for j < len(order) && order[j] != k {
			j++
		}
		if j == len(order) {
			if seen[k] && k != "ref" {
				return nil, syntaxErr(n, "duplicate key %q", trunc(k))
			}
			return nil, syntaxErr(n, "key %q not allowed here for kind %s", trunc(k), c.Kind)
		}
		if k != "ref" {
			pos = j + 1
		} else {
			pos = j
		}
		seen[k] = true
		switch k {
		case "subject":
			c.Subject = v
		case "out-path":
			c.OutPath = v
		case "nar-hash":
			c.NarHash = v
		case "nar-size":
			sz, err := strconv.ParseUint(v, 10, 64)
			if err != nil || strconv.FormatUint(sz, 10) != v {
				return nil, syntaxErr(n, "nar-size %q is not a canonical decimal number", trunc(v))
			}
			c.NarSize = sz
		case "ref":
			c.References = append(c.References, v)
		case "digest":
			c.Digest = v
		case "deriver":
			c.Deriver = v
		case "time":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil || t.UTC().Format(time.RFC3339) != v {
				return nil, syntaxErr(n, "time %q is not RFC 3339 UTC with second precision", trunc(v))
			}
			c.Time = t.UTC()
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return c, nil
}

// sameAsReference fails t unless Parse and parseReference give the same
// claim, or the same error, for b.
func sameAsReference(t *testing.T, b []byte) {
	t.Helper()
	got, gotErr := Parse(b)
	want, wantErr := parseReference(b)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("%q:\nParse error     %v\nreference error %v", b, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nParse     %#v\nreference %#v", b, got, want)
	}
}

// referenceCases are inputs at the edges of what Parse accepts.
func referenceCases() []string {
	valid := strings.Split(example, "\n")
	join := func(lines ...string) string { return strings.Join(lines, "\n") }
	cases := []string{
		example,
		"", "\n", Header, Header + "\n", Header + "\n\n", Header + "\nkind nix\n",
		join(valid[:3]...) + "\n",
		join(append(append([]string{}, valid[:5]...), "nar-size 0328", "")...),
		join(append(append([]string{}, valid[:5]...), "nar-size 18446744073709551616", "")...),
		join(append(append([]string{}, valid[:5]...), "nar-size +328", "")...),
		strings.Replace(example, "subject", "subject ", 1),
		strings.Replace(example, "kind nix\n", "kind nix\nkind nix\n", 1),
		strings.Replace(example, "nar-size 328\n", "nar-size 328\nnar-size 328\n", 1),
		strings.Replace(example, "ref ", "ref\t", 1),
		strings.Replace(example, "\n", "\r\n", 2),
		strings.Replace(example, "deriver", "time 2026-11-22T00:33:40Z\nderiver", 1),
		strings.Replace(example, "ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\n", "", 1),
		strings.Replace(example, "ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\n", "ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\nref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\n", 1),
		strings.Replace(example, "ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\n", "ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\nref cvs815ip97cck1mwq6klqxgr83xn9fwk-a/b\n", 1),
		strings.Replace(example, "kind nix", "kind nix-ca", 1),
		strings.Replace(example, "kind nix", "kind git", 1),
		"vouch-claim/v1\nkind oci\nsubject x@abcdef1#a?system=s\ndigest sha256:" + strings.Repeat("0", 64) + "\n",
		"vouch-claim/v1\nkind oci\nsubject x@abcdef1#a?system=s\ndigest sha256:" + strings.Repeat("0", 64) + "\nref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\n",
		"vouch-claim/v1\nkind nix-ca\nsubject sha256:" + strings.Repeat("a", 64) + "!out\nout-path /nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b\nnar-hash sha256:0cag13c7y879xydq9hdd585j6y11ip6z27qki8h93bz8a49m0wcd\nnar-size 1\ntime 2026-11-22T00:33:40Z\n",
	}
	for _, tm := range []string{
		"2026-11-22T00:33:40Z", "2024-02-29T23:59:59Z", "2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
		"2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z",
		"2026-01-01T00:60:00Z", "2026-01-01T00:00:60Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
		"2026-11-22T00:33:40+00:00", "2026-11-22T00:33:40.5Z", "2026-11-22t00:33:40z", "2026-11-22T00:33:40",
		"2026-1-22T00:33:40Z", "+026-11-22T00:33:40Z", "2026-11-22T00:33:4aZ", "2026-11-22 00:33:40Z",
	} {
		cases = append(cases, strings.Replace(example, "2026-11-22T00:33:40Z", tm, 1))
	}
	return cases
}

func TestParseMatchesReference(t *testing.T) {
	for _, c := range referenceCases() {
		sameAsReference(t, []byte(c))
	}
}

func FuzzParseMatchesReference(f *testing.F) {
	for _, c := range referenceCases() {
		f.Add([]byte(c))
	}
	f.Fuzz(sameAsReference)
}

// BenchmarkParse compares Parse with the reference parser on the example
// claim.
func BenchmarkParse(b *testing.B) {
	for _, p := range []struct {
		name  string
		parse func([]byte) (*Claim, error)
	}{{"fast", Parse}, {"reference", parseReference}} {
		b.Run(p.name, func(b *testing.B) {
			in := []byte(example)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.parse(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
