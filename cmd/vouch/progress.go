package main

import (
	"fmt"
	"os"
	"time"
)

// progress draws a one-line progress bar on stderr when stderr is a
// terminal, and stays silent otherwise (logs and CI output stay clean).
type progress struct {
	total, n int
	what     string
	tty      bool
	last     time.Time
	start    time.Time
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newProgress(total int, what string) *progress {
	return &progress{total: total, what: what, tty: isTerminal(os.Stderr), start: time.Now()}
}

func (p *progress) active() bool { return p.tty }

func (p *progress) add(k int) {
	p.n += k
	if !p.tty || time.Since(p.last) < 100*time.Millisecond && p.n < p.total {
		return
	}
	p.last = time.Now()
	const width = 30
	fill := width
	if p.total > 0 {
		fill = width * p.n / p.total
	}
	bar := make([]byte, width)
	for i := range bar {
		if i < fill {
			bar[i] = '#'
		} else {
			bar[i] = '.'
		}
	}
	rate := float64(p.n) / time.Since(p.start).Seconds()
	fmt.Fprintf(os.Stderr, "\r[%s] %d/%d %s (%.0f/s)", bar, p.n, p.total, p.what, rate)
}

// printf prints a message above the bar.
func (p *progress) printf(format string, args ...any) {
	if p.tty {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	fmt.Fprintf(os.Stderr, format, args...)
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprintln(os.Stderr)
	}
}
