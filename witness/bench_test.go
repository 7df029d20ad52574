package witness

import (
	"io"
	"log/slog"
	"testing"
)

// BenchmarkAddCheckpoint measures one cosigning decision without HTTP:
// parse, signature check, consistency proof, durable record (fsync of the
// file and the directory) and cosignature. "grow" records a new checkpoint
// every time; "republish" cosigns the recorded one again, which writes
// nothing, so the difference is the cost of durability.
func BenchmarkAddCheckpoint(b *testing.B) {
	const batch = 512
	bob := &memLog{id: identityFromSeed(b, "bob", 2)}
	bob.append(100000 + batch)
	grow := make([][]byte, batch)
	for i := range grow {
		old, size := int64(100000+i), int64(100000+i+1)
		grow[i] = requestBody(old, bob.proof(b, old, size), bob.checkpoint(b, size))
	}
	first := requestBody(0, nil, bob.checkpoint(b, 100000))
	open := func() *Witness {
		w, err := New(Options{Dir: b.TempDir(), Identity: identityFromSeed(b, "alice", 1), Logs: []Log{{bob.id.VerifierKey}},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		if code, answer, _ := w.addCheckpoint(first); code != 200 {
			b.Fatalf("%d %s", code, answer)
		}
		return w
	}
	b.Run("grow", func(b *testing.B) {
		w := open()
		for i := 0; i < b.N; i++ {
			if i > 0 && i%batch == 0 { // sizes must keep growing: start over
				b.StopTimer()
				w.Close()
				w = open()
				b.StartTimer()
			}
			if code, answer, _ := w.addCheckpoint(grow[i%batch]); code != 200 {
				b.Fatalf("%d %s", code, answer)
			}
		}
		w.Close()
	})
	b.Run("republish", func(b *testing.B) {
		w := open()
		again := requestBody(100000, nil, bob.checkpoint(b, 100000))
		for b.Loop() {
			if code, answer, _ := w.addCheckpoint(again); code != 200 {
				b.Fatalf("%d %s", code, answer)
			}
		}
		w.Close()
	})
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			if _, err := parseAddCheckpoint(grow[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
