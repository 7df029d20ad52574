package hook

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const drv = "/nix/store/6dfmycvm1f6w7icvcvmnvghxdizgz1xp-b.drv"
const out = "/nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b"

func TestEnqueuePendingDone(t *testing.T) {
	sp := Spool{Dir: filepath.Join(t.TempDir(), "spool")}
	if err := sp.Enqueue(drv, nil); err != nil {
		t.Fatal(err)
	}
	if err := sp.Enqueue(drv, []string{out}); err != nil {
		t.Fatal(err)
	}
	jobs, errs := sp.Pending()
	if len(errs) != 0 || len(jobs) != 2 || jobs[0].DrvPath != drv || len(jobs[1].Outputs) != 1 {
		t.Fatalf("jobs %+v errs %v", jobs, errs)
	}
	for _, j := range jobs {
		if err := sp.Done(j); err != nil {
			t.Fatal(err)
		}
	}
	if jobs, _ := sp.Pending(); len(jobs) != 0 {
		t.Fatalf("%d jobs left", len(jobs))
	}
}

func TestEnqueueRefusesNonDerivations(t *testing.T) {
	sp := Spool{Dir: t.TempDir()}
	for _, bad := range []string{"", "/etc/passwd", out, drv + "/x"} {
		if err := sp.Enqueue(bad, nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMalformedJobMovedAside(t *testing.T) {
	dir := t.TempDir()
	sp := Spool{Dir: dir}
	os.WriteFile(filepath.Join(dir, "1.job"), []byte("drv /tmp/x\n"), 0o600)
	jobs, errs := sp.Pending()
	if len(jobs) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "moved aside") {
		t.Fatalf("jobs %v errs %v", jobs, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "1.job.bad")); err != nil {
		t.Fatal("malformed job was not kept for inspection")
	}
}

// TestDrainKeepsJobsOnTransientErrors: a job stays spooled until every
// output is logged; permanent refusals do not block it forever.
func TestDrainKeepsJobsOnTransientErrors(t *testing.T) {
	sp := Spool{Dir: t.TempDir()}
	sp.Enqueue(drv, nil)
	fail := errors.New("daemon busy")
	d := &Drainer{
		Spool:   sp,
		Outputs: func(context.Context, string) ([]Output, error) { return []Output{{Path: out}}, nil },
		Log:     func(context.Context, Output) error { return fail },
	}
	if n, err := d.Drain(context.Background()); n != 0 || !errors.Is(err, fail) {
		t.Fatalf("drained %d, %v", n, err)
	}
	if jobs, _ := sp.Pending(); len(jobs) != 1 {
		t.Fatal("job lost after a transient error")
	}
	d.Log = func(context.Context, Output) error { return ErrPermanent }
	if n, err := d.Drain(context.Background()); n != 1 || err != nil {
		t.Fatalf("drained %d, %v", n, err)
	}
}

func FuzzReadJob(f *testing.F) {
	f.Add([]byte("drv " + drv + "\nout " + out + "\n"))
	f.Add([]byte("drv " + drv + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "x.job")
		os.WriteFile(p, b, 0o600)
		j, err := readJob(p)
		if err != nil {
			return
		}
		if !strings.HasSuffix(j.DrvPath, ".drv") {
			t.Fatalf("accepted job without a derivation: %q", b)
		}
	})
}
