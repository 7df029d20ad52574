package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/tlogaudit"
	"github.com/vouch-dev/vouch/verdict"
)

// TestFaultCampaign runs a small real world under random faults and counts
// what a user would see. Three builders (their own chroot stores and vouch
// daemons) keep building and submitting new paths; a follower with a
// 3-of-3 policy serves a binary cache from them; stock Nix clients keep
// substituting the agreed paths into fresh stores through a tap that
// checks every NAR it relays against the hash in its URL. The follower
// reaches every builder (logs and NARs) through a fault proxy. One fault at
// a time, chosen at random:
//
//   - kill -9 of a builder, or of the follower, then restart on the same
//     state and address;
//   - the proxy drops, stalls, truncates or corrupts responses, or serves a
//     builder's oldest checkpoint (a stale mirror);
//   - the follower's or a builder's state filesystem is full (a small
//     tmpfs, filled to the last byte; skipped where mounting is refused).
//
// It fails when any figure that must be zero is not: wrong bytes delivered,
// a never-agreed path substituted, an agreed path that stopped being
// trusted with no proven evidence recorded, an acknowledged claim missing
// from its log (or present twice). The figures are logged and, with
// VOUCH_CAMPAIGN_OUT set, written there as JSON. VOUCH_CAMPAIGN sets how
// long faults are injected (default 40s; scripts/fault-campaign.sh runs
// it longer).
func TestFaultCampaign(t *testing.T) {
	duration := 40 * time.Second
	if s := os.Getenv("VOUCH_CAMPAIGN"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("VOUCH_CAMPAIGN=%q: %v", s, err)
		}
		duration = d
	}
	c := newCampaign(t)
	c.run(duration)
	c.finish()
}

// faultKinds are the faults the campaign draws from.
var faultKinds = []string{
	"kill-builder", "kill-follower",
	"proxy-drop", "proxy-stall", "proxy-truncate", "proxy-corrupt", "proxy-stale",
	"disk-full-follower", "disk-full-builder",
}

// campaignFigures is what the campaign reports.
type campaignFigures struct {
	Duration            string         `json:"duration"`
	Faults              map[string]int `json:"faults"`   // injected, by kind
	Recovery            map[string]any `json:"recovery"` // seconds to recover, by kind: median and max
	Unrecovered         int            `json:"unrecovered"`
	Substitutions       int64          `json:"substitutions"`         // client copies that succeeded
	SubstitutionFailed  int64          `json:"substitution_failed"`   // client copies that failed (no wrong bytes; Nix refused or vouch 404/502)
	NARsRelayed         int64          `json:"nars_relayed"`          // complete NAR bodies the tap saw
	WrongBytes          int64          `json:"wrong_bytes"`           // complete NARs not matching their agreed hash (must be 0)
	UnagreedServed      int64          `json:"unagreed_served"`       // the non-reproducible path substituted (must be 0)
	UntrustedUnproven   int64          `json:"untrusted_unproven"`    // agreed path not trusted, no proven evidence (must be 0)
	VerdictsChecked     int64          `json:"verdicts_checked"`      // answered verdict checks
	ClaimsAcknowledged  int            `json:"claims_acknowledged"`   // vouch submit exit 0
	ClaimsLost          int            `json:"claims_lost"`           // acknowledged, not in the log (must be 0)
	ClaimsDuplicated    int            `json:"claims_duplicated"`     // in the log twice (must be 0)
	SubmitsRefused      int            `json:"submits_refused"`       // vouch submit non-zero (not acknowledged)
	DaemonCrashes       int            `json:"daemon_crashes"`        // exits nobody asked for (restarted, as a service manager would)
	ProvenEvidence      int            `json:"proven_evidence"`       // must be 0: nobody here misbehaves
	DiskFaultsSupported bool           `json:"disk_faults_supported"` // tmpfs could be mounted
}

type campaign struct {
	t   *testing.T
	ctx context.Context
	end context.CancelFunc
	bg  sync.WaitGroup

	builders   []*campaignNode
	follower   *campaignNode
	proxies    []*faultProxy
	tap        string // the address Nix clients use
	base       string // the follower's address
	nixOpts    []string
	agreed     map[string]pathInfo // the initial agreed paths, by store path
	noise      string              // never agreed
	tmpfs      []string            // mount points to unmount at the end
	followerFS string              // the follower's state filesystem ("" without tmpfs)
	builderFS  string              // builder 0's

	mu       sync.Mutex
	acked    [][]ackedClaim // per builder
	fig      campaignFigures
	recovery map[string][]float64
}

type ackedClaim struct{ subject, narHash string }

// campaignNode is a daemon the campaign may kill and restart.
type campaignNode struct {
	mu     sync.Mutex
	d      *daemon
	state  string
	store  string
	addr   string
	args   []string
	killed bool // stopped on purpose; not a crash
}

func (n *campaignNode) current() *daemon {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.d
}

func newCampaign(t *testing.T) *campaign {
	ctx, end := context.WithCancel(context.Background())
	c := &campaign{t: t, ctx: ctx, end: end, agreed: map[string]pathInfo{}, recovery: map[string][]float64{}}
	c.fig.Faults = map[string]int{}
	// State directories; the follower's and builder 0's on small tmpfs
	// filesystems that a disk fault can fill.
	root := t.TempDir()
	followerState, builder0State := filepath.Join(root, "follower"), filepath.Join(root, "b0")
	os.MkdirAll(followerState, 0o755)
	os.MkdirAll(builder0State, 0o755)
	// Registered after TempDir, so it runs before the directory is removed,
	// and before the daemons started later are stopped.
	t.Cleanup(func() {
		end()
		c.bg.Wait()
		for _, m := range c.tmpfs {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	})
	if err := syscall.Mount("tmpfs", followerState, "tmpfs", 0, "size=96m"); err == nil {
		c.tmpfs = append(c.tmpfs, followerState)
		c.followerFS = followerState
		if err := syscall.Mount("tmpfs", builder0State, "tmpfs", 0, "size=32m"); err == nil {
			c.tmpfs = append(c.tmpfs, builder0State)
			c.builderFS = builder0State
		}
	} else {
		t.Logf("cannot mount a tmpfs (%v): the disk-full faults are skipped", err)
	}
	c.fig.DiskFaultsSupported = c.builderFS != ""

	// Three builders build the same paths and log them through the hook.
	for i := range 3 {
		state := builder0State
		if i > 0 {
			state = filepath.Join(root, fmt.Sprintf("b%d", i))
		}
		n := &campaignNode{state: state, store: filepath.Join(root, fmt.Sprintf("store%d", i)), addr: freeAddr(t)}
		n.args = []string{"--listen", n.addr}
		if !c.start(n) {
			t.FailNow()
		}
		c.builders = append(c.builders, n)
		c.acked = append(c.acked, nil)
	}
	var wg sync.WaitGroup
	outs := make([][]string, 3)
	for i, n := range c.builders {
		wg.Go(func() {
			out, err := buildWorld(n.store, hookScript(t, n.state), "", "a", "b", "c", "tamperme", "noise")
			if err != nil {
				t.Error(err)
			}
			outs[i] = out
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, n := range c.builders {
		waitForClaims(t, n.current(), 5)
	}
	info := nixPathInfo(t, c.builders[0].store, outs[0]...)
	for _, p := range outs[0] {
		if strings.HasSuffix(p, "-noise") {
			c.noise = p
			continue
		}
		c.agreed[p] = info[p]
	}

	// The follower reaches each builder through a fault proxy, for its log
	// and for the NARs of its store.
	keyDir := t.TempDir()
	if out, code := vouch(t, "keygen", "--name", "cache", "--dir", keyDir); code != 0 {
		t.Fatal(out)
	}
	var cfg strings.Builder
	followerAddr := freeAddr(t)
	fmt.Fprintf(&cfg, "state = %q\nlisten = %q\nnix-key = %q\ndashboard = true\n\n[follow]\ninterval = \"300ms\"\n\n",
		followerState, followerAddr, filepath.Join(keyDir, "cache.nix.sec"))
	for i, n := range c.builders {
		p := newFaultProxy(t, n.addr)
		c.proxies = append(c.proxies, p)
		fmt.Fprintf(&cfg, "[[builder]]\nname = \"b%d\"\nvkey = %q\nlog = %q\noperator = \"org%d\"\n\n", i, n.current().VKey, "http://"+p.addr+"/log/", i)
	}
	cfg.WriteString("[quorum]\nmin = 3\nmin-operators = 3\non-conflict = \"refuse\"\n\n")
	for _, p := range c.proxies {
		fmt.Fprintf(&cfg, "[[upstream]]\nurl = %q\ntimeout = \"5s\"\n\n", "http://"+p.addr+"/peer")
	}
	cfgPath := filepath.Join(t.TempDir(), "follower.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.follower = &campaignNode{state: followerState, addr: followerAddr, args: []string{"--config", cfgPath, "--listen", followerAddr}}
	if !c.start(c.follower) {
		t.FailNow()
	}
	c.base = "http://" + followerAddr
	c.tap = newNARTap(t, followerAddr, &c.fig.NARsRelayed, &c.fig.WrongBytes)

	pub, _ := os.ReadFile(filepath.Join(keyDir, "cache.nix.pub"))
	c.nixOpts = []string{"--option", "substituters", "http://" + c.tap, "--option", "trusted-public-keys", strings.TrimSpace(string(pub)),
		"--option", "narinfo-cache-negative-ttl", "0", "--option", "narinfo-cache-positive-ttl", "0"}

	// Before any fault: every agreed path is trusted.
	deadline := time.Now().Add(90 * time.Second)
	for p := range c.agreed {
		for {
			if v, err := c.verdict(p); err == nil && v.Outcome == verdict.Trusted {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never became trusted:\n%s", p, c.follower.current().output.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return c
}

// start starts (or restarts) a node on its state and address. Off the
// test goroutine a failure is reported with Errorf.
func (c *campaign) start(n *campaignNode) bool {
	var d *daemon
	var err error
	for try := 0; try < 20; try++ {
		if d, err = tryStartDaemon(c.t, n.state, n.store, n.args...); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond) // the address may still be held, or the disk full
	}
	if err != nil {
		c.t.Errorf("restarting a daemon: %v", err)
		return false
	}
	n.mu.Lock()
	n.d, n.killed = d, false
	n.mu.Unlock()
	return true
}

// buildWorld builds attrs of the test world with a salt (new paths for
// each salt) and returns the output paths. Unlike nixBuild it may run off
// the test goroutine.
func buildWorld(store, hook, salt string, attrs ...string) ([]string, error) {
	args := []string{"--store", store, worldDir, "--no-out-link", "--option", "substituters", "", "--argstr", "salt", salt}
	if hook != "" {
		args = append(args, "--option", "post-build-hook", hook)
	}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nix-build", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nix-build %v: %v\n%s", args, err, stderr.String())
	}
	return strings.Fields(string(out)), nil
}

func (c *campaign) verdict(p string) (verdict.Verdict, error) {
	var v verdict.Verdict
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+verdict.HTTPPath+"?kind=nix&subject="+p, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("status %d", resp.StatusCode)
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// provenEvidence counts the follower's evidence records that prove
// misbehaviour on their own (-1 when the follower does not answer).
func (c *campaign) provenEvidence() int {
	resp, err := http.Get(c.base + "/api/v1/evidence")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var list struct {
		Evidence []struct {
			Proven bool `json:"proven"`
		} `json:"evidence"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&list) != nil {
		return -1
	}
	n := 0
	for _, e := range list.Evidence {
		if e.Proven {
			n++
		}
	}
	return n
}

func (c *campaign) run(duration time.Duration) {
	c.fig.Duration = duration.String()
	// Background load: builders submitting, clients substituting, a
	// watcher checking the agreed paths stay trusted, a supervisor.
	for i := range c.builders {
		c.loop(func(n int) { c.buildAndSubmit(i, n) })
	}
	for range 2 {
		c.loop(func(n int) { c.substitute(n) })
	}
	c.loop(func(int) { c.watchVerdicts(); time.Sleep(300 * time.Millisecond) })
	c.loop(func(int) { c.supervise(); time.Sleep(200 * time.Millisecond) })

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	stop := time.Now().Add(duration)
	for time.Now().Before(stop) {
		kind := faultKinds[rng.IntN(len(faultKinds))]
		if strings.HasPrefix(kind, "disk-full") && !c.fig.DiskFaultsSupported {
			continue
		}
		window := time.Duration(1500+rng.IntN(2500)) * time.Millisecond
		c.inject(kind, window, rng)
		c.mu.Lock()
		c.fig.Faults[kind]++
		c.mu.Unlock()
		took, ok := c.waitRecovered(60 * time.Second)
		c.mu.Lock()
		if ok {
			c.recovery[kind] = append(c.recovery[kind], took.Seconds())
		} else {
			c.fig.Unrecovered++
			c.t.Logf("not recovered within 60s after %s", kind)
		}
		c.mu.Unlock()
	}
}

// loop runs f(0), f(1), … until the campaign ends.
func (c *campaign) loop(f func(n int)) {
	c.bg.Go(func() {
		for n := 0; c.ctx.Err() == nil; n++ {
			f(n)
		}
	})
}

// inject applies one fault for window, then lifts it.
func (c *campaign) inject(kind string, window time.Duration, rng *rand.Rand) {
	switch kind {
	case "kill-builder", "kill-follower":
		n := c.follower
		if kind == "kill-builder" {
			n = c.builders[rng.IntN(len(c.builders))]
		}
		n.mu.Lock()
		n.killed = true
		d := n.d
		n.mu.Unlock()
		d.Kill9()
		time.Sleep(window)
		c.start(n)
	case "disk-full-follower", "disk-full-builder":
		dir := c.followerFS
		if kind == "disk-full-builder" {
			dir = c.builderFS
		}
		filler := filepath.Join(dir, "filler")
		fill(filler)
		time.Sleep(window)
		os.Remove(filler)
	default:
		p := c.proxies[rng.IntN(len(c.proxies))]
		p.setFault(strings.TrimPrefix(kind, "proxy-"))
		time.Sleep(window)
		p.setFault("")
	}
}

// fill writes to path until the filesystem is full.
func fill(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for _, n := range []int{64 << 10, 4 << 10, 512, 1} { // the last pages
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	f.Sync()
}

// waitRecovered waits until the world is whole again: the follower answers,
// every builder's log is in sync with no error, and a client substitution
// of an agreed path succeeds. It returns how long that took.
func (c *campaign) waitRecovered(limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < limit {
		if c.healthy() {
			return time.Since(start), true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return limit, false
}

func (c *campaign) healthy() bool {
	resp, err := http.Get(c.base + "/api/v1/builders")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var views []struct {
		Name        string    `json:"name"`
		TreeSize    uint64    `json:"tree_size"`
		Entries     uint64    `json:"entries"`
		Error       string    `json:"error"`
		LastOK      time.Time `json:"last_ok"`
		Compromised bool      `json:"compromised"`
	}
	if json.NewDecoder(resp.Body).Decode(&views) != nil || len(views) != len(c.builders) {
		return false
	}
	for i, v := range views {
		d := c.builders[i].current()
		raw, err := httpGet(d.LogURL() + "checkpoint")
		if err != nil {
			return false
		}
		size, _, err := tlogaudit.ParseCheckpoint(raw, d.VKey)
		if err != nil || v.Error != "" || v.Compromised || int64(v.Entries) < size || time.Since(v.LastOK) > 5*time.Second {
			return false
		}
	}
	for p := range c.agreed {
		resp, err := http.Get(c.base + "/" + claim.HashPart(p) + ".narinfo")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		break
	}
	return true
}

// buildAndSubmit has builder i build a new path (salt n) without the hook
// and submit it: an exit 0 of vouch submit is an acknowledgement.
func (c *campaign) buildAndSubmit(i, n int) {
	b := c.builders[i]
	outs, err := buildWorld(b.store, "", fmt.Sprintf("campaign-%d", n), "tamperme")
	if err != nil {
		time.Sleep(time.Second)
		return
	}
	p := outs[0]
	infos, err := pathInfos(b.store, p)
	if err != nil {
		return
	}
	info := infos[p]
	cmd := exec.CommandContext(c.ctx, vouchBin, "submit", "--state", b.state, "--store", b.store, p)
	if out, err := cmd.CombinedOutput(); err != nil {
		if c.ctx.Err() == nil {
			c.mu.Lock()
			c.fig.SubmitsRefused++
			c.mu.Unlock()
			_ = out
		}
		time.Sleep(200 * time.Millisecond)
		return
	}
	c.mu.Lock()
	c.acked[i] = append(c.acked[i], ackedClaim{subject: p, narHash: info.NarHash})
	c.fig.ClaimsAcknowledged++
	c.mu.Unlock()
}

// substitute copies one agreed path into a fresh client store, and every
// tenth time tries the never-agreed one.
func (c *campaign) substitute(n int) {
	store, err := os.MkdirTemp("", "vouch-campaign-client")
	if err != nil {
		return
	}
	defer os.RemoveAll(store)
	defer exec.Command("chmod", "-R", "u+w", store).Run()
	target := c.noise
	if n%10 != 9 {
		paths := make([]string, 0, len(c.agreed))
		for p := range c.agreed {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		target = paths[n%len(paths)]
	}
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Minute)
	defer cancel()
	args := append([]string{"--store", store, "-r", target}, c.nixOpts...)
	cmd := exec.CommandContext(ctx, "nix-store", args...)
	// Each client its own narinfo cache: concurrent Nix processes sharing
	// ~/.cache/nix trip over its SQLite constraints (not vouch's doing).
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+store+".cache")
	defer os.RemoveAll(store + ".cache")
	out, err := cmd.CombinedOutput()
	if c.ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if target == c.noise {
		if err == nil {
			c.fig.UnagreedServed++
		}
		return
	}
	if err != nil {
		c.fig.SubstitutionFailed++
		if c.fig.SubstitutionFailed <= 3 {
			c.t.Logf("a client copy failed (%v):\n%s", err, tail(string(out), 1500))
		}
		time.Sleep(200 * time.Millisecond)
		return
	}
	c.fig.Substitutions++
	if got, err := pathInfos(store, target); err != nil || got[target].NarHash != c.agreed[target].NarHash {
		atomic.AddInt64(&c.fig.WrongBytes, 1)
		c.t.Errorf("the client got %s with NAR hash %s (%v), agreed %s", target, got[target].NarHash, err, c.agreed[target].NarHash)
	}
}

// watchVerdicts checks that every agreed path is still trusted whenever
// the follower answers, unless proven evidence was recorded.
func (c *campaign) watchVerdicts() {
	for p := range c.agreed {
		v, err := c.verdict(p)
		if err != nil {
			return // the follower is down: unavailable, not untrusted
		}
		c.mu.Lock()
		c.fig.VerdictsChecked++
		c.mu.Unlock()
		if v.Outcome != verdict.Trusted && c.provenEvidence() == 0 {
			c.mu.Lock()
			c.fig.UntrustedUnproven++
			if c.fig.UntrustedUnproven <= 3 {
				c.t.Logf("%s is %s without proven evidence: %s", p, v.Outcome, v.Reason)
			}
			c.mu.Unlock()
		}
	}
}

// supervise restarts a daemon that exited without being killed on
// purpose, as a service manager would, and counts it.
func (c *campaign) supervise() {
	for _, n := range append(append([]*campaignNode{}, c.builders...), c.follower) {
		// n.mu is held from the check to the restart decision, and inject
		// marks a node killed under it before killing it: a kill on purpose
		// is never mistaken for a crash.
		n.mu.Lock()
		crashed := false
		var exit error
		if !n.killed && n.d != nil {
			select {
			case exit = <-n.d.done:
				n.d.done <- exit // Stop reads it too
				crashed = true
				n.killed = true // until restarted below
			default:
			}
		}
		out := ""
		if crashed {
			out = n.d.output.String()
		}
		n.mu.Unlock()
		if !crashed || c.ctx.Err() != nil {
			continue
		}
		c.mu.Lock()
		c.fig.DaemonCrashes++
		c.mu.Unlock()
		c.t.Logf("a daemon exited on its own (%v); restarting it:\n%s", exit, tail(out, 2000))
		c.start(n)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// finish stops the load, audits every builder's log for the acknowledged
// claims, and reports the figures.
func (c *campaign) finish() {
	c.end()
	c.bg.Wait()
	for _, p := range c.proxies {
		p.setFault("")
	}
	for _, m := range c.tmpfs {
		os.Remove(filepath.Join(m, "filler"))
	}
	for i, b := range c.builders {
		c.auditAcknowledged(i, b.current())
	}
	c.fig.ProvenEvidence = max(c.provenEvidence(), 0)
	if c.fig.ProvenEvidence > 0 {
		c.t.Errorf("proven evidence was recorded against an honest builder")
	}
	c.fig.Recovery = map[string]any{}
	for kind, secs := range c.recovery {
		sort.Float64s(secs)
		c.fig.Recovery[kind] = map[string]float64{"median_s": secs[len(secs)/2], "max_s": secs[len(secs)-1]}
	}
	out, _ := json.MarshalIndent(c.fig, "", "  ")
	c.t.Logf("fault campaign figures:\n%s", out)
	if p := os.Getenv("VOUCH_CAMPAIGN_OUT"); p != "" {
		if err := os.WriteFile(p, out, 0o644); err != nil {
			c.t.Error(err)
		}
	}
	if c.fig.WrongBytes != 0 || c.fig.UnagreedServed != 0 || c.fig.UntrustedUnproven != 0 || c.fig.ClaimsLost != 0 || c.fig.ClaimsDuplicated != 0 {
		c.t.Errorf("a figure that must be zero is not")
	}
	if c.fig.Substitutions == 0 || c.fig.ClaimsAcknowledged == 0 {
		c.t.Errorf("the campaign did no work: %d substitutions, %d acknowledged claims", c.fig.Substitutions, c.fig.ClaimsAcknowledged)
	}
}

// auditAcknowledged reads builder i's log from scratch and checks that it
// holds every claim the builder acknowledged, once. An acknowledged claim
// is durable and integrated, but its checkpoint is published up to a
// checkpoint interval later: the audit is retried for a few seconds.
func (c *campaign) auditAcknowledged(i int, d *daemon) {
	var count map[ackedClaim]int
	var missing []ackedClaim
	for try := 0; try < 20; try++ {
		res, err := tlogaudit.Audit(d.LogURL(), d.VKey)
		if err != nil {
			c.t.Logf("auditing builder %d's log: %v", i, err)
			time.Sleep(500 * time.Millisecond)
			continue
		}
		count = map[ackedClaim]int{}
		for _, e := range res.Entries {
			if cl, err := claim.Parse(e); err == nil {
				count[ackedClaim{cl.Subject, cl.NarHash}]++
			}
		}
		missing = missing[:0]
		for _, a := range c.acked[i] {
			if count[a] == 0 {
				missing = append(missing, a)
			}
		}
		if len(missing) == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if count == nil {
		c.t.Errorf("builder %d's log could not be audited", i)
		return
	}
	for k, n := range count {
		if n > 1 {
			c.fig.ClaimsDuplicated++
			c.t.Errorf("builder %d logged %s %d times", i, k.subject, n)
		}
	}
	for _, a := range missing {
		c.fig.ClaimsLost++
		c.t.Errorf("builder %d acknowledged %s but its log does not hold it", i, a.subject)
	}
}

// faultProxy is a real HTTP proxy in front of one builder that, while a
// fault is set, spoils about half of the responses.
type faultProxy struct {
	addr   string
	target string
	mu     sync.Mutex
	fault  string
	lifted chan struct{} // closed when the current fault is lifted
	oldest []byte        // the first checkpoint it relayed
	rng    *rand.Rand
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	p := &faultProxy{target: target, lifted: make(chan struct{}), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	srv := &http.Server{Handler: p}
	go srv.Serve(ln)
	t.Cleanup(func() { p.setFault(""); srv.Close() })
	return p
}

func (p *faultProxy) setFault(f string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault != "" {
		close(p.lifted)
		p.lifted = make(chan struct{})
	}
	p.fault = f
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, err := http.Get("http://" + p.target + r.URL.RequestURI())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	p.mu.Lock()
	isCheckpoint := strings.HasSuffix(r.URL.Path, "/log/checkpoint")
	if isCheckpoint && resp.StatusCode == http.StatusOK && p.oldest == nil {
		p.oldest = body
	}
	fault, lifted, spoil := p.fault, p.lifted, p.rng.IntN(2) == 0
	oldest := p.oldest
	pos := 0
	if len(body) > 0 {
		pos = p.rng.IntN(len(body))
	}
	p.mu.Unlock()
	if fault != "" && spoil {
		switch fault {
		case "drop":
			panic(http.ErrAbortHandler) // the connection is closed, no answer
		case "stall":
			select { // a black hole until the fault is lifted
			case <-lifted:
			case <-r.Context().Done():
			}
			panic(http.ErrAbortHandler)
		case "truncate":
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(resp.StatusCode)
			w.Write(body[:len(body)/2])
			panic(http.ErrAbortHandler)
		case "corrupt":
			if len(body) > 0 {
				body = append([]byte(nil), body...)
				body[pos] ^= 0x20
			}
		case "stale":
			if isCheckpoint && oldest != nil {
				body = oldest
			}
		}
	}
	for k, v := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}

// newNARTap is a proxy in front of the follower for the Nix clients. For
// every NAR it relays in full it checks the SHA-256 of the bytes against
// the NAR hash the URL names (/nar/<hash>-<nix32 sha256>.nar): a complete
// NAR that does not match is wrong bytes delivered.
func newNARTap(t *testing.T, target string, relayed, wrong *int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+target+r.URL.RequestURI(), nil)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), resp.Body)
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/nar/"), ".nar")
		_, want, isNAR := strings.Cut(name, "-")
		if !isNAR || !strings.HasPrefix(r.URL.Path, "/nar/") || resp.StatusCode != http.StatusOK || err != nil || n != resp.ContentLength {
			if err != nil && !errors.Is(err, context.Canceled) {
				panic(http.ErrAbortHandler) // pass the cut on to the client
			}
			return
		}
		atomic.AddInt64(relayed, 1)
		if nixbase32.EncodeToString(h.Sum(nil)) != want {
			atomic.AddInt64(wrong, 1)
			t.Errorf("the follower delivered a complete NAR for %s whose SHA-256 is not the agreed one", r.URL.Path)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
