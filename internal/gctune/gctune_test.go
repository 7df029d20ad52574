package gctune

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestApplyRespectsTheEnvironment(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	t.Setenv("GOGC", "150")
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetGCPercent(150)
	Apply()
	if got := debug.SetGCPercent(150); got != 150 {
		t.Errorf("GOGC set by the user, but Apply changed it to %d", got)
	}
}

func TestApplySetsThePacing(t *testing.T) {
	for _, v := range []string{"GOGC", "GOMEMLIMIT"} {
		if _, set := os.LookupEnv(v); set {
			t.Skipf("%s is set in this environment; Apply leaves it alone", v)
		}
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	Apply()
	if got := debug.SetGCPercent(Percent); got != Percent {
		t.Errorf("GOGC %d, want %d", got, Percent)
	}
	if got := debug.SetMemoryLimit(-1); got != MemoryLimit {
		t.Errorf("memory limit %d, want %d", got, MemoryLimit)
	}
}
