//go:build !linux

package index

// ReleaseMapped does nothing on this system; see release_linux.go.
func (x *Index) ReleaseMapped() error { return nil }
