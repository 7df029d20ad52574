package follow

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/memtlog"
)

// tileLog writes a C2SP tlog-tiles log directly with sumdb/tlog: bundles,
// hash tiles and a signed checkpoint, as any tiles server would publish
// them. Tests use it to publish histories a well-behaved log never would
// (forks, rollbacks) under a real signing key.
type tileLog struct {
	t      testing.TB
	signer note.Signer
	vkey   string
	name   string

	entries [][]byte
	tree    memtlog.Tree // the entries' Merkle tree
}

func newTileLog(t testing.TB, name string) *tileLog {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &tileLog{t: t, signer: s, vkey: vkey, name: name}
}

// fork returns a log with the same key and the first n entries of l.
func (l *tileLog) fork(n int) *tileLog {
	f := &tileLog{t: l.t, signer: l.signer, vkey: l.vkey, name: l.name}
	for _, e := range l.entries[:n] {
		f.add(e)
	}
	return f
}

func (l *tileLog) add(entry []byte) {
	l.tree.Add(entry)
	l.entries = append(l.entries, entry)
}

// addClaims adds n nix claims with subjects prefix-0, prefix-1, …
func (l *tileLog) addClaims(prefix string, n int, output string) {
	for i := 0; i < n; i++ {
		l.add(testClaim(l.t, fmt.Sprintf("%s-%d", prefix, i), output))
	}
}

func (l *tileLog) root(n int) tlog.Hash {
	h, err := l.tree.Root(int64(n))
	if err != nil {
		l.t.Fatal(err)
	}
	return h
}

// checkpoint returns the signed checkpoint of the first n entries.
func (l *tileLog) checkpoint(n int) []byte {
	r := l.root(n)
	body := fmt.Sprintf("%s\n%d\n%s\n", l.name, n, base64.StdEncoding.EncodeToString(r[:]))
	msg, err := note.Sign(&note.Note{Text: body}, l.signer)
	if err != nil {
		l.t.Fatal(err)
	}
	return msg
}

// publish writes the tree of the first n entries into a fresh directory
// and returns it.
func (l *tileLog) publish(n int) string {
	dir := l.t.TempDir()
	write := func(path string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			l.t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			l.t.Fatal(err)
		}
	}
	for _, t := range tlog.NewTiles(8, 0, int64(n)) {
		data, err := tlog.ReadTileData(t, &l.tree)
		if err != nil {
			l.t.Fatal(err)
		}
		write(layout.TilePath(uint64(t.L), uint64(t.N), partialOf(t.W)), data)
	}
	for b := 0; b*256 < n; b++ {
		w := min(256, n-b*256)
		var bundle []byte
		for _, e := range l.entries[b*256 : b*256+w] {
			bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(e)))
			bundle = append(bundle, e...)
		}
		write(layout.EntriesPath(uint64(b), partialOf(w)), bundle)
	}
	write("checkpoint", l.checkpoint(n))
	return dir
}

// publishStream publishes a log of n entries made by gen without keeping
// them in memory (only the tree's hashes), for large benchmarks.
func (l *tileLog) publishStream(n int, gen func(i int) []byte) string {
	dir := l.t.TempDir()
	write := func(path string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			l.t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			l.t.Fatal(err)
		}
	}
	var bundle []byte
	for i := 0; i < n; i++ {
		e := gen(i)
		l.tree.Add(e)
		bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(e)))
		bundle = append(bundle, e...)
		if (i+1)%256 == 0 || i == n-1 {
			write(layout.EntriesPath(uint64(i/256), partialOf(i%256+1)), bundle)
			bundle = bundle[:0]
		}
	}
	for _, t := range tlog.NewTiles(8, 0, int64(n)) {
		data, err := tlog.ReadTileData(t, &l.tree)
		if err != nil {
			l.t.Fatal(err)
		}
		write(layout.TilePath(uint64(t.L), uint64(t.N), partialOf(t.W)), data)
	}
	write("checkpoint", l.checkpoint(n))
	return dir
}

func testClaim(t testing.TB, name, output string) []byte {
	c := &claim.Claim{
		Kind:    claim.KindNix,
		Subject: "/nix/store/" + nix32Like(name) + "-pkg",
		NarHash: "sha256:" + nix32Like("nar "+output) + nix32Like("nar2 " + output)[:20],
		NarSize: uint64(len(output)) + 100,
		Time:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nix32Like maps s to 32 characters of Nix's base-32 alphabet.
func nix32Like(s string) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	h := sha256.Sum256([]byte(s))
	out := make([]byte, 32)
	for i := range out {
		out[i] = alphabet[h[i]%32]
	}
	return string(out)
}

// switchServer serves a directory that the test can swap over time, on
// 127.0.0.1: one URL, several histories.
type switchServer struct {
	dir atomic.Pointer[string]
	srv *httptest.Server
}

func newSwitchServer(t testing.TB, dir string) *switchServer {
	s := &switchServer{}
	s.dir.Store(&dir)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.StripPrefix("/log", http.FileServer(http.Dir(*s.dir.Load()))).ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *switchServer) serve(dir string) { s.dir.Store(&dir) }
func (s *switchServer) url() string      { return s.srv.URL + "/log/" }

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add()       { c.n.Add(1) }
func (c *atomicCounter) get() int64 { return c.n.Load() }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
