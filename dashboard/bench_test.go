package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/verdict"
)

// benchClaims is the size of the benchmark index: four logs of 250,000
// claims each, about the same 250,000 subjects.
const benchClaims = 1_000_000

var (
	bigOnce sync.Once
	big     *Dashboard
	bigErr  error
	bigTook time.Duration // building the snapshot
)

// bigDashboard fills an index with benchClaims claims the way the follow
// package does (verified batches with their leaf hashes, then a signed
// checkpoint over them), and warms the dashboard's snapshot.
func bigDashboard(b *testing.B) *Dashboard {
	bigOnce.Do(func() { big, bigErr = buildBig() })
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return big
}

func buildBig() (*Dashboard, error) {
	names := []string{"alice", "bob", "carol", "dave"}
	perLog := benchClaims / len(names)
	var ids []index.LogID
	signers := map[string]note.Signer{}
	cfg := &config.Config{State: mustTempDir(), Dashboard: true}
	policy := &verdict.Policy{Min: 3, MinOperators: 2, OnConflict: config.OnConflictMajority}
	for _, name := range names {
		skey, vkey, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, err
		}
		signer, err := note.NewSigner(skey)
		if err != nil {
			return nil, err
		}
		pub, err := keys.VerifierPublicKey(vkey)
		if err != nil {
			return nil, err
		}
		id := index.LogID{Name: name, KeyID: keys.KeyID(pub)}
		ids, signers[name] = append(ids, id), signer
		cfg.Builders = append(cfg.Builders, config.Builder{Name: name, VKey: vkey, Operator: "org-" + name, Weight: 1})
		policy.Members = append(policy.Members, verdict.Member{Name: name, Operator: "org-" + name, Weight: 1, KeyID: id.KeyID})
	}
	idx, err := index.Open(filepath.Join(cfg.State, "index.db"), ids...)
	if err != nil {
		return nil, err
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range ids {
		const batch = 16384
		for first := 0; first < perLog; first += batch {
			bt := &index.Batch{First: uint64(first)}
			for i := first; i < min(perLog, first+batch); i++ {
				out := "same"
				if i%10 == 0 && id.Name == "dave" {
					out = "different"
				}
				c := nixClaim(fmt.Sprintf("s%d", i), out, start.Add(time.Duration(i)*10*time.Second))
				e, err := c.Marshal()
				if err != nil {
					return nil, err
				}
				bt.Entries, bt.Claims, bt.Hashes = append(bt.Entries, e), append(bt.Claims, c), append(bt.Hashes, tlog.RecordHash(e))
			}
			if conflict, err := idx.Append(id, bt); err != nil || conflict != nil {
				return nil, fmt.Errorf("append: %v %v", conflict, err)
			}
		}
		root, err := idx.RootAt(id, uint64(perLog))
		if err != nil {
			return nil, err
		}
		text := fmt.Sprintf("%s\n%d\n%s\n", id.Name, perLog, base64.StdEncoding.EncodeToString(root[:]))
		signed, err := note.Sign(&note.Note{Text: text}, signers[id.Name])
		if err != nil {
			return nil, err
		}
		if err := idx.SetCheckpoint(id, &index.Checkpoint{Origin: id.Name, Size: uint64(perLog), Root: root, Note: signed}); err != nil {
			return nil, err
		}
		if err := idx.SetHealth(id, time.Now(), nil); err != nil {
			return nil, err
		}
	}
	h, err := New(Options{Index: idx, Policy: policy, Config: cfg, Logger: quiet()})
	if err != nil {
		return nil, err
	}
	d := h
	t0 := time.Now()
	if _, _, err := d.snapshot(context.Background()); err != nil {
		return nil, err
	}
	bigTook = time.Since(t0)
	return d, nil
}

func serve(b *testing.B, h http.Handler, target string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	if rec.Code != http.StatusOK {
		b.Fatalf("GET %s: %d\n%s", target, rec.Code, rec.Body.String())
	}
}

// BenchmarkOverview serves / over 1,000,000 indexed claims; snapshot-s is
// the one-off walk that computes its numbers (see the package doc).
func BenchmarkOverview(b *testing.B) {
	d := bigDashboard(b)
	for b.Loop() {
		serve(b, d, "/")
	}
	b.ReportMetric(bigTook.Seconds(), "snapshot-s")
}

// BenchmarkSubjectsPage serves successive pages of /subjects (50 subjects,
// each decided under the policy) over 1,000,000 indexed claims.
func BenchmarkSubjectsPage(b *testing.B) {
	d := bigDashboard(b)
	cursor := ""
	for b.Loop() {
		serve(b, d, "/subjects?after="+cursor)
		_, next, err := d.idx.Subjects(cursor, PageSize)
		if err != nil {
			b.Fatal(err)
		}
		cursor = next
	}
}

// BenchmarkSubjectPage serves one subject's page: four claims, their
// inclusion proofs in trees of 250,000 entries, and the verdict.
func BenchmarkSubjectPage(b *testing.B) {
	d := bigDashboard(b)
	target := "/subject?" + url.Values{"s": {storePath("s12345")}}.Encode()
	for b.Loop() {
		serve(b, d, target)
	}
}

// BenchmarkSearchHashPart finds a subject by its hash part through the
// snapshot's lookup table.
func BenchmarkSearchHashPart(b *testing.B) {
	d := bigDashboard(b)
	target := "/api/v1/search?q=" + claim.HashPart(storePath("s777"))
	for b.Loop() {
		serve(b, d, target)
	}
}
