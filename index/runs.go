package index

import (
	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/internal/runs"
)

// A log's subject index is a set of sorted runs (package internal/runs):
// runs/<first log index of the run, 8 bytes BE> holds records h8 ‖ index
// sorted by h8. Within a log a subject hash appears at most once across all
// runs: Append refuses a second mapping for a subject (equal outputs keep
// the first, different outputs are a Conflict).
const (
	recordSize = runs.RecordSize
	maxIndex   = runs.MaxIndex
)

// bucketRuns holds every log's subject runs (see logData).
var bucketRuns = []byte("runs")

func putRecord(dst []byte, h []byte, n uint64) []byte    { return runs.Put(dst, h, n) }
func recordIndex(rec []byte) uint64                      { return runs.Index(rec) }
func searchRun(run, h []byte) (uint64, bool)             { return runs.Search(run, h) }
func lookupRuns(b *bolt.Bucket, h []byte) (uint64, bool) { return runs.Lookup(b, h) }
func addRun(b *bolt.Bucket, first uint64, run []byte) error {
	return runs.Add(b, first, run)
}
