package nixstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/vouch-dev/vouch/claim"
	"golang.org/x/sys/unix"
)

// buildWorld builds the busybox world (e2e/testdata/world) and
// testdata/special.nix, with the ca-derivations feature, into a fresh chroot
// store and returns the store and the "out" paths nix-build printed.
func buildWorld(t *testing.T) (Store, []string) {
	t.Helper()
	src := worldSources(t)
	st := Store{Root: storeDir(t)}
	outs := nixBuild(t, st, true, filepath.Join(src, "world"), "-A", "a", "-A", "b", "-A", "c", "-A", "multi", "-A", "ca", "-A", "tamperme")
	outs = append(outs, nixBuild(t, st, true, filepath.Join(src, "special.nix"))...)
	return st, outs
}

// worldSources copies the world and testdata/special.nix into a temporary
// directory, with busybox as the world's tool, and returns the directory.
// It skips the test when nix-build is not installed.
func worldSources(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("nix-build"); err != nil {
		t.Skip("nix-build is not on PATH; the golden tests compare with real Nix")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox is not on PATH; install Debian's busybox-static, the world's only tool")
	}
	src := t.TempDir()
	world := filepath.Join(src, "world")
	copyFile(t, filepath.Join("..", "e2e", "testdata", "world", "default.nix"), filepath.Join(world, "default.nix"), 0o644)
	copyFile(t, busybox, filepath.Join(world, "tools", "busybox"), 0o755)
	if err := os.Symlink("busybox", filepath.Join(world, "tools", "sh")); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join("testdata", "special.nix"), filepath.Join(src, "special.nix"), 0o644)
	return src
}

// storeDir returns an empty directory for a chroot store, removed after
// the test.
func storeDir(t *testing.T) string {
	root := t.TempDir()
	// Store directories are read-only; make them removable for a test run
	// by someone other than root. Runs before t.TempDir's own clean-up.
	t.Cleanup(func() {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return root
}

// nixBuild runs nix-build into st and returns the paths it printed.
func nixBuild(t *testing.T, st Store, caFeature bool, args ...string) []string {
	t.Helper()
	args = append([]string{"--store", st.Root, "--no-out-link"}, args...)
	if caFeature {
		args = append(args, "--extra-experimental-features", "ca-derivations")
	}
	cmd := exec.Command("nix-build", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-build %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.Fields(string(out))
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	write(t, to, string(b), mode)
}

// pathInfo is what "nix path-info --json" says about a path.
type pathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
}

func nixPathInfo(t *testing.T, s Store, recursive bool, paths ...string) []pathInfo {
	t.Helper()
	args := []string{"path-info", "--store", s.Root, "--json", "--extra-experimental-features", "nix-command"}
	if recursive {
		args = append(args, "--recursive")
	}
	out, err := exec.Command("nix", append(args, paths...)...).Output()
	if err != nil {
		t.Fatalf("nix %s: %v", strings.Join(args, " "), err)
	}
	var infos []pathInfo
	if err := json.Unmarshal(out, &infos); err != nil {
		t.Fatalf("nix path-info --json: %v\n%s", err, out)
	}
	return infos
}

// sriToNix32 turns "sha256-<base64>" into "sha256:<nix32>".
func sriToNix32(t *testing.T, sri string) string {
	t.Helper()
	b64, ok := strings.CutPrefix(sri, "sha256-")
	if !ok {
		t.Fatalf("narHash %q is not an SRI sha256 hash", sri)
	}
	sum, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sum) != sha256.Size {
		t.Fatalf("narHash %q: bad base64 digest", sri)
	}
	return "sha256:" + nixbase32.EncodeToString(sum)
}

func basenames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = path.Base(p)
	}
	return out
}

// TestGoldenAgainstNix builds real derivations with real Nix into a chroot
// store and checks every fact this package computes against what Nix says.
func TestGoldenAgainstNix(t *testing.T) {
	st, built := buildWorld(t)
	ctx := context.Background()

	// Every output of every built derivation, found the way a post-build
	// hook finds them: deriver, then the derivation's outputs.
	var outputs []string
	derivers := map[string]string{}
	for _, p := range built {
		drv, err := st.Deriver(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if drv == "" {
			t.Fatalf("Deriver(%s) is unknown, but nix-build just built it", p)
		}
		drvPath := claim.StoreDir + "/" + drv
		outs, err := st.Outputs(ctx, drvPath)
		if err != nil && strings.HasSuffix(p, "-ca") {
			// Nix 2.8 knows a floating CA output only from its
			// realisation.
			outs = caOutputs(t, st, drvPath, p)
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, "-multi") {
			rs, err := st.Realisations(ctx, drvPath)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 2 || !strings.HasSuffix(rs[0].ID, "!dev") || !strings.HasSuffix(rs[1].ID, "!out") ||
				!slices.Contains(outs, rs[0].OutPath) || !slices.Contains(outs, rs[1].OutPath) {
				t.Fatalf("Realisations(multi) = %v; want dev and out, matching Outputs %v", rs, outs)
			}
		}
		if !slices.Contains(outs, p) {
			t.Fatalf("Outputs(%s) = %v, does not contain the built %s", drv, outs, p)
		}
		checkBuiltOutputs(t, st, drvPath, outs, strings.HasSuffix(p, "-ca"))
		for _, o := range outs {
			if _, seen := derivers[o]; !seen {
				outputs = append(outputs, o)
			}
			derivers[o] = drv
		}
	}
	if len(outputs) != len(built)+1 { // multi has a second output, dev
		t.Fatalf("found outputs %v for the built paths %v; want exactly one more (multi's dev)", outputs, built)
	}

	infos := nixPathInfo(t, st, false, outputs...)
	if len(infos) != len(outputs) {
		t.Fatalf("nix path-info gave %d entries for %d paths", len(infos), len(outputs))
	}
	for _, info := range infos {
		p := info.Path
		t.Run(path.Base(p), func(t *testing.T) {
			disk, err := st.DiskPath(p)
			if err != nil {
				t.Fatal(err)
			}
			if disk != st.Root+p {
				t.Fatalf("DiskPath(%s) = %s, want %s", p, disk, st.Root+p)
			}

			// "nix-store --store DIR --dump P" would dump the file at P
			// on the real root; the store's own NAR comes from this.
			dump, err := exec.Command("nix", "store", "dump-path", "--store", st.Root,
				"--extra-experimental-features", "nix-command", p).Output()
			if err != nil {
				t.Fatalf("nix store dump-path %s: %v", p, err)
			}
			if !bytes.Equal(dump, nixDump(t, disk)) {
				t.Fatalf("nix store dump-path and nix-store --dump of the disk path differ")
			}
			var nar bytes.Buffer
			if err := WriteNAR(&nar, disk); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(nar.Bytes(), dump) {
				t.Errorf("WriteNAR differs from nix-store --dump (%d vs %d bytes) first at byte %d", nar.Len(), len(dump), firstDiff(nar.Bytes(), dump))
			}

			h, size, err := NarHash(disk)
			if err != nil {
				t.Fatal(err)
			}
			if want := sriToNix32(t, info.NarHash); h != want || size != info.NarSize {
				t.Errorf("NarHash = %s %d, nix path-info says %s %d", h, size, want, info.NarSize)
			}
			if want := narHashOf(dump); h != want {
				t.Errorf("NarHash = %s, the sha256 of nix-store --dump is %s", h, want)
			}

			refs, err := st.References(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if want := claim.SortReferences(basenames(info.References)); !slices.Equal(refs, want) {
				t.Errorf("References = %v, nix path-info says %v", refs, want)
			}

			if got, want := derivers[p], path.Base(info.Deriver); got != want {
				t.Errorf("Deriver = %s, nix path-info says %s", got, want)
			}

			closure, err := st.Closure(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, i := range nixPathInfo(t, st, true, p) {
				want = append(want, i.Path)
			}
			slices.Sort(want)
			if !slices.Equal(closure, want) {
				t.Errorf("Closure = %v, nix path-info --recursive says %v", closure, want)
			}

			valid, err := st.IsValid(ctx, p)
			if err != nil || !valid {
				t.Errorf("IsValid = %v, %v; want true", valid, err)
			}

			before := time.Now().UTC().Truncate(time.Second)
			c, err := st.Claim(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if c.Kind != claim.KindNix || c.Subject != p || c.NarHash != h || c.NarSize != size ||
				!slices.Equal(c.References, refs) || c.Deriver != derivers[p] {
				t.Errorf("Claim = %+v, inconsistent with the facts above", c)
			}
			if c.Time.Before(before) || c.Time.After(time.Now()) || c.Time.Location() != time.UTC || c.Time.Nanosecond() != 0 {
				t.Errorf("Claim time %v is not now, UTC, whole seconds", c.Time)
			}
			enc, err := c.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if back, err := claim.Parse(enc); err != nil || !back.Agrees(c) {
				t.Errorf("claim does not survive encoding: %v\n%s", err, enc)
			}
		})
	}

	t.Run("tree has the expected references", func(t *testing.T) {
		// Guards the test itself: the special tree refers to itself and
		// to world's a, so a References that dropped either is caught
		// above only if path-info's list is not empty too.
		for _, info := range infos {
			if strings.HasSuffix(info.Path, "-tree") && len(info.References) != 2 {
				t.Fatalf("tree's references %v; want itself and a", info.References)
			}
		}
	})

	t.Run("invalid paths", func(t *testing.T) {
		missing := claim.StoreDir + "/00000000000000000000000000000000-missing"
		valid, err := st.IsValid(ctx, missing)
		if err != nil || valid {
			t.Fatalf("IsValid(missing) = %v, %v; want false, nil", valid, err)
		}
		_, err = st.References(ctx, missing)
		if err == nil || !strings.Contains(err.Error(), "is not valid") || !strings.Contains(err.Error(), "--query --references") {
			t.Fatalf("References(missing): err = %v; want nix-store's complaint and the command", err)
		}
		if _, err := st.Claim(ctx, missing); err == nil {
			t.Fatal("Claim(missing) succeeded")
		}
	})

	t.Run("tampered output", func(t *testing.T) {
		// A file altered after registration: the claim states what the
		// disk holds, so other builders will disagree with it.
		var p string
		for _, o := range outputs {
			if strings.HasSuffix(o, "-tamperme") {
				p = o
			}
		}
		before, err := st.Claim(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		disk, _ := st.DiskPath(p)
		os.Chmod(disk, 0o755)
		write(t, filepath.Join(disk, "file"), "tampered\n", 0o444)
		os.Chmod(disk, 0o555)
		after, err := st.Claim(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if after.Agrees(before) {
			t.Fatal("a tampered output gave the same claim")
		}
		if want := sriToNix32(t, nixPathInfo(t, st, false, p)[0].NarHash); after.NarHash == want {
			t.Fatal("tampering did not change the hash on disk; the test is broken")
		}
	})

	t.Run("timeout", func(t *testing.T) {
		// Hold the store's big lock exclusively, as a stuck Nix process
		// could: nix-store then waits for it, and the query must give up.
		lock, err := os.OpenFile(filepath.Join(st.Root, "nix", "var", "nix", "db", "big-lock"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err = st.References(ctx, outputs[0])
		if err == nil || !strings.Contains(err.Error(), "no answer within") {
			t.Fatalf("References with the store locked: err = %v; want a timeout", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("References took %v to give up", d)
		}
	})
}

// checkBuiltOutputs checks that BuiltOutputs(drvPath) lists exactly outs,
// content-addressed (with their realisations' ids) or not.
func checkBuiltOutputs(t *testing.T, st Store, drvPath string, outs []string, contentAddressed bool) {
	t.Helper()
	ctx := context.Background()
	var want []BuiltOutput
	if contentAddressed {
		rs, err := st.Realisations(ctx, drvPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			want = append(want, BuiltOutput{Path: r.OutPath, ContentAddressed: true, OutputID: r.ID})
		}
	} else {
		for _, o := range outs {
			want = append(want, BuiltOutput{Path: o})
		}
	}
	got, err := st.BuiltOutputs(ctx, drvPath)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("BuiltOutputs(%s) = %+v, %v; want %+v", drvPath, got, err, want)
	}
}

// TestBuiltOutputsWithoutCAFeature covers the ordinary Nix installation:
// without ca-derivations enabled, Nix records no realisations for
// input-addressed builds, and BuiltOutputs must still find the outputs.
func TestBuiltOutputsWithoutCAFeature(t *testing.T) {
	src := worldSources(t)
	st := Store{Root: storeDir(t)}
	p := nixBuild(t, st, false, filepath.Join(src, "world"), "-A", "multi")[0]
	drv, err := st.Deriver(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	drvPath := claim.StoreDir + "/" + drv
	if _, err := st.Realisations(context.Background(), drvPath); err == nil {
		t.Log("this Nix records realisations without ca-derivations; the test still checks BuiltOutputs")
	}
	outs, err := st.Outputs(context.Background(), drvPath)
	if err != nil || len(outs) != 2 {
		t.Fatalf("Outputs(multi) = %v, %v; want out and dev", outs, err)
	}
	checkBuiltOutputs(t, st, drvPath, outs, false)
}

// caOutputs checks Realisations and CAClaim on the world's content-addressed
// derivation, which realised to p, and returns its outputs.
func caOutputs(t *testing.T, st Store, drvPath, p string) []string {
	t.Helper()
	ctx := context.Background()
	rs, err := st.Realisations(ctx, drvPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].OutPath != p || !strings.HasSuffix(rs[0].ID, "!out") {
		t.Fatalf("Realisations(%s) = %v; want one, out, realised to %s", drvPath, rs, p)
	}
	c, err := st.CAClaim(ctx, rs[0].ID, rs[0].OutPath)
	if err != nil {
		t.Fatal(err)
	}
	info := nixPathInfo(t, st, false, p)[0]
	if c.Kind != claim.KindNixCA || c.Subject != rs[0].ID || c.OutPath != p || c.NarHash != sriToNix32(t, info.NarHash) || c.NarSize != info.NarSize {
		t.Fatalf("ClaimCA = %+v; nix path-info says %+v", c, info)
	}
	return []string{p}
}

func FuzzParseRealisations(f *testing.F) {
	f.Add([]byte(`[{"dependentRealisations":{},"id":"sha256:53b0f3ae9590894eb23944274c5c6236289aa9b0b95d03bbda4398d1dee646ef!dev","outPath":"6g4bagqb8jipw9dn4xn1ggyzk3gmi7cl-multi-dev","signatures":[]},{"dependentRealisations":{},"id":"sha256:53b0f3ae9590894eb23944274c5c6236289aa9b0b95d03bbda4398d1dee646ef!out","outPath":"vqdxl8mmx5l4fry9h09n233ygq1gcph1-multi","signatures":[]}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"id":"sha256:00!out","outPath":"../../etc"}]`))
	f.Fuzz(func(t *testing.T, out []byte) {
		rs, err := parseRealisations(out)
		if err != nil {
			return
		}
		for i, r := range rs {
			if err := claim.ValidStorePath(r.OutPath); err != nil {
				t.Fatalf("accepted invalid out path %q: %v", r.OutPath, err)
			}
			if i > 0 && rs[i-1].ID >= r.ID {
				t.Fatalf("not sorted and unique: %q after %q", r.ID, rs[i-1].ID)
			}
			// Every accepted realisation makes a valid nix-ca claim.
			c := claim.Claim{Kind: claim.KindNixCA, Subject: r.ID, OutPath: r.OutPath,
				NarHash: "sha256:0cag13c7y879xydq9hdd585j6y11ip6z27qki8h93bz8a49m0wcd", NarSize: 1}
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted realisation %+v makes an invalid claim: %v", r, err)
			}
		}
	})
}

func TestDiskPath(t *testing.T) {
	const p = "/nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b"
	for _, tc := range []struct {
		root, path, want string
	}{
		{"/", p, p},
		{"/tmp/b1", p, "/tmp/b1" + p},
		{"/tmp/b1/", p, "/tmp/b1" + p},
		{"/tmp//b1/.", p, "/tmp/b1" + p},
	} {
		got, err := Store{Root: tc.root}.DiskPath(tc.path)
		if err != nil || got != tc.want {
			t.Errorf("Store{%q}.DiskPath(%q) = %q, %v; want %q", tc.root, tc.path, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ root, path string }{
		{"", p},
		{"relative", p},
		{"/", p + "/sub"},
		{"/", "/nix/store/../../etc/passwd"},
		{"/", "/nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-.."},
		{"/", "/etc/yc67d8wxv2y238qmy10ahm67vsjh0gby-b"},
		{"/", "yc67d8wxv2y238qmy10ahm67vsjh0gby-b"},
		{"/", "/nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gbe-b"}, // 'e' is not nix32
	} {
		if got, err := (Store{Root: tc.root}).DiskPath(tc.path); err == nil {
			t.Errorf("Store{%q}.DiskPath(%q) = %q; want an error", tc.root, tc.path, got)
		}
	}
}

func TestParseStorePaths(t *testing.T) {
	const a, b = "/nix/store/bvs815ip97cck1mwq6klqxgr83xn9fwk-a", "/nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b"
	got, err := parseStorePaths([]byte(b + "\n" + a + "\n" + b + "\n"))
	if err != nil || !slices.Equal(got, []string{a, b}) {
		t.Fatalf("parseStorePaths = %v, %v; want [a b]", got, err)
	}
	if got, err := parseStorePaths(nil); err != nil || len(got) != 0 {
		t.Fatalf("parseStorePaths(empty) = %v, %v", got, err)
	}
	for _, bad := range []string{a, a + "\n\n", "warning: something\n" + a + "\n", a + "/bin\n", " " + a + "\n"} {
		if got, err := parseStorePaths([]byte(bad)); err == nil {
			t.Errorf("parseStorePaths(%q) = %v; want an error", bad, got)
		}
	}
}

func FuzzParseStorePaths(f *testing.F) {
	f.Add([]byte("/nix/store/bvs815ip97cck1mwq6klqxgr83xn9fwk-a\n/nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b\n"))
	f.Add([]byte(""))
	f.Add([]byte("\n"))
	f.Add([]byte("unknown-deriver\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		paths, err := parseStorePaths(out)
		if err != nil {
			return
		}
		// What is accepted is a sorted set of valid store paths that,
		// printed back one per line, parses to itself.
		var b strings.Builder
		for i, p := range paths {
			if err := claim.ValidStorePath(p); err != nil {
				t.Fatalf("accepted invalid path %q: %v", p, err)
			}
			if i > 0 && paths[i-1] >= p {
				t.Fatalf("not sorted and unique: %q after %q", p, paths[i-1])
			}
			b.WriteString(p + "\n")
		}
		again, err := parseStorePaths([]byte(b.String()))
		if err != nil || !slices.Equal(again, paths) {
			t.Fatalf("re-parse gave %v, %v; want %v", again, err, paths)
		}
	})
}

func TestNixStoreErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Store{Root: "/"}.References(ctx, "/nix/store/bvs815ip97cck1mwq6klqxgr83xn9fwk-a")
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("References with a cancelled context: err = %v; want context.Canceled", err)
	}
	_, err = Store{}.References(context.Background(), "/nix/store/bvs815ip97cck1mwq6klqxgr83xn9fwk-a")
	if err == nil || !strings.Contains(err.Error(), "store root is empty") {
		t.Fatalf("References on the zero Store: err = %v; want the empty-root error", err)
	}
	if _, err := (Store{Root: "/"}).Outputs(context.Background(), "/nix/store/bvs815ip97cck1mwq6klqxgr83xn9fwk-a"); err == nil {
		t.Fatal("Outputs of a path that is not a .drv succeeded")
	}
}

// TestNamesOnlyThePath: what Nix 2.26 answers for a bare .drv path is told
// apart from realisations and from an empty answer.
func TestNamesOnlyThePath(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want bool
	}{
		{`[{"opaquePath":"/nix/store/8q0fndxwk4r99gb6aqxybas9m1x3pdfl-ca.drv"}]`, true},
		{`[{"id":"sha256:` + strings.Repeat("a", 64) + `!out","outPath":"x"}]`, false},
		{`[]`, false},
		{`[{"opaquePath":"/nix/store/x","id":"y"}]`, false},
		{`not json`, false},
	} {
		if got := namesOnlyThePath([]byte(tc.out)); got != tc.want {
			t.Errorf("namesOnlyThePath(%s) = %v, want %v", tc.out, got, tc.want)
		}
	}
}
