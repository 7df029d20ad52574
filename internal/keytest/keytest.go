// Package keytest makes vouch key pairs for tests: keys.Generate into a
// directory, then keys.LoadIdentity, failing the test on any error.
package keytest

import (
	"testing"

	"github.com/vouch-dev/vouch/keys"
)

// Identity generates the key pair name in dir (a fresh temporary directory
// when dir is "") and returns it loaded, with the files it wrote.
func Identity(t testing.TB, dir, name string) (*keys.Identity, keys.Files) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	files, err := keys.Generate(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	id, err := keys.LoadIdentity(files.Key)
	if err != nil {
		t.Fatal(err)
	}
	return id, files
}
