// Package durable writes small files so that, once a call returns, their
// bytes survive a crash of the process or of the machine: data is fsync'd
// before the file is closed.
package durable

import (
	"io/fs"
	"os"
)

// WriteNew creates path with mode and writes data to it, failing if path
// exists: it never overwrites (keys, a log's pinned origin).
func WriteNew(path string, data []byte, mode fs.FileMode) error {
	return write(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, data, mode)
}

// Append appends data to path, creating it with mode if needed (records
// such as promotions.log).
func Append(path string, data []byte, mode fs.FileMode) error {
	return write(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, data, mode)
}

func write(path string, flags int, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
