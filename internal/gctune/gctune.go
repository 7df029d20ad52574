// Package gctune sets the Go garbage collector's pacing for a vouch node.
//
// A node's live heap is small (a few MB while it answers verdicts and
// narinfos) but it allocates steadily, so with Go's default (GOGC=100, a
// new collection each time the heap doubles from that small base) it
// collects hundreds of times a second, and the requests that meet a
// collection are the slow ones: the 99th-percentile verdict latency fell
// from ~230 µs to ~115 µs with GOGC=400 in BenchmarkVerdict5x1M. A higher
// GOGC alone would let a large sync grow the heap to five times its live
// size, so a soft memory limit caps it: the collector runs when the heap
// reaches either GOGC's target or the limit, whichever comes first.
//
// Apply leaves any setting the user made through GOGC or GOMEMLIMIT alone.
package gctune

import (
	"os"
	"runtime/debug"
)

const (
	// Percent is the GOGC a node runs with.
	Percent = 400
	// MemoryLimit is the soft limit on the Go runtime's memory that makes
	// the collector work harder, rather than grow, past it.
	MemoryLimit = 192 << 20
)

// Apply sets the node's collector pacing unless the environment already
// does.
func Apply() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(Percent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(MemoryLimit)
	}
}
