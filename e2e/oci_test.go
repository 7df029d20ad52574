package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/mod/modfile"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/testregistry"
	"github.com/vouch-dev/vouch/oci"
)

// TestOCIQuorum runs the image gate end to end with real vouch daemons,
// real logs and two real registries: three listed builders and one
// unlisted one attest with `vouch attest oci`, a follower syncs their
// logs, and `vouch verify oci` / `vouch promote` decide; crane, an
// independent client, reads and deletes what vouch pushed.
func TestOCIQuorum(t *testing.T) {
	builders := make([]*ociBuilder, 4) // b1, b2, b3 listed; b4 ("mallory") is not
	var wg sync.WaitGroup
	for i := range builders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			builders[i] = startOCIBuilder(t)
		}()
	}
	wg.Wait()
	for _, b := range builders {
		if b == nil {
			t.FailNow()
		}
	}
	crane := craneBinary(t)

	t.Run("referrers-api", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(srv.Close)
		ociGate(t, crane, builders, strings.TrimPrefix(srv.URL, "http://"), true)
	})
	t.Run("tag-fallback", func(t *testing.T) {
		ociGate(t, crane, builders, startDistribution(t), false)
	})
	t.Run("stale-view", func(t *testing.T) { ociStaleView(t, builders) })
	t.Run("hanging-registry", func(t *testing.T) { ociHangingRegistry(t, builders) })
}

// ociStaleView: a listed builder whose log cannot be reached has never
// been synced, so its dissent could not be seen; promote refuses to
// decide, names the log, and records the refusal.
func ociStaleView(t *testing.T, builders []*ociBuilder) {
	unreachable := &ociBuilder{daemon: &daemon{VKey: builders[3].VKey, Addr: "127.0.0.1:1"}}
	state := t.TempDir()
	cfg := ociFollowerConfig(t, state, freeAddr(t), append(builders[:3:3], unreachable), `on-conflict = "refuse"`)
	image := "127.0.0.1:1/app@sha256:" + strings.Repeat("cd", 32)
	// verify oci without an index does not fall back to the registry.
	if out, code := vouch(t, "verify", "oci", image, "--config", cfg); code == 0 || !strings.Contains(out, "run vouch sync --config") || !strings.Contains(out, "--registry-only") {
		t.Fatalf("verify oci without an index: exit %d\n%s", code, out)
	}
	out, code := vouch(t, "promote", image, "--tag", "stable", "--config", cfg, "--max-age", "1h")
	if code == 0 || !strings.Contains(out, "older than 1h0m0s: b4: never synced") || !strings.Contains(out, "b4: sync failed") {
		t.Fatalf("promote with an unreachable log: exit %d\n%s", code, out)
	}
	records, err := os.ReadFile(filepath.Join(state, oci.PromotionsLog))
	if err != nil || strings.Count(string(records), "\n") != 1 || !strings.Contains(string(records), `"error":"the view of the builders' logs is older than 1h0m0s: b4: never synced`) {
		t.Fatalf("promotions log: %v\n%s", err, records)
	}
}

// ociHangingRegistry: a registry that accepts connections and never
// answers does not hold promote (and the index lock) forever: each
// request gives up after --registry-timeout, and the error is recorded.
func ociHangingRegistry(t *testing.T, builders []*ociBuilder) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never read, never answered
		}
	}()
	t.Cleanup(func() { l.Close() })
	state := t.TempDir()
	cfg := ociFollowerConfig(t, state, freeAddr(t), builders[:3], `on-conflict = "refuse"`)
	start := time.Now()
	out, code := vouch(t, "promote", l.Addr().String()+"/app@sha256:"+strings.Repeat("ef", 32), "--tag", "stable", "--config", cfg,
		"--registry-timeout", "1s", "--source", "https://example.org/app-a", "--commit", strings.Repeat("1", 40), "--system", "x86_64-linux")
	took := time.Since(start)
	if code == 0 || !strings.Contains(out, "did not answer within 1s") || took > time.Minute {
		t.Fatalf("promote against a registry that never answers: exit %d after %s\n%s", code, took, out)
	}
	t.Logf("promote gave up after %s", took.Round(time.Millisecond))
	records, err := os.ReadFile(filepath.Join(state, oci.PromotionsLog))
	if err != nil || !strings.Contains(string(records), "did not answer within 1s") || !strings.Contains(string(records), `"moved":false`) {
		t.Fatalf("promotions log: %v\n%s", err, records)
	}
	// The index is free again: vouch sync can open it.
	if out, code := vouch(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("vouch sync after the timed-out promote: exit %d\n%s", code, out)
	}
}

// ociGate is the whole loop against the registry at host.
func ociGate(t *testing.T, crane string, builders []*ociBuilder, host string, referrersAPI bool) {
	repo := host + "/app"
	source := "https://example.org/app-" + map[bool]string{true: "a", false: "b"}[referrersAPI]
	const c1, c2, c3 = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222", "3333333333333333333333333333333333333333"
	good := pushOCIImage(t, repo, "hello v2\n")
	other := pushOCIImage(t, repo, "hello v2, built with another compiler\n")
	old := pushOCIImage(t, repo, "hello v1\n")
	if out, err := exec.Command(crane, "tag", repo+"@"+old, "stable").CombinedOutput(); err != nil {
		t.Fatalf("crane tag: %v\n%s", err, out)
	}
	attest := func(b *ociBuilder, digest, commit string) (string, int) {
		return vouch(t, "attest", "oci", repo+"@"+digest, "--key", b.Key, "--socket", filepath.Join(b.State, "vouch.sock"),
			"--source", source, "--commit", commit, "--system", "x86_64-linux", "--cosign")
	}
	mustAttest := func(b *ociBuilder, digest, commit string) {
		t.Helper()
		if out, code := attest(b, digest, commit); code != 0 || !strings.Contains(out, "logged claim") || !strings.Contains(out, "attached to") {
			t.Fatalf("vouch attest oci: exit %d\n%s", code, out)
		}
		// The claim is acknowledged when durable; the log's published
		// checkpoint holds it within a second. A follower syncing before
		// that would not see it yet: wait for it.
		subject := source + "@" + commit + "#default?system=x86_64-linux"
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, claims := waitForClaims(t, b.daemon, 1)
			if slices.ContainsFunc(claims, func(c *claim.Claim) bool { return c.Subject == subject }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the log never published the claim for %s", subject)
			}
		}
	}

	// Commit c1: the three listed builders built the same image; the
	// unlisted mallory attests another image for the same source.
	for _, b := range builders[:3] {
		mustAttest(b, good, c1)
	}
	mustAttest(builders[3], other, c1)
	// b1 cannot attest another digest for what its log already holds:
	// the daemon refuses, and nothing reaches the registry.
	out, code := attest(builders[0], other, c1)
	if code == 0 || !strings.Contains(out, "already holds a different output") || !strings.Contains(out, "nothing was pushed") {
		t.Fatalf("b1 attesting a second digest for c1: exit %d\n%s", code, out)
	}

	// Attesting the same build again (a new signing time) adds nothing:
	// the earlier attestation is found, and no second referrer appears.
	if out, code := attest(builders[0], good, c1); code != 0 || !strings.Contains(out, "already attached") {
		t.Fatalf("b1 attesting c1 again: exit %d\n%s", code, out)
	}

	// An independent client sees what vouch pushed.
	if got := craneAttestations(t, crane, host, "app", good, referrersAPI); len(got) != 3 {
		t.Fatalf("crane sees %d attestations of the good image, want 3 (b1, b2, b3)", len(got))
	}
	if got := craneAttestations(t, crane, host, "app", other, referrersAPI); len(got) != 1 {
		t.Fatalf("crane sees %d attestations of the other image, want 1 (mallory's only: b1's was refused)", len(got))
	}

	t.Run("cosign", func(t *testing.T) { cosignVerifies(t, builders, repo, good, other) })

	state := t.TempDir()
	listen := freeAddr(t)
	refuse := ociFollowerConfig(t, state, listen, builders[:3], `on-conflict = "refuse"`)
	majority := ociFollowerConfig(t, state, listen, builders[:3], `on-conflict = "majority"`)
	syncLogs := func() {
		t.Helper()
		if out, code := vouch(t, "sync", "--config", refuse); code != 0 {
			t.Fatalf("vouch sync: exit %d\n%s", code, out)
		}
	}
	syncLogs()

	// Quorum met, from the logs.
	rep, code := verifyOCI(t, refuse, repo+"@"+good)
	if code != 0 || !rep.Trusted || rep.Mode != oci.ModeLogs || len(rep.Verdicts) != 1 || names(rep.Verdicts[0].Agreed) != "b1,b2,b3" {
		t.Fatalf("good image: exit %d, %+v", code, rep)
	}
	for _, a := range rep.Attestations {
		if !strings.Contains(a.Reason, "matches its log") {
			t.Errorf("registry attestation %s: %s", a.Manifest, a.Reason)
		}
	}
	// By tag it is the same image once the tag points there; the other
	// image, attested only by an unlisted key, is not trusted, and
	// mallory's attestation counts for nothing.
	rep, code = verifyOCI(t, refuse, repo+"@"+other)
	if code == 0 || rep.Trusted || len(rep.Attestations) != 1 || !strings.Contains(rep.Attestations[0].Reason, "not in the policy") {
		t.Fatalf("other image: exit %d, %+v", code, rep)
	}
	rep, code = verifyOCI(t, refuse, repo+"@"+other, "--source", source, "--commit", c1, "--system", "x86_64-linux")
	if code == 0 || rep.Trusted || !strings.Contains(rep.Reason, "agree on "+good+", not on this image") {
		t.Fatalf("other image for c1: exit %d, %+v", code, rep)
	}

	// Promotion moves the tag to the trusted image only.
	if out, code := vouch(t, "promote", repo+"@"+other, "--tag", "stable", "--config", refuse); code == 0 || !strings.Contains(out, "NOT moved") {
		t.Fatalf("promote other: exit %d\n%s", code, out)
	}
	if d := craneDigest(t, crane, repo+":stable"); d != old {
		t.Fatalf("stable is %s after a refused promotion, want %s", d, old)
	}
	if out, code := vouch(t, "promote", repo+"@"+good, "--tag", "stable", "--config", refuse); code != 0 {
		t.Fatalf("promote good: exit %d\n%s", code, out)
	}
	if d := craneDigest(t, crane, repo+":stable"); d != good {
		t.Fatalf("stable is %s after promotion, want %s", d, good)
	}
	if rep, code := verifyOCI(t, refuse, repo+":stable"); code != 0 || rep.Digest != good {
		t.Fatalf("verify by tag: exit %d, %+v", code, rep)
	}
	records, err := os.ReadFile(filepath.Join(state, oci.PromotionsLog))
	if err != nil || strings.Count(string(records), "\n") != 2 || !strings.Contains(string(records), `"moved":true`) {
		t.Fatalf("promotions log: %v\n%s", err, records)
	}

	// The registry drops every attestation (deleted with crane). The logs
	// are the truth: given the source, the image is still trusted; without
	// it, nothing names the subject and the verdict can only fail.
	for _, att := range craneAttestations(t, crane, host, "app", good, referrersAPI) {
		if out, err := exec.Command(crane, "delete", repo+"@"+att).CombinedOutput(); err != nil {
			t.Fatalf("crane delete %s: %v\n%s", att, err, out)
		}
	}
	if !referrersAPI {
		// distribution deletes manifests by digest only.
		index := craneDigest(t, crane, repo+":"+strings.Replace(good, ":", "-", 1))
		if out, err := exec.Command(crane, "delete", repo+"@"+index).CombinedOutput(); err != nil {
			t.Fatalf("crane delete the referrers tag: %v\n%s", err, out)
		}
	}
	attTag := repo + ":" + strings.Replace(good, ":", "-", 1) + ".att"
	if out, err := exec.Command(crane, "delete", repo+"@"+craneDigest(t, crane, attTag)).CombinedOutput(); err != nil {
		t.Fatalf("crane delete the cosign tag: %v\n%s", err, out)
	}
	if got := craneAttestations(t, crane, host, "app", good, referrersAPI); len(got) != 0 {
		t.Fatalf("%d attestations left after deleting them", len(got))
	}
	rep, code = verifyOCI(t, refuse, repo+"@"+good, "--source", source, "--commit", c1, "--system", "x86_64-linux")
	if code != 0 || !rep.Trusted || len(rep.Attestations) != 0 {
		t.Fatalf("good image without registry attestations: exit %d, %+v", code, rep)
	}
	if rep, code := verifyOCI(t, refuse, repo+"@"+good); code == 0 || rep.Trusted || !strings.Contains(rep.Reason, "give --source") {
		t.Fatalf("good image without attestations or source: exit %d, %+v", code, rep)
	}

	// Commit c2: b2 built a different image for the same source. Under
	// "refuse" its disagreement blocks; under "majority" b1 and b3 (two
	// operators) carry it.
	mustAttest(builders[0], good, c2)
	mustAttest(builders[1], other, c2)
	mustAttest(builders[2], good, c2)
	for _, b := range builders[:3] {
		waitForClaims(t, b.daemon, 2)
	}
	syncLogs()
	rep, code = verifyOCI(t, refuse, repo+"@"+good, "--source", source, "--commit", c2, "--system", "x86_64-linux")
	if code == 0 || rep.Trusted || len(rep.Verdicts) != 1 || names(rep.Verdicts[0].Disagreed) != "b2" || names(rep.Verdicts[0].Agreed) != "b1,b3" {
		t.Fatalf("c2 under refuse: exit %d, %+v", code, rep)
	}
	t.Logf("c2 under refuse: %s", rep.Reason)
	if out, code := vouch(t, "promote", repo+"@"+good, "--tag", "c2", "--config", refuse, "--source", source, "--commit", c2, "--system", "x86_64-linux"); code == 0 {
		t.Fatalf("promote c2 under refuse: exit 0\n%s", out)
	}
	if out, err := exec.Command(crane, "digest", repo+":c2").CombinedOutput(); err == nil {
		t.Fatalf("tag c2 exists after a refused promotion: %s", out)
	}
	rep, code = verifyOCI(t, majority, repo+"@"+good, "--source", source, "--commit", c2, "--system", "x86_64-linux")
	if code != 0 || !rep.Trusted {
		t.Fatalf("c2 under majority: exit %d, %+v", code, rep)
	}

	// Commit c3: the builders attest and nobody runs vouch sync. promote
	// syncs the logs itself before deciding, and says how old its view is.
	for _, b := range builders[:3] {
		mustAttest(b, good, c3)
		waitForClaims(t, b.daemon, 3)
	}
	out, code = vouch(t, "promote", repo+"@"+good, "--tag", "c3", "--config", refuse, "--source", source, "--commit", c3, "--system", "x86_64-linux")
	if code != 0 || !regexp.MustCompile(`view of the builders' logs: logs synced [0-9]+s ago at the oldest \(b[123]\)`).MatchString(out) {
		t.Fatalf("promote c3 without a prior sync: exit %d\n%s", code, out)
	}
	if d := craneDigest(t, crane, repo+":c3"); d != good {
		t.Fatalf("c3 is %s, want %s", d, good)
	}

	// A running node holds the index: verify and promote ask it, and still
	// decide from the logs.
	node := startDaemon(t, state, "", "--config", refuse, "--listen", listen)
	defer node.Stop()
	cmd := exec.Command(vouchBin, "verify", "oci", "--json", "--config", refuse, repo+"@"+good, "--source", source, "--commit", c1, "--system", "x86_64-linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	var viaNode oci.Report
	if err != nil || json.Unmarshal(stdout, &viaNode) != nil || !viaNode.Trusted || viaNode.Mode != oci.ModeLogs || !strings.Contains(stderr.String(), "index is in use") {
		t.Fatalf("verify while a node holds the index: %v\n%s\n%s", err, stdout, stderr.String())
	}
	rep, code = verifyOCI(t, refuse, repo+"@"+good, "--source", source, "--commit", c2, "--system", "x86_64-linux")
	if code == 0 || rep.Trusted || rep.Mode != oci.ModeLogs {
		t.Fatalf("c2 under refuse, asked of the node: exit %d, %+v", code, rep)
	}
	// promote cannot sync an index the node holds; the node's follower
	// keeps it current, and its report says how current.
	out, code = vouch(t, "promote", repo+"@"+good, "--tag", "c1", "--config", refuse, "--source", source, "--commit", c1, "--system", "x86_64-linux")
	if code != 0 || !strings.Contains(out, "view of the builders' logs: logs synced") {
		t.Fatalf("promote while a node holds the index: exit %d\n%s", code, out)
	}

	// Every decision is recorded, refusals and errors included: here the
	// two promotions of c1, c3 and c1 that moved, and the refusals of the
	// other image and of c2.
	records, err = os.ReadFile(filepath.Join(state, oci.PromotionsLog))
	if err != nil || strings.Count(string(records), "\n") != 5 || strings.Count(string(records), `"moved":true`) != 3 {
		t.Fatalf("promotions log: %v\n%s", err, records)
	}
}

// cosignVerifies checks vouch attestations with cosign v2, an independent
// verifier: `cosign verify-attestation --key <builder PEM>
// --insecure-ignore-tlog --type <vouch predicate>` accepts the image each
// listed builder attested (in the .att layout that attest --cosign
// writes), and rejects it under the key of a builder that did not attest
// it. cosign is not built here (a ten-minute build): it is taken from
// $VOUCH_COSIGN, PATH or ~/.cache/vouch-tools/cosign-*.
func cosignVerifies(t *testing.T, builders []*ociBuilder, repo, good, other string) {
	bin := os.Getenv("VOUCH_COSIGN")
	if bin == "" {
		bin, _ = exec.LookPath("cosign")
	}
	if bin == "" {
		home, _ := os.UserHomeDir()
		cached, _ := filepath.Glob(filepath.Join(home, ".cache", "vouch-tools", "cosign-*"))
		if len(cached) > 0 {
			bin = cached[len(cached)-1]
		}
	}
	if bin == "" {
		t.Skip("cosign not found (set VOUCH_COSIGN, or go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5 and put it on PATH)")
	}
	pemOf := func(b *ociBuilder) string {
		out, code := vouch(t, "key", "pem", b.Key)
		if code != 0 {
			t.Fatalf("vouch key pem: exit %d\n%s", code, out)
		}
		p := filepath.Join(t.TempDir(), "builder.pem")
		os.WriteFile(p, []byte(out), 0o644)
		return p
	}
	verify := func(pem, digest string) (string, error) {
		cmd := exec.Command(bin, "verify-attestation", "--key", pem, "--insecure-ignore-tlog", "--allow-insecure-registry",
			"--type", oci.PredicateType, repo+"@"+digest)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no sigstore TUF cache from elsewhere
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for i, b := range builders[:3] {
		out, err := verify(pemOf(b), good)
		if err != nil {
			t.Fatalf("cosign verify-attestation with b%d's key: %v\n%s", i+1, err, out)
		}
		// cosign prints each envelope it verified, one JSON line each.
		var verified []string
		for _, line := range strings.Split(out, "\n") {
			var env struct{ Payload []byte }
			var st struct {
				PredicateType string `json:"predicateType"`
				Subject       []struct{ Digest map[string]string }
			}
			if json.Unmarshal([]byte(line), &env) == nil && json.Unmarshal(env.Payload, &st) == nil && len(st.Subject) == 1 {
				verified = append(verified, st.PredicateType+" sha256:"+st.Subject[0].Digest["sha256"])
			}
		}
		if len(verified) != 1 || verified[0] != oci.PredicateType+" "+good {
			t.Fatalf("cosign verified %q with b%d's key, want exactly b%[2]d's attestation of %s\n%s", verified, i+1, good, out)
		}
		if i == 0 {
			t.Logf("cosign verify-attestation --key b1.pem --insecure-ignore-tlog --type %s %s@%s:\n%s", oci.PredicateType, repo, good, out)
		}
	}
	// mallory attested only the other image; b1 never attested it.
	if out, err := verify(pemOf(builders[3]), good); err == nil || !strings.Contains(out, "no matching attestations") {
		t.Fatalf("cosign on the good image under mallory's key: %v\n%s", err, out)
	}
	if out, err := verify(pemOf(builders[0]), other); err == nil || !strings.Contains(out, "no matching attestations") {
		t.Fatalf("cosign on the other image under b1's key: %v\n%s", err, out)
	}
	if out, err := verify(pemOf(builders[3]), other); err != nil {
		t.Fatalf("cosign verify-attestation of mallory's own attestation: %v\n%s", err, out)
	}
}

// ociBuilder is a builder daemon and its key file.
type ociBuilder struct {
	*daemon
	Key string
}

func startOCIBuilder(t *testing.T) *ociBuilder {
	state := t.TempDir()
	d, err := tryStartDaemon(t, state, "")
	if err != nil {
		t.Error(err)
		return nil
	}
	// vouch serve with neither config nor key creates STATE/keys/<host>.key.
	keyFiles, _ := filepath.Glob(filepath.Join(state, "keys", "*.key"))
	if len(keyFiles) != 1 {
		t.Errorf("want one key file in %s/keys, found %v", state, keyFiles)
		return nil
	}
	return &ociBuilder{daemon: d, Key: keyFiles[0]}
}

// ociFollowerConfig lists the builders as b1, b2, … with operators org1,
// org1, org2, …: a 2-of-3 quorum that needs two operators.
func ociFollowerConfig(t *testing.T, state, listen string, builders []*ociBuilder, conflict string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "state = %q\nlisten = %q\n\n[follow]\ninterval = \"200ms\"\n\n", state, listen)
	for i, d := range builders {
		fmt.Fprintf(&b, "[[builder]]\nname = \"b%d\"\nvkey = %q\nlog = %q\noperator = \"org%d\"\n\n", i+1, d.VKey, d.LogURL(), max(1, i))
	}
	fmt.Fprintf(&b, "[quorum]\nmin = 2\nmin-operators = 2\n%s\n", conflict)
	p := filepath.Join(t.TempDir(), "vouch.toml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func verifyOCI(t *testing.T, cfg string, image string, extra ...string) (*oci.Report, int) {
	t.Helper()
	cmd := exec.Command(vouchBin, append([]string{"verify", "oci", "--json", "--config", cfg, image}, extra...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var rep oci.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("vouch verify oci %s: exit %d, not JSON: %v\n%s\n%s", image, code, err, out, stderr.String())
	}
	return &rep, code
}

// epoch is the fixed time of every file and of the image config, as
// SOURCE_DATE_EPOCH gives a reproducible build.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// pushOCIImage builds a one-file image deterministically (fixed tar
// header, time, config) and pushes it to repo by digest, which it returns.
func pushOCIImage(t *testing.T, repo, hello string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: int64(len(hello)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR})
	io.WriteString(tw, hello)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: epoch}}}); err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Created, cf.Architecture, cf.OS = v1.Time{Time: epoch}, "amd64", "linux"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest(repo + "@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return d.String()
}

var (
	craneOnce sync.Once
	craneBin  string
	craneErr  string
)

// craneBinary installs crane, at the go-containerregistry version go.mod
// names, into a temporary directory once per test binary.
func craneBinary(t *testing.T) string {
	craneOnce.Do(func() {
		raw, err := os.ReadFile("../go.mod")
		if err != nil {
			craneErr = err.Error()
			return
		}
		mf, err := modfile.Parse("go.mod", raw, nil)
		if err != nil {
			craneErr = err.Error()
			return
		}
		version := ""
		for _, r := range mf.Require {
			if r.Mod.Path == "github.com/google/go-containerregistry" {
				version = r.Mod.Version
			}
		}
		dir, err := os.MkdirTemp("", "vouch-e2e-crane")
		if err != nil {
			craneErr = err.Error()
			return
		}
		cmd := exec.Command("go", "install", "github.com/google/go-containerregistry/cmd/crane@"+version)
		cmd.Env = append(os.Environ(), "GOBIN="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			craneErr = fmt.Sprintf("go install crane@%s: %v\n%s", version, err, out)
			return
		}
		craneBin = filepath.Join(dir, "crane")
	})
	if craneBin == "" {
		t.Fatalf("crane, the independent client, is not available: %s", craneErr)
	}
	return craneBin
}

func craneDigest(t *testing.T, crane, ref string) string {
	t.Helper()
	out, err := exec.Command(crane, "digest", ref).CombinedOutput()
	if err != nil {
		t.Fatalf("crane digest %s: %v\n%s", ref, err, out)
	}
	return strings.TrimSpace(string(out))
}

// craneAttestations lists the vouch attestations of repo@image as an
// outside client sees them: from the referrers API (a plain GET) or from
// the referrers tag (crane ls, crane manifest), then checks each one with
// crane: an artifact manifest whose subject is the image and whose layer
// is a DSSE envelope of an in-toto statement. It returns their digests.
func craneAttestations(t *testing.T, crane, host, repo, image string, referrersAPI bool) []string {
	t.Helper()
	run := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(crane, args...).Output()
		if err != nil {
			t.Fatalf("crane %v: %v", args, err)
		}
		return out
	}
	var index v1.IndexManifest
	if referrersAPI {
		resp, err := httpClient.Get("http://" + host + "/v2/" + repo + "/referrers/" + image)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&index); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET referrers: %s, %v", resp.Status, err)
		}
	} else {
		tag := strings.Replace(image, ":", "-", 1)
		if !strings.Contains(string(run("ls", host+"/"+repo)), tag+"\n") {
			return nil
		}
		if err := json.Unmarshal(run("manifest", host+"/"+repo+":"+tag), &index); err != nil {
			t.Fatal(err)
		}
	}
	var digests []string
	for _, desc := range index.Manifests {
		if desc.ArtifactType != oci.ArtifactType {
			continue
		}
		var m v1.Manifest
		if err := json.Unmarshal(run("manifest", host+"/"+repo+"@"+desc.Digest.String()), &m); err != nil {
			t.Fatal(err)
		}
		if m.Subject == nil || m.Subject.Digest.String() != image || len(m.Layers) != 1 {
			t.Fatalf("attestation %s: subject %v, %d layers", desc.Digest, m.Subject, len(m.Layers))
		}
		var env struct {
			PayloadType string `json:"payloadType"`
			Signatures  []struct {
				KeyID string `json:"keyid"`
			} `json:"signatures"`
		}
		if err := json.Unmarshal(run("blob", host+"/"+repo+"@"+m.Layers[0].Digest.String()), &env); err != nil || env.PayloadType != "application/vnd.in-toto+json" || len(env.Signatures) != 1 {
			t.Fatalf("attestation %s: layer is not a signed DSSE in-toto envelope: %v %+v", desc.Digest, err, env)
		}
		digests = append(digests, desc.Digest.String())
	}
	sort.Strings(digests)
	return digests
}

func startDistribution(t *testing.T) string { return testregistry.Distribution(t, true) }
