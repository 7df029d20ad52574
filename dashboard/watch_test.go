package dashboard

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// syncBuffer is a log destination safe for the watcher's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWatchSinglesOutTheOutvotedBuilder: without any page being opened,
// the watcher logs carol (outvoted on "tampered") and /metrics counts her,
// and only her, as outvoted.
func TestWatchSinglesOutTheOutvotedBuilder(t *testing.T) {
	w := theWorld(t)
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	d, err := New(Options{Index: w.idx, Policy: w.policy, Config: w.cfg, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Watch(ctx, 20*time.Millisecond) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "builder outvoted") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "builder=carol") || strings.Count(out, "builder outvoted") != 1 {
		t.Errorf("want one outvoted line, for carol:\n%s", out)
	}
	want := `
# HELP vouch_builder_outvoted_subjects Subjects for which the builder's output lost against an agreeing quorum (a strict majority that meets the policy).
# TYPE vouch_builder_outvoted_subjects gauge
vouch_builder_outvoted_subjects{builder="alice"} 0
vouch_builder_outvoted_subjects{builder="bob"} 0
vouch_builder_outvoted_subjects{builder="carol"} 1
vouch_builder_outvoted_subjects{builder="dave"} 0
vouch_builder_outvoted_subjects{builder="erin"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vouch_builder_outvoted_subjects"); err != nil {
		t.Error(err)
	}
}
