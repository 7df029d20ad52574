package index

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/internal/memtlog"
)

// crashEnv tells a re-executed test binary to be the writer that
// TestKilledWhileAppending kills.
const crashEnv = "VOUCH_INDEX_CRASH_WRITER"

// TestKilledWhileAppending kills a process appending to an index with
// SIGKILL, again and again at random moments, and reopens the index each
// time: every batch the writer saw acknowledged is still there, nothing
// beyond what the database counts is served, the entries are byte for byte
// what was appended and the tree's root is the root of exactly those
// entries. A kill between writing the log files and committing the
// database transaction leaves a tail the reopen must cut off.
func TestKilledWhileAppending(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		crashWriter(t, os.Getenv(crashEnv))
		return
	}
	if testing.Short() {
		t.Skip("kills a writer process 12 times")
	}
	id := LogID{"alice", "k1"}
	path := filepath.Join(t.TempDir(), "index.db")
	rng := rand.New(rand.NewPCG(7, 11))
	var acked uint64
	cut := 0
	for round := 0; round < 12; round++ {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestKilledWhileAppending$")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan uint64)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if n, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
					lines <- n
				}
			}
		}()
		// Let it acknowledge a few batches, then kill it at a random moment.
		deadline := time.After(time.Duration(20+rng.IntN(200)) * time.Millisecond)
	wait:
		for seen := 0; ; {
			select {
			case n, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: the writer stopped by itself", round)
				}
				acked, seen = n, seen+1
			case <-deadline:
				if seen > 0 {
					break wait
				}
				deadline = time.After(10 * time.Millisecond)
			}
		}
		cmd.Process.Kill()
		for n := range lines {
			acked = n // acknowledged before it died
		}
		cmd.Wait()

		endFile := filepath.Join(filesDir(path), "00000001.end")
		before, _ := os.Stat(endFile)
		x, err := Open(path, id)
		if err != nil {
			t.Fatalf("round %d: reopening after the kill: %v", round, err)
		}
		st, err := x.State(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Synced < acked {
			t.Fatalf("round %d: %d entries acknowledged, %d indexed after the kill", round, acked, st.Synced)
		}
		if _, err := x.Entry(id, st.Synced); err == nil {
			t.Fatalf("round %d: entry %d is served, beyond the %d indexed", round, st.Synced, st.Synced)
		}
		var ref memtlog.Tree
		for i := 0; i < int(st.Synced); i++ {
			want := mustEntry(t, i)
			ref.Add(want)
			if i%97 == 0 || i == int(st.Synced)-1 {
				if got, err := x.Entry(id, uint64(i)); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("round %d: entry %d is %q (%v), want %q", round, i, got, err, want)
				}
			}
		}
		want, _ := ref.Root(int64(st.Synced))
		if got, err := x.RootAt(id, st.Synced); err != nil || got != want {
			t.Fatalf("round %d: root of %d entries %v (%v), want %v", round, st.Synced, got, err, want)
		}
		tail := ""
		if after, _ := os.Stat(endFile); before != nil && after.Size() < before.Size() {
			tail = fmt.Sprintf("; reopening cut off %d uncommitted entries", (before.Size()-after.Size())/8)
			cut++
		}
		t.Logf("round %d: killed after %d acknowledged, %d indexed%s", round, acked, st.Synced, tail)
		x.Close()
	}
	t.Logf("%d of 12 kills left an uncommitted tail", cut)
}

// crashWriter appends batches of random sizes to the index at path until
// it is killed, printing the number of entries after each acknowledged
// batch.
func crashWriter(t *testing.T, path string) {
	id := LogID{"alice", "k1"}
	x, err := Open(path, id)
	if err != nil {
		t.Fatal(err)
	}
	st, err := x.State(id)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), st.Synced))
	for next := int(st.Synced); ; {
		n := 1 + rng.IntN(700)
		if c, err := x.Append(id, batch(t, next, n, "o")); err != nil || c != nil {
			t.Fatal(c, err)
		}
		next += n
		fmt.Println(next)
	}
}
