package index

import (
	"unsafe"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseMapped tells the kernel that the process no longer needs the
// pages of the index file it has read.
//
// bbolt reads the database through a shared memory map of the whole file,
// and every page a reader or writer has touched stays mapped into the
// process, counted in its resident set, until bbolt maps the file anew
// (only when the file outgrows the map). A sync reads every version of the
// log's subject runs as they are merged (see runs.go), most of them freed
// since, so a long sync would otherwise leave a large part of the file
// mapped: a third of a 300 MB index after a million entries. The pages
// stay in the kernel's page cache; a later read maps them again without
// I/O, at the cost of a minor page fault.
//
// It runs inside a read transaction, which keeps bbolt from remapping the
// file meanwhile, so the range released is the map bbolt reads from. The
// maps of the logs' files (logfiles.go) are released too: a sync reads
// earlier entries of a log whenever it claims a subject again.
func (x *Index) ReleaseMapped() error {
	x.mu.RLock()
	for _, m := range x.logs {
		if m.files != nil {
			if err := m.files.releaseMapped(); err != nil {
				x.mu.RUnlock()
				return err
			}
		}
	}
	x.mu.RUnlock()
	return x.db.View(func(tx *bolt.Tx) error {
		info := x.db.Info()
		// Size is the database's size at this transaction: within the map.
		return madviseDontNeed(info.Data, uintptr(tx.Size()))
	})
}

// releaseMapped drops the process's pages of every map of the files. The
// maps stay valid: a later read faults the page in again from the page
// cache.
func (f *logFiles) releaseMapped() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.mapped {
		if err := madviseDontNeed(uintptr(unsafe.Pointer(unsafe.SliceData(m))), uintptr(len(m))); err != nil {
			return err
		}
	}
	return nil
}

func madviseDontNeed(addr, length uintptr) error {
	if length == 0 {
		return nil
	}
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, length, unix.MADV_DONTNEED)
	if errno != 0 {
		return errno
	}
	return nil
}
