// Command substituter serves a fixture binary cache through vouch's
// substituter for bench/substituter.sh, which compares it with nginx
// serving the same files statically.
//
//	go run ./bench/substituter make DIR MIB
//	    writes DIR as a binary cache with one uncompressed NAR of a random
//	    MIB-MiB file and its narinfo, and DIR/claim, the agreed claim;
//	    prints the narinfo and NAR URL paths as nginx and vouch name them
//	go run ./bench/substituter static FILE LISTEN
//	    serves FILE's bytes for every request with Go's net/http and
//	    nothing else: the ceiling any Go server reaches on this machine
//	go run ./bench/substituter serve DIR LISTEN UPSTREAM [NARCACHE]
//	    serves the substituter on LISTEN with a real follower index: three
//	    builders' logs of 100,001 claims each, all three claiming DIR/claim,
//	    and a 2-of-3 policy, so every request looks the path up and decides
//	    as a node does; UPSTREAM is the only source of NAR bytes, and
//	    NARCACHE, if given, a NAR cache directory
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/internal/gctune"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/node"
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
		cache := ""
		if len(os.Args) > 5 {
			cache = os.Args[5]
		}
		err = serve(os.Args[2], os.Args[3], os.Args[4], cache)
	case "static":
		err = serveStatic(os.Args[2], os.Args[3])
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

// benchFiller is how many other claims each builder's log holds besides
// the benchmarked path, so that lookups search a real-sized index.
const benchFiller = 100_000

// benchIndex writes a follower index at path with three builders' logs,
// each holding benchFiller claims and then c, and returns it with a
// 2-of-3 policy over those builders, as a node's follow role would have
// them after syncing.
func benchIndex(path string, c *claim.Claim) (*index.Index, *verdict.Policy, error) {
	p := &verdict.Policy{Min: 2, MinOperators: 2, OnConflict: config.OnConflictRefuse}
	var ids []index.LogID
	for i := range 3 {
		id := index.LogID{Name: fmt.Sprintf("builder%d", i), KeyID: fmt.Sprintf("%08x", i+1)}
		ids = append(ids, id)
		p.Members = append(p.Members, verdict.Member{Name: id.Name, Operator: fmt.Sprintf("org%d", i), Weight: 1, KeyID: id.KeyID})
	}
	x, err := index.Open(path, ids...)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		for first := 0; first <= benchFiller; first += 32768 {
			bt := &index.Batch{First: uint64(first)}
			for i := first; i < min(first+32768, benchFiller+1); i++ {
				ci := c
				if i < benchFiller {
					sum := sha256.Sum256([]byte(fmt.Sprint(i)))
					ci = &claim.Claim{Kind: claim.KindNix, Subject: fmt.Sprintf("%s/%s-filler-%d", claim.StoreDir, nixbase32.EncodeToString(sum[:20]), i),
						NarHash: "sha256:" + nixbase32.EncodeToString(sum[:]), NarSize: uint64(i + 1)}
				}
				e, err := ci.Marshal()
				if err != nil {
					return nil, nil, err
				}
				bt.Entries = append(bt.Entries, e)
				bt.Claims = append(bt.Claims, ci)
				bt.Hashes = append(bt.Hashes, tlog.RecordHash(e))
			}
			if conflict, err := x.Append(id, bt); err != nil || conflict != nil {
				return nil, nil, fmt.Errorf("index: %v %v", conflict, err)
			}
		}
		// Claims count once a signed checkpoint covers them.
		size := uint64(benchFiller + 1)
		root, err := x.RootAt(id, size)
		if err != nil {
			return nil, nil, err
		}
		skey, _, err := note.GenerateKey(rand.Reader, id.Name)
		if err != nil {
			return nil, nil, err
		}
		signer, err := note.NewSigner(skey)
		if err != nil {
			return nil, nil, err
		}
		signed, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", id.Name, size, base64.StdEncoding.EncodeToString(root[:]))}, signer)
		if err != nil {
			return nil, nil, err
		}
		cp, err := index.ParseCheckpointBody(signed)
		if err != nil {
			return nil, nil, err
		}
		if err := x.SetCheckpoint(id, cp); err != nil {
			return nil, nil, err
		}
	}
	return x, p, nil
}

func serve(dir, listen, upstream, narCache string) error {
	gctune.Apply() // as vouch serve runs
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
	x, policy, err := benchIndex(filepath.Join(kdir, "index.db"), c)
	if err != nil {
		return err
	}
	defer x.Close()
	d := node.QuorumDecider{Index: x, Policy: policy}
	if v, err := d.Decide(claim.KindNix, c.Subject); err != nil || v.Outcome != verdict.Trusted {
		return fmt.Errorf("the benchmark path is not trusted by its own index: %v %v", v.Outcome, err)
	}
	opts := substituter.Options{
		Decider:   d,
		Key:       key,
		Upstreams: []config.Upstream{{URL: upstream}},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if narCache != "" {
		opts.NARCache = substituter.NARCacheOptions{Dir: narCache, MaxBytes: 1 << 40}
	}
	s, err := substituter.New(opts)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "ready")
	return http.ListenAndServe(listen, s)
}

// serveStatic answers every request with one file's bytes, read once.
func serveStatic(file, listen string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	length := fmt.Sprint(len(b))
	return http.ListenAndServe(listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/x-nix-narinfo")
		w.Header().Set("Content-Length", length)
		w.Write(b)
	}))
}
