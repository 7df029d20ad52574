// Command substituter serves a fixture binary cache through vouch's
// substituter for bench/substituter.sh, which compares it with nginx
// serving the same files statically.
//
//	go run ./bench/substituter make DIR MIB
//	    writes DIR as a binary cache with one uncompressed NAR of a random
//	    MIB-MiB file and its narinfo, and DIR/claim, the agreed claim;
//	    prints the narinfo and NAR URL paths as nginx and vouch name them
//	go run ./bench/substituter serve DIR LISTEN UPSTREAM
//	    serves the substituter on LISTEN, trusting DIR/claim (looked up on
//	    every request, as a node's index would be), with UPSTREAM as the
//	    only source of NAR bytes
package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/substituter"
	"github.com/vouch-dev/vouch/verdict"
)

const storePath = "/nix/store/4jv3dixs6a3zinb7azwasrig501r2h14-bench"

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: substituter make DIR MIB | serve DIR LISTEN UPSTREAM")
	}
	var err error
	switch os.Args[1] {
	case "make":
		err = makeCache(os.Args[2], os.Args[3])
	case "serve":
		err = serve(os.Args[2], os.Args[3], os.Args[4])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

func makeCache(dir, mib string) error {
	var n int64
	if _, err := fmt.Sscan(mib, &n); err != nil {
		return fmt.Errorf("MIB: %w", err)
	}
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tree)
	f, err := os.Create(filepath.Join(tree, "blob"))
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, n<<20); err != nil {
		return err
	}
	f.Close()
	narHash, narSize, err := nixstore.NarHash(tree)
	if err != nil {
		return err
	}
	os.MkdirAll(filepath.Join(dir, "nar"), 0o755)
	nar, err := os.Create(filepath.Join(dir, "nar", "bench.nar"))
	if err != nil {
		return err
	}
	if err := nixstore.WriteNAR(nar, tree); err != nil {
		return err
	}
	nar.Close()
	ni := narinfo.NarInfo{StorePath: storePath, URL: "nar/bench.nar", Compression: "none", NarHash: narHash, NarSize: narSize}
	if err := os.WriteFile(filepath.Join(dir, claim.HashPart(storePath)+".narinfo"), ni.Marshal(), 0o644); err != nil {
		return err
	}
	c := &claim.Claim{Kind: claim.KindNix, Subject: storePath, NarHash: narHash, NarSize: narSize}
	b, err := c.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "claim"), b, 0o644); err != nil {
		return err
	}
	hp := claim.HashPart(storePath)
	fmt.Printf("/%s.narinfo /nar/bench.nar /nar/%s-%s.nar\n", hp, hp, strings.TrimPrefix(narHash, "sha256:"))
	return nil
}

// decider trusts one claim; it looks it up in maps on every request as an
// index would.
type decider struct {
	byHash   map[string]string
	verdicts map[string]verdict.Verdict
}

func (d *decider) PathByHash(h string) (string, bool) { p, ok := d.byHash[h]; return p, ok }

func (d *decider) Decide(kind claim.Kind, subject string) (verdict.Verdict, error) {
	v, ok := d.verdicts[subject]
	if !ok {
		return verdict.Verdict{Kind: kind, Subject: subject, Outcome: verdict.Insufficient}, nil
	}
	return v, nil
}

func serve(dir, listen, upstream string) error {
	b, err := os.ReadFile(filepath.Join(dir, "claim"))
	if err != nil {
		return err
	}
	c, err := claim.Parse(b)
	if err != nil {
		return err
	}
	kdir, err := os.MkdirTemp("", "vouch-bench-key-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(kdir)
	files, err := keys.Generate(kdir, "bench-1")
	if err != nil {
		return err
	}
	key, err := keys.LoadNixKey(files.NixSecret)
	if err != nil {
		return err
	}
	d := &decider{
		byHash:   map[string]string{claim.HashPart(c.Subject): c.Subject},
		verdicts: map[string]verdict.Verdict{c.Subject: {Kind: claim.KindNix, Subject: c.Subject, Outcome: verdict.Trusted, Value: c}},
	}
	s, err := substituter.New(substituter.Options{
		Decider:   d,
		Key:       key,
		Upstreams: []config.Upstream{{URL: upstream}},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	return http.ListenAndServe(listen, s)
}
