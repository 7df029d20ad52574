package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/submit"
	"github.com/vouch-dev/vouch/verdict"
	"github.com/vouch-dev/vouch/witness"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vouch.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWitnessedLog: a builder submits every checkpoint to a vouch node
// running the witness role and publishes the cosignature with it; a
// follower that needs one witness believes the log, and one that needs a
// witness who never saw the log believes nothing of it.
func TestWitnessedLog(t *testing.T) {
	keyDir := t.TempDir()
	for _, name := range []string{"builder", "wit", "ghost"} {
		if out, code := vouch(t, "keygen", "--name", name, "--dir", keyDir); code != 0 {
			t.Fatal(out)
		}
	}
	cosigKey := func(name string) string {
		id, err := keys.LoadIdentity(filepath.Join(keyDir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := witness.CosignatureVerifierKey(id)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	witKey, ghostKey := cosigKey("wit"), cosigKey("ghost")
	witAddr := freeAddr(t)
	witEntry := fmt.Sprintf("[[witness]]\nname = \"wit\"\nvkey = %q\nurl = \"http://%s/witness/\"\n", witKey, witAddr)

	// The builder starts first: until the witness is up its checkpoints go
	// out without a cosignature (a witness never stops a log).
	bState := t.TempDir()
	b := startDaemon(t, bState, "", "--config", writeConfig(t,
		fmt.Sprintf("key = %q\n", filepath.Join(keyDir, "builder.key"))+witEntry))
	builderEntry := fmt.Sprintf("[[builder]]\nname = \"builder\"\nvkey = %q\nlog = %q\n", b.VKey, b.LogURL())

	startDaemon(t, t.TempDir(), "", "--config", writeConfig(t,
		fmt.Sprintf("key = %q\nserve-witness = true\n", filepath.Join(keyDir, "wit.key"))+builderEntry),
		"--listen", witAddr)

	client := submit.NewClient(filepath.Join(bState, "vouch.sock"))
	const n = 20
	var subjects []string
	for i := range n {
		c := ociClaim(1000 + i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, _, err := client.Submit(ctx, c); err != nil {
			t.Fatal(err)
		}
		cancel()
		subjects = append(subjects, c.Subject)
	}

	// The served checkpoint covers every claim and carries the witness's
	// cosignature, checkable with the formats library alone.
	logV, err := note.NewVerifier(b.VKey)
	if err != nil {
		t.Fatal(err)
	}
	witV, err := fnote.NewVerifierForCosignatureV1(witKey)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, err := httpGet(b.LogURL() + "checkpoint")
		if err == nil {
			if nt, err := note.Open(raw, note.VerifierList(logV, witV)); err == nil && len(nt.Sigs) == 2 && strings.Contains(nt.Text, fmt.Sprintf("\n%d\n", n)) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the builder never published a witnessed checkpoint of size %d; last:\n%s\nbuilder log:\n%s", n, raw, b.output.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The witness counts what it cosigned.
	if m, err := httpGet("http://" + witAddr + "/metrics"); err != nil || !strings.Contains(string(m), `vouch_witness_requests_total{code="200"}`) {
		t.Errorf("witness metrics show no cosignature (%v):\n%s", err, m)
	}

	// A follower that needs the witness believes the log.
	fState := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf("state = %q\n", fState)+builderEntry+witEntry+"[quorum]\nmin = 1\nwitnesses = 1\n")
	if out, code := vouch(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("vouch sync with a witnessed log: exit %d\n%s", code, out)
	}
	for _, s := range subjects {
		if v, code := verdictJSON(t, cfg, s); v.Outcome != verdict.Trusted || code != 0 {
			t.Fatalf("%s: %s (exit %d): %s", s, v.Outcome, code, v.Reason)
		}
	}

	// A follower that also needs a witness who never saw this log (nobody
	// listens at its URL) believes none of it, and says why.
	gState := t.TempDir()
	ghostEntry := fmt.Sprintf("[[witness]]\nname = \"ghost\"\nvkey = %q\nurl = \"http://%s/witness/\"\n", ghostKey, freeAddr(t))
	gcfg := writeConfig(t, fmt.Sprintf("state = %q\n", gState)+builderEntry+witEntry+ghostEntry+"[quorum]\nmin = 1\nwitnesses = 2\n")
	out, code := vouch(t, "sync", "--config", gcfg)
	if code == 0 || !strings.Contains(out, "cosigned by 1 of the 2 witnesses") {
		t.Fatalf("vouch sync needing an absent witness: exit %d, want a failure naming the witnesses\n%s", code, out)
	}
	if v, code := verdictJSON(t, gcfg, subjects[0]); v.Outcome == verdict.Trusted || code == 0 {
		t.Fatalf("a log no second witness saw was trusted: %s", v.Reason)
	}
}
