package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vouch-dev/vouch/internal/testservers"
	"github.com/vouch-dev/vouch/keys"
)

// builderLog is where a builder keeps its log. The builder-log tests run
// the same code on each kind (forEachLogBackend).
type builderLog struct {
	// config is the text of a config file for the builder (the [log]
	// table and the key it needs), empty for the default POSIX log.
	config string
	// bucketURL is where the log is published, if not only at /log/.
	bucketURL string
}

// Start starts a builder on this log with state and store.
func (b *builderLog) Start(t testing.TB, state, store string, args ...string) *daemon {
	t.Helper()
	if b.config == "" {
		return startDaemon(t, state, store, args...)
	}
	cfg := filepath.Join(t.TempDir(), "vouch.toml")
	if err := os.WriteFile(cfg, []byte(b.config), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, state, store, append([]string{"--config", cfg}, args...)...)
	d.PublishedLog = b.bucketURL
	return d
}

// forEachLogBackend runs f on a builder log on the local disk (POSIX) and
// on one in an S3 bucket with a MariaDB database, both servers real and
// private to the test.
func forEachLogBackend(t *testing.T, f func(t *testing.T, log *builderLog)) {
	t.Run("posix", func(t *testing.T) { f(t, &builderLog{}) })
	t.Run("s3", func(t *testing.T) { f(t, newS3Log(t, "builder")) })
}

// newS3Log starts MariaDB and an S3 server and returns a builder log kept
// there, with a fresh key called name.
func newS3Log(t *testing.T, name string) *builderLog {
	t.Helper()
	db := testservers.StartMariaDB(t)
	s3 := testservers.StartS3(t)
	bucketURL := s3.NewPublicBucket(t, "builder-log")
	files, err := keys.Generate(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return &builderLog{
		config: fmt.Sprintf("key = %q\n\n[log]\nbackend = \"s3\"\nbucket = \"builder-log\"\nendpoint = %q\naccess-key = %q\nsecret-key = %q\ndsn = %q\n",
			files.Key, s3.Endpoint, s3.AccessKey, s3.SecretKey, db.NewDatabase(t, "builderlog")),
		bucketURL: bucketURL,
	}
}
