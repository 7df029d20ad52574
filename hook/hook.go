// Package hook connects Nix's post-build-hook to the builder's log without
// ever putting the daemon on a build's critical path.
//
// Nix runs the post-build-hook after every successful build, synchronously,
// and fails the build if the hook fails. So `vouch hook` does the least it
// can: it writes one small job file (the derivation and its outputs) into a
// spool directory with fsync and an atomic rename, pokes the daemon through
// the submit socket with a short timeout, and exits 0 — whether or not the
// daemon is running. The daemon drains the spool when poked, at start-up and
// periodically, turning each job into claims; a job file is removed only
// after every output in it is durable in the log (or was refused for a
// reason retrying cannot fix). Nothing the hook accepted is lost, and a
// daemon that is down or slow never blocks or fails a build.
//
// Nix 2.8 passes an empty OUT_PATHS to the hook (an upstream bug), so the
// outputs are derived from DRV_PATH when the daemon drains the job.
package hook

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/claim"
)

// Job is one spooled post-build event.
type Job struct {
	File    string   // the spool file, for Done
	DrvPath string   // the derivation that was built
	Outputs []string // may be empty: derive from DrvPath
}

// Spool is a directory of pending jobs.
type Spool struct{ Dir string }

// MaxJobSize bounds a job file; larger files are not jobs.
const MaxJobSize = 1 << 20

// Enqueue writes a job durably. drvPath must be a store path ending in .drv.
func (s Spool) Enqueue(drvPath string, outputs []string) error {
	if err := claim.ValidStorePath(drvPath); err != nil || !strings.HasSuffix(drvPath, ".drv") {
		return fmt.Errorf("DRV_PATH %q is not a derivation store path", drvPath)
	}
	for _, o := range outputs {
		if err := claim.ValidStorePath(o); err != nil {
			return fmt.Errorf("OUT_PATHS: %w", err)
		}
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("drv " + drvPath + "\n")
	for _, o := range outputs {
		b.WriteString("out " + o + "\n")
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%020d-%s", time.Now().UnixNano(), hex.EncodeToString(rnd[:]))
	tmp := filepath.Join(s.Dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(b.String())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.Dir, name+".job"))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(s.Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Len is the number of jobs waiting in the spool, without reading them.
func (s Spool) Len() (int, error) {
	names, err := s.jobFiles()
	return len(names), err
}

// jobFiles returns the names of the spool's job files, oldest first (a
// missing spool directory holds none).
func (s Spool) jobFiles() ([]string, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".job") && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Pending lists the spooled jobs, oldest first. Unreadable or malformed job
// files are returned as errors alongside the good jobs and left in place
// (renamed to .bad) for an operator to inspect.
func (s Spool) Pending() ([]Job, []error) {
	names, err := s.jobFiles()
	if err != nil {
		return nil, []error{err}
	}
	var jobs []Job
	var errs []error
	for _, n := range names {
		p := filepath.Join(s.Dir, n)
		j, err := readJob(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("spool job %s: %w (moved aside as .bad)", p, err))
			os.Rename(p, p+".bad")
			continue
		}
		jobs = append(jobs, j)
	}
	return jobs, errs
}

func readJob(p string) (Job, error) {
	st, err := os.Stat(p)
	if err != nil {
		return Job{}, err
	}
	if st.Size() > MaxJobSize {
		return Job{}, fmt.Errorf("%d bytes is too large for a job", st.Size())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return Job{}, err
	}
	j := Job{File: p}
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch {
		case i == 0 && k == "drv" && claim.ValidStorePath(v) == nil && strings.HasSuffix(v, ".drv"):
			j.DrvPath = v
		case i > 0 && k == "out" && claim.ValidStorePath(v) == nil:
			j.Outputs = append(j.Outputs, v)
		default:
			return Job{}, fmt.Errorf("line %d: %q is not \"drv PATH\" or \"out PATH\"", i+1, line)
		}
	}
	return j, nil
}

// Done removes a job whose outputs are all logged.
func (s Spool) Done(j Job) error {
	if err := os.Remove(j.File); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ParseOutPaths splits Nix's OUT_PATHS (space-separated).
func ParseOutPaths(s string) []string {
	return strings.Fields(s)
}
