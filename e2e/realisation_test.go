package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
)

// TestCADerivationSubstitutesOnlyWithQuorumOnItsRealisation: stock Nix 2.8
// with ca-derivations and --max-jobs 0 (it cannot build) realises the
// world's floating content-addressed derivation through a node following
// the four builders when the quorum agrees on the realisation (the nix-ca
// claim), and cannot when it does not — although the out path itself is
// agreed and its narinfo served in both cases.
func TestCADerivationSubstitutesOnlyWithQuorumOnItsRealisation(t *testing.T) {
	w := buildWorld4(t)
	_, claims := waitForClaims(t, w.builders[0], 9)
	var ca *claim.Claim
	for _, c := range claims {
		if c.Kind == claim.KindNixCA && c.OutPath == w.paths["ca"] {
			ca = c
		}
	}
	if ca == nil {
		t.Fatalf("builder 1 logged no nix-ca claim for %s", w.paths["ca"])
	}

	// Builder 5 built ca without the post-build hook and logged only its
	// out path (a nix claim), not the realisation.
	b5 := startDaemon(t, t.TempDir(), t.TempDir())
	out := nixBuild(t, b5.Store, "", nil, "ca")
	if len(out) != 1 || out[0] != w.paths["ca"] {
		t.Fatalf("builder 5 built ca to %v, want %s", out, w.paths["ca"])
	}
	if msg, code := vouch(t, "submit", "--state", b5.State, "--store", b5.Store, out[0]); code != 0 {
		t.Fatal(msg)
	}
	if _, c := waitForClaims(t, b5, 1); len(c) != 1 || c[0].Kind != claim.KindNix {
		t.Fatalf("builder 5 logged %v, want one nix claim", c)
	}

	keyDir := t.TempDir()
	if msg, code := vouch(t, "keygen", "--name", "cache", "--dir", keyDir); code != 0 {
		t.Fatal(msg)
	}
	pub, _ := os.ReadFile(filepath.Join(keyDir, "cache.nix.pub"))
	builders := append(w.builders[:4:4], b5)

	for _, tc := range []struct {
		name     string
		builders []*daemon
		quorum   string
		agreed   bool
	}{
		// 3 of the 4 builders that built ca through the hook.
		{"three-of-four", builders[:4], "min = 3\nmin-operators = 2\n", true},
		// All 5 agree on the out path; only 4 logged the realisation.
		{"five-of-five", builders, "min = 5\nmin-operators = 1\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			cfg := realisationFollowerConfig(t, state, tc.builders, tc.quorum, filepath.Join(keyDir, "cache.nix.sec"))
			node := startDaemon(t, state, "", "--config", cfg)
			base := "http://" + node.Addr
			// The out path's narinfo is served in both cases: wait for it,
			// which also means the follower has synced every log.
			narinfoURL := base + "/" + claim.HashPart(w.paths["ca"]) + ".narinfo"
			deadline := time.Now().Add(60 * time.Second)
			for {
				resp, err := httpClient.Get(narinfoURL)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("the node never served the narinfo of %s:\n%s", w.paths["ca"], node.output.String())
				}
				time.Sleep(200 * time.Millisecond)
			}
			resp, err := httpClient.Get(base + "/realisations/" + ca.Subject + ".doi")
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(resp.Body)
			resp.Body.Close()
			wantJSON := fmt.Sprintf(`"id":%q,"outPath":%q`, ca.Subject, strings.TrimPrefix(ca.OutPath, claim.StoreDir+"/"))
			switch {
			case tc.agreed && (resp.StatusCode != 200 || !strings.Contains(body, wantJSON)):
				t.Fatalf("agreed realisation: %d\n%s", resp.StatusCode, body)
			case !tc.agreed && (resp.StatusCode != 404 || resp.Header.Get("X-Vouch-Refusal") != "insufficient"):
				t.Fatalf("realisation without quorum: %d %q\n%s", resp.StatusCode, resp.Header.Get("X-Vouch-Refusal"), body)
			}

			client, cache := t.TempDir(), t.TempDir()
			t.Cleanup(func() { makeWritable(client) })
			args := []string{"--store", client, worldDir, "-A", "ca", "--no-out-link", "--max-jobs", "0",
				"--extra-experimental-features", "ca-derivations",
				"--option", "substituters", base, "--option", "trusted-public-keys", strings.TrimSpace(string(pub)),
				"--option", "narinfo-cache-negative-ttl", "0", "--option", "narinfo-cache-positive-ttl", "0"}
			cmd := exec.Command("nix-build", args...)
			cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cache, "HOME="+cache)
			nixOut, err := cmd.CombinedOutput()
			_, statErr := os.Stat(filepath.Join(client, w.paths["ca"], "data"))
			if tc.agreed {
				if err != nil || statErr != nil || !strings.Contains(string(nixOut), w.paths["ca"]) {
					t.Fatalf("nix-build -A ca through vouch: %v %v\n%s\nnode log:\n%s", err, statErr, nixOut, node.output.String())
				}
				drv, err := exec.Command("nix-instantiate", "--store", client, worldDir, "-A", "ca",
					"--extra-experimental-features", "ca-derivations").Output()
				if err != nil {
					t.Fatalf("nix-instantiate -A ca in the client store: %v", err)
				}
				realisationInfo := func(installable string) ([]byte, error) {
					return exec.Command("nix", "realisation", "info", "--json", "--store", client,
						"--extra-experimental-features", "nix-command ca-derivations", installable).CombinedOutput()
				}
				info, err := realisationInfo(strings.TrimSpace(string(drv)))
				if strings.Contains(string(info), `"opaquePath"`) {
					// Nix 2.13 and later: a bare .drv is the file; its outputs are drv^*.
					info, err = realisationInfo(strings.TrimSpace(string(drv)) + "^*")
				}
				if err != nil || !strings.Contains(string(info), wantJSON) {
					t.Fatalf("the client recorded no realisation: %v\n%s", err, info)
				}
			} else {
				t.Logf("nix-build without a quorum on the realisation: %v\n%s", err, nixOut)
				if err == nil || statErr == nil {
					t.Fatalf("Nix realised ca without a quorum on its realisation:\n%s", nixOut)
				}
			}
		})
	}
}

// realisationFollowerConfig writes a follower config for builders, each its
// own operator, with the node's Nix key and the builders' stores as
// upstreams.
func realisationFollowerConfig(t *testing.T, state string, builders []*daemon, quorum, nixKey string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "state = %q\nlisten = \"127.0.0.1:0\"\nnix-key = %q\n", state, nixKey)
	for _, d := range builders {
		fmt.Fprintf(&b, "[[upstream]]\nurl = %q\ntimeout = \"30s\"\n", "http://"+d.Addr+"/peer")
	}
	b.WriteString("[follow]\ninterval = \"200ms\"\n\n")
	for i, d := range builders {
		fmt.Fprintf(&b, "[[builder]]\nname = \"b%d\"\nvkey = %q\nlog = %q\noperator = \"org%d\"\n\n", i+1, d.VKey, d.LogURL(), i+1)
	}
	b.WriteString("[quorum]\n" + quorum + "\n")
	p := filepath.Join(t.TempDir(), "vouch.toml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// makeWritable lets the test remove a chroot store (Nix makes it read-only).
func makeWritable(dir string) {
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}
