package claim

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

const example = `vouch-claim/v1
kind nix
subject /nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b
nar-hash sha256:0cag13c7y879xydq9hdd585j6y11ip6z27qki8h93bz8a49m0wcd
nar-size 328
ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a
deriver 6dfmycvm1f6w7icvcvmnvghxdizgz1xp-b.drv
time 2026-11-22T00:33:40Z
`

func TestRoundTrip(t *testing.T) {
	c, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	if c.NarSize != 328 || len(c.References) != 1 || c.Time != time.Date(2026, 11, 22, 0, 33, 40, 0, time.UTC) {
		t.Fatalf("decoded %+v", c)
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != example {
		t.Fatalf("re-encoded differently:\n%s", b)
	}
}

func TestAllKindsRoundTrip(t *testing.T) {
	claims := []*Claim{
		{Kind: KindNix, Subject: "/nix/store/bvs815ip97cck1mwq6klqxgr83xn9fwk-a", NarHash: "sha256:0cag13c7y879xydq9hdd585j6y11ip6z27qki8h93bz8a49m0wcd", NarSize: 288},
		{Kind: KindNixCA, Subject: "sha256:" + strings.Repeat("ab", 32) + "!out", OutPath: "/nix/store/bvs815ip97cck1mwq6klqxgr83xn9fwk-a", NarHash: "sha256:0cag13c7y879xydq9hdd585j6y11ip6z27qki8h93bz8a49m0wcd", NarSize: 288, References: []string{"bvs815ip97cck1mwq6klqxgr83xn9fwk-a"}},
		{Kind: KindOCI, Subject: OCISubject("github.com/example/app", "0123456789abcdef0123456789abcdef01234567", "packages.x86_64-linux.image", "x86_64-linux"), Digest: "sha256:" + strings.Repeat("0f", 32), Time: time.Unix(1700000000, 0).UTC()},
	}
	for _, c := range claims {
		b, err := c.Marshal()
		if err != nil {
			t.Fatalf("%s: %v", c.Kind, err)
		}
		d, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.Kind, err, b)
		}
		if !d.Agrees(c) || d.Key() != c.Key() {
			t.Fatalf("%s: decoded claim does not agree with the original", c.Kind)
		}
	}
}

func TestAgreementIgnoresInformationalFields(t *testing.T) {
	a, _ := Parse([]byte(example))
	b := *a
	b.Time = b.Time.Add(time.Hour)
	b.Deriver = ""
	if !a.Agrees(&b) {
		t.Fatal("time and deriver must not be compared")
	}
	b.NarSize++
	if a.Agrees(&b) {
		t.Fatal("different nar-size must disagree")
	}
	c := *a
	c.References = nil
	if a.Agrees(&c) {
		t.Fatal("different references must disagree")
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]string{
		"empty":             "",
		"no final newline":  strings.TrimSuffix(example, "\n"),
		"bad header":        strings.Replace(example, "vouch-claim/v1", "vouch-claim/v2", 1),
		"crlf":              strings.ReplaceAll(example, "\n", "\r\n"),
		"unknown kind":      strings.Replace(example, "kind nix", "kind rpm", 1),
		"out of order":      strings.Replace(example, "nar-size 328\nref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\n", "ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\nnar-size 328\n", 1),
		"duplicate subject": strings.Replace(example, "nar-hash", "subject /nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b\nnar-hash", 1),
		"unknown key":       strings.Replace(example, "time", "color blue\ntime", 1),
		"not a store path":  strings.Replace(example, "/nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b", "/tmp/yc67d8wxv2y238qmy10ahm67vsjh0gby-b", 1),
		"sub path":          strings.Replace(example, "gby-b\n", "gby-b/bin/sh\n", 1),
		"bad hash":          strings.Replace(example, "sha256:0cag", "sha256:0ceg", 1),
		"leading zero size": strings.Replace(example, "nar-size 328", "nar-size 0328", 1),
		"zero size":         strings.Replace(example, "nar-size 328", "nar-size 0", 1),
		"unsorted refs":     strings.Replace(example, "ref bvs", "ref zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-z\nref bvs", 1),
		"duplicate refs":    strings.Replace(example, "ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\n", "ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\nref bvs815ip97cck1mwq6klqxgr83xn9fwk-a\n", 1),
		"local time":        strings.Replace(example, "00:33:40Z", "01:33:40+01:00", 1),
		"blank line":        example + "\n",
		"space in value":    strings.Replace(example, "deriver 6d", "deriver  6d", 1),
		"too large":         example + strings.Repeat("x", MaxSize),
	}
	for name, in := range cases {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: error %v does not wrap ErrSyntax", name, err)
		}
	}
}

func TestOCISubject(t *testing.T) {
	s := OCISubject("https://git.example/a/b.git", "abcdef1", "image", "aarch64-linux")
	src, commit, attr, sys, err := ParseOCISubject(s)
	if err != nil || src != "https://git.example/a/b.git" || commit != "abcdef1" || attr != "image" || sys != "aarch64-linux" {
		t.Fatalf("got %q %q %q %q %v", src, commit, attr, sys, err)
	}
	for _, bad := range []string{"x@abcdefg#a", "x#a?system=s", "@abcdefg#a?system=s", "x@ABCDEFG#a?system=s", "x@abcdefg#?system=s"} {
		if _, _, _, _, err := ParseOCISubject(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("vouch-claim/v1\nkind oci\nsubject x@abcdef1#a?system=s\ndigest sha256:" + strings.Repeat("0", 64) + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever Parse accepts must re-encode to exactly the same bytes:
		// a claim has one encoding.
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("accepted claim does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("not canonical:\n%q\n%q", b, out)
		}
	})
}
