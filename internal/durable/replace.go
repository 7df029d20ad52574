package durable

import (
	"io/fs"
	"os"
	"path/filepath"
)

// Replace atomically replaces path with data: after a crash, path holds
// either its old bytes or all of data, never a mix (a witness's latest
// cosigned checkpoint). The data is written to a temporary file in the same
// directory, fsync'd, renamed over path, and the directory is fsync'd so the
// rename itself is durable when Replace returns.
func Replace(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	done = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making the creation, removal or renaming of
// the files in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}
