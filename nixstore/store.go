// Package nixstore computes the facts a vouch claim states about a Nix store
// path, from the store on this machine.
//
// Two kinds of facts, from two sources:
//
//   - The NAR hash and size are computed here, in Go, from the files on disk
//     (NarHash): they are what the path IS. NarHash serialises the tree
//     exactly as "nix-store --dump" does and hashes it while streaming; it
//     is faster than "nix-hash" (see BENCHMARKS.md) so a builder can afford
//     it for every output. WriteNAR writes the same bytes, to serve the
//     node's own store to peers.
//   - References, outputs of a derivation, closures, derivers and the
//     realisations of content-addressed derivations come from Nix's own
//     database, through "nix-store --query" and "nix realisation info"
//     (Store). These are facts Nix established when it registered the path
//     and that cannot be recomputed from the files alone (see
//     Store.References).
//
// Store.Claim and Store.CAClaim put both together into the claims a builder
// logs for an output; Store.BuiltOutputs finds the outputs of a derivation
// a post-build hook was told about.
//
// A Store is the root of a Nix store on disk. Root "/" is the system store
// /nix/store; any other root is a chroot store, as created by
// "nix-build --store /tmp/b1 ...": its paths are still named /nix/store/...
// but its files live under /tmp/b1/nix/store/... and its database under
// /tmp/b1/nix/var/nix/db. Tests run several independent builders on one
// machine this way.
//
// Example: the claim a builder logs for an output it has just built.
//
//	st := nixstore.Store{Root: "/"}
//	c, err := st.Claim(ctx, "/nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b")
//	// c.NarHash    "sha256:0cag13c7y879xydq9hdd585j6y11ip6z27qki8h93bz8a49m0wcd"
//	// c.NarSize    328
//	// c.References ["bvs815ip97cck1mwq6klqxgr83xn9fwk-a"]
//	// c.Deriver    "6dfmycvm1f6w7icvcvmnvghxdizgz1xp-b.drv"
//
// The NAR format and the nix-store commands used were checked against Nix
// 2.8; the golden tests build real derivations with real Nix and compare.
package nixstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/claim"
)

// QueryTimeout bounds every nix-store invocation. A query of the local
// database answers in milliseconds; a daemon that does not answer within
// this time is stuck (a held lock, a hung daemon), and a caller such as a
// post-build hook must not wait on it forever.
const QueryTimeout = time.Minute

// Store is a Nix store on this machine, rooted at Root: "/" for the system
// store, or the directory given to "nix-build --store DIR" for a chroot
// store. The zero value is not usable: an empty Root is refused rather than
// silently meaning the system store.
type Store struct{ Root string }

// root returns the cleaned Root, or an error saying how to fix it.
func (s Store) root() (string, error) {
	if s.Root == "" {
		return "", errors.New(`nixstore: store root is empty; use "/" for the system store or the directory given to nix-build --store`)
	}
	if !filepath.IsAbs(s.Root) {
		return "", fmt.Errorf("nixstore: store root %q is not an absolute path", s.Root)
	}
	return filepath.Clean(s.Root), nil
}

// DiskPath returns where the files of storePath live on disk: storePath
// itself for the system store, Root + storePath for a chroot store. It only
// accepts a top-level store path ("/nix/store/<hash>-<name>", checked with
// claim.ValidStorePath), so the result can never point outside the store:
// no sub-paths, no "..", no second slash. It does not look at the disk; the
// store path itself may be a symlink (its NAR is then a symlink node) and the
// store directory may be a symlink to elsewhere.
func (s Store) DiskPath(storePath string) (string, error) {
	root, err := s.root()
	if err != nil {
		return "", err
	}
	if err := claim.ValidStorePath(storePath); err != nil {
		return "", fmt.Errorf("nixstore: %w", err)
	}
	if root == "/" {
		return storePath, nil
	}
	return root + storePath, nil
}

// References returns the basenames of the store paths storePath refers to,
// sorted, including storePath itself when it refers to itself.
//
// They are taken from Nix's database, not recomputed: when Nix registered
// the path it scanned the build output for the hash parts of the build's
// inputs, and only of those. Scanning the files here would need that same
// candidate set, which only the derivation's inputs define; scanning for
// every path in the store would find accidental matches Nix never recorded.
// And these are exactly the references Nix signs into a narinfo's
// fingerprint, so they are what other builders will claim too.
func (s Store) References(ctx context.Context, storePath string) ([]string, error) {
	if err := claim.ValidStorePath(storePath); err != nil {
		return nil, fmt.Errorf("nixstore: references: %w", err)
	}
	out, err := s.nixStore(ctx, "--query", "--references", storePath)
	if err != nil {
		return nil, err
	}
	paths, err := parseStorePaths(out)
	if err != nil {
		return nil, fmt.Errorf("nixstore: references of %s: %w", storePath, err)
	}
	refs := make([]string, len(paths))
	for i, p := range paths {
		refs[i] = path.Base(p)
	}
	return claim.SortReferences(refs), nil
}

// Outputs returns the full store paths of the outputs of the derivation
// drvPath, sorted. A post-build hook needs this because Nix 2.8 hands it an
// empty OUT_PATHS: DRV_PATH is all it can rely on.
//
// Nix 2.8 cannot answer this for a floating content-addressed derivation
// (its output paths are known only from realisations): BuiltOutputs
// handles both kinds.
func (s Store) Outputs(ctx context.Context, drvPath string) ([]string, error) {
	if err := claim.ValidStorePath(drvPath); err != nil || !strings.HasSuffix(drvPath, ".drv") {
		return nil, fmt.Errorf("nixstore: outputs: %q is not a derivation store path (/nix/store/<hash>-<name>.drv)", drvPath)
	}
	out, err := s.nixStore(ctx, "--query", "--outputs", drvPath)
	if err != nil {
		return nil, err
	}
	paths, err := parseStorePaths(out)
	if err != nil {
		return nil, fmt.Errorf("nixstore: outputs of %s: %w", drvPath, err)
	}
	return paths, nil
}

// Closure returns the full store paths of the closure of storePath (the
// path itself and everything it references, transitively), sorted.
func (s Store) Closure(ctx context.Context, storePath string) ([]string, error) {
	if err := claim.ValidStorePath(storePath); err != nil {
		return nil, fmt.Errorf("nixstore: closure: %w", err)
	}
	out, err := s.nixStore(ctx, "--query", "--requisites", storePath)
	if err != nil {
		return nil, err
	}
	paths, err := parseStorePaths(out)
	if err != nil {
		return nil, fmt.Errorf("nixstore: closure of %s: %w", storePath, err)
	}
	return paths, nil
}

// Deriver returns the basename of the derivation that produced storePath,
// or "" when Nix does not know it (paths added with nix-store --add or
// builtins.path, or substituted without a deriver).
func (s Store) Deriver(ctx context.Context, storePath string) (string, error) {
	if err := claim.ValidStorePath(storePath); err != nil {
		return "", fmt.Errorf("nixstore: deriver: %w", err)
	}
	out, err := s.nixStore(ctx, "--query", "--deriver", storePath)
	if err != nil {
		return "", err
	}
	line := strings.TrimSuffix(string(out), "\n")
	if line == "unknown-deriver" {
		return "", nil
	}
	if err := claim.ValidStorePath(line); err != nil || !strings.HasSuffix(line, ".drv") {
		return "", fmt.Errorf("nixstore: deriver of %s: nix-store printed %q, not a derivation path", storePath, trunc(line))
	}
	return path.Base(line), nil
}

// IsValid reports whether storePath is registered as valid in the store's
// database, i.e. completely built or substituted and not garbage collected.
// Files on disk without a registration do not count.
func (s Store) IsValid(ctx context.Context, storePath string) (bool, error) {
	if err := claim.ValidStorePath(storePath); err != nil {
		return false, fmt.Errorf("nixstore: validity: %w", err)
	}
	// --print-invalid makes nix-store print invalid paths and exit 0, so
	// a non-zero exit means the query itself failed.
	out, err := s.nixStore(ctx, "--check-validity", "--print-invalid", storePath)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(out)) == "", nil
}

// Claim returns the nix claim this builder makes about storePath: its NAR
// hash and size computed from the files on disk, its references from Nix's
// database, its deriver (informational) and the current time.
//
// The hash is deliberately computed from disk rather than copied from Nix's
// database: the claim then says what this machine actually holds, so an
// output altered after it was registered shows up as a disagreement with
// other builders instead of being vouched for under its old hash.
func (s Store) Claim(ctx context.Context, storePath string) (*claim.Claim, error) {
	disk, err := s.DiskPath(storePath)
	if err != nil {
		return nil, err
	}
	// References first: it is cheap and fails clearly for a path Nix has
	// not registered, before a possibly large tree is hashed.
	refs, err := s.References(ctx, storePath)
	if err != nil {
		return nil, err
	}
	deriver, err := s.Deriver(ctx, storePath)
	if err != nil {
		return nil, err
	}
	narHash, narSize, err := NarHash(disk)
	if err != nil {
		return nil, fmt.Errorf("nixstore: claim for %s: %w", storePath, err)
	}
	c := &claim.Claim{
		Kind:       claim.KindNix,
		Subject:    storePath,
		NarHash:    narHash,
		NarSize:    narSize,
		References: refs,
		Deriver:    deriver,
		Time:       time.Now().UTC().Truncate(time.Second),
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("nixstore: claim for %s: %w", storePath, err)
	}
	return c, nil
}

// maxStderr bounds how much of nix-store's error output is kept for an
// error message; the last lines say what went wrong.
const maxStderr = 4 << 10

// nixStore runs nix-store against s with args; see run.
func (s Store) nixStore(ctx context.Context, args ...string) ([]byte, error) {
	return s.run(ctx, "nix-store", args...)
}

// run runs a Nix command (nix-store, nix) against s with args, bounded by
// QueryTimeout, and returns its standard output. A failure becomes an
// error that quotes the command and what it said.
func (s Store) run(ctx context.Context, program string, args ...string) ([]byte, error) {
	root, err := s.root()
	if err != nil {
		return nil, err
	}
	if root != "/" {
		args = append([]string{"--store", root}, args...)
	}
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: maxStderr}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	start := time.Now()
	err = cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	command := program + " " + strings.Join(args, " ")
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return nil, fmt.Errorf("nixstore: %s: %s is not on PATH; install Nix or add its bin directory to PATH", command, program)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("nixstore: %s: no answer within %v; is the Nix daemon stuck, or another process holding the store's lock?", command, time.Since(start).Round(100*time.Millisecond))
	case ctx.Err() != nil:
		return nil, fmt.Errorf("nixstore: %s: %w", command, ctx.Err())
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		msg = "no error output"
	}
	return nil, fmt.Errorf("nixstore: %s failed (%v): %s", command, err, msg)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// parseStorePaths parses nix-store's answer to a query that prints store
// paths, one per line. Every line must be a valid store path; the result is
// sorted and free of duplicates. Anything else means nix-store did not
// answer as expected, and is refused rather than guessed at.
func parseStorePaths(out []byte) ([]string, error) {
	text := string(out)
	if text == "" {
		return nil, nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("nix-store output does not end with a newline: %q", trunc(text))
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, l := range lines {
		if err := claim.ValidStorePath(l); err != nil {
			return nil, fmt.Errorf("nix-store output line %d: %w", i+1, err)
		}
	}
	return claim.SortReferences(lines), nil
}

// validOutputName reports whether name is a derivation output name Nix
// accepts: output names become part of store path names ("<name>-dev"), so
// they obey the same rules.
func validOutputName(name string) bool {
	return name != "" && claim.ValidStorePath(claim.StoreDir+"/00000000000000000000000000000000-"+name) == nil
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
