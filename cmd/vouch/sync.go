package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
)

func init() {
	register(command{name: "sync", summary: "sync and verify every builder log of the config once", run: runSync})
}

func runSync(args []string) int {
	fs := newFlags("sync", "")
	cfgPath := fs.String("config", "", "config file (required)")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if *cfgPath == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	if len(cfg.Builders) == 0 {
		return fail("sync: %s lists no [[builder]]; nothing to follow", *cfgPath)
	}
	if err := os.MkdirAll(cfg.State, 0o700); err != nil {
		return fail("sync: %v", err)
	}
	idx, err := follow.OpenIndex(cfg)
	if err != nil {
		return fail("sync: %v", err)
	}
	defer idx.Close()

	bar := newSyncBar(isTerminal(os.Stderr))
	f, err := follow.New(cfg, idx, follow.Options{
		Progress: bar.update,
		// Results are reported below; keep the log lines out of the way.
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return fail("sync: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	results := f.SyncOnce(ctx)
	bar.finish()

	failed := 0
	for _, r := range results {
		switch {
		case ctx.Err() != nil && r.Err != nil:
			fmt.Printf("%s: %d entries (+%d), interrupted\n", r.Builder, r.Size, r.Added)
		case r.Evidence != nil:
			failed++
			fmt.Fprintf(os.Stderr, "vouch: %s: EVIDENCE %s recorded (%s): %s\n  its claims no longer count; see: vouch evidence --config %s\n", r.Builder, r.Evidence.ID, r.Evidence.Kind, r.Evidence.Summary, *cfgPath)
		case errors.Is(r.Err, follow.ErrCompromised):
			failed++
			fmt.Fprintf(os.Stderr, "vouch: %s: skipped, its log is marked compromised (vouch evidence --config %s; vouch builder readmit re-admits it deliberately)\n", r.Builder, *cfgPath)
		case r.Err != nil:
			failed++
			fmt.Fprintf(os.Stderr, "vouch: %s: sync failed: %v\n", r.Builder, r.Err)
		default:
			// The summary goes to stdout whether or not it is a terminal:
			// a script or a CI log wants it too.
			fmt.Printf("%s: %d entries (+%d)\n", r.Builder, r.Size, r.Added)
		}
	}
	if ctx.Err() != nil {
		// Each batch is indexed with its high-water mark in one
		// transaction: what was synced is kept, the rest resumes.
		fmt.Fprintf(os.Stderr, "vouch: interrupted; nothing verified is lost, and the next sync resumes where this one stopped\n")
		return 130
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "vouch: %d of %d builders failed to sync\n", failed, len(results))
		return 1
	}
	return 0
}

// syncBar draws one status line for all logs on a terminal, at most ten
// times a second; off a terminal it draws nothing.
type syncBar struct {
	tty bool

	mu    sync.Mutex
	state map[string]follow.Progress
	last  time.Time
	start time.Time
	drawn bool
}

func newSyncBar(tty bool) *syncBar {
	return &syncBar{tty: tty, state: map[string]follow.Progress{}, start: time.Now()}
}

func (b *syncBar) update(p follow.Progress) {
	if !b.tty {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state[p.Builder] = p
	if time.Since(b.last) < 100*time.Millisecond {
		return
	}
	b.last = time.Now()
	b.draw()
}

func (b *syncBar) draw() {
	names := make([]string, 0, len(b.state))
	var done, total uint64
	for n, p := range b.state {
		names = append(names, n)
		done += p.Done
		total += p.Total
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		p := b.state[n]
		parts[i] = fmt.Sprintf("%s %d%%", n, percent(p.Done, p.Total))
	}
	const width = 24
	fill := int(uint64(width) * uint64(percent(done, total)) / 100)
	bar := strings.Repeat("#", fill) + strings.Repeat(".", width-fill)
	rate := float64(done) / time.Since(b.start).Seconds()
	fmt.Fprintf(os.Stderr, "\r\033[K[%s] %d/%d entries (%.0f/s)  %s", bar, done, total, rate, strings.Join(parts, "  "))
	b.drawn = true
}

func percent(done, total uint64) int {
	if total == 0 {
		return 100
	}
	return int(done * 100 / total)
}

func (b *syncBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		b.draw()
		fmt.Fprintln(os.Stderr)
	}
}
