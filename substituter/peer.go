package substituter

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/nixstore"
)

// StoreServer serves the paths of a Nix store on this machine as a plain,
// unsigned binary cache, for other vouch nodes to list as an upstream:
//
//	GET|HEAD /<hash>.narinfo    NarHash and NarSize computed from disk,
//	                            References from Nix's database
//	GET /nar/<hash>.nar         the NAR, uncompressed (nixstore.WriteNAR)
//
// It vouches for nothing: a peer compares the narinfo with its own agreed
// values and verifies the NAR as it streams, as for any upstream. Mount it
// under a prefix of its own (e.g. /peer/) with http.StripPrefix.
type StoreServer struct {
	store nixstore.Store
	log   *slog.Logger
	// infos caches narinfos by store path: a valid store path's contents
	// never change, and hashing a large tree is expensive.
	infos *lru.Cache[string, []byte]
	// hashing bounds concurrent NAR hash computations.
	hashing chan struct{}
}

// NewStoreServer serves the store rooted at root ("/" for /nix/store).
func NewStoreServer(root string, logger *slog.Logger) (*StoreServer, error) {
	st := nixstore.Store{Root: root}
	if _, err := st.DiskPath(claim.StoreDir + "/00000000000000000000000000000000-x"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	infos, _ := lru.New[string, []byte](1 << 14)
	return &StoreServer{store: st, log: logger.With("component", "store-server"), infos: infos, hashing: make(chan struct{}, 4)}, nil
}

// ServeHTTP implements the two endpoints.
func (ss *StoreServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/nix-cache-info":
		w.Header().Set("Content-Type", contentTypeCacheInfo)
		io.WriteString(w, "StoreDir: "+claim.StoreDir+"\nWantMassQuery: 0\nPriority: 60\n")
	case strings.HasSuffix(p, ".narinfo") && strings.Count(p, "/") == 1 && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		ss.serveNarinfo(w, r, strings.TrimSuffix(p[1:], ".narinfo"))
	case strings.HasPrefix(p, "/nar/") && strings.HasSuffix(p, ".nar") && r.Method == http.MethodGet:
		ss.serveNAR(w, r, strings.TrimSuffix(p[len("/nar/"):], ".nar"))
	default:
		http.NotFound(w, r)
	}
}

func (ss *StoreServer) serveNarinfo(w http.ResponseWriter, r *http.Request, hashPart string) {
	storePath, ok := ss.find(hashPart)
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, err := ss.narinfo(r.Context(), storePath)
	if err != nil {
		ss.log.Warn("cannot describe store path", "path", storePath, "err", err)
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", contentTypeNarinfo)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodGet {
		w.Write(b)
	}
}

func (ss *StoreServer) narinfo(ctx context.Context, storePath string) ([]byte, error) {
	if b, ok := ss.infos.Get(storePath); ok {
		return b, nil
	}
	// Only paths Nix registered as valid: a path being built or deleted
	// has files on disk that are not (or no longer) that path.
	refs, err := ss.store.References(ctx, storePath)
	if err != nil {
		return nil, err
	}
	disk, err := ss.store.DiskPath(storePath)
	if err != nil {
		return nil, err
	}
	select {
	case ss.hashing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	narHash, narSize, err := nixstore.NarHash(disk)
	<-ss.hashing
	if err != nil {
		return nil, err
	}
	ni := narinfo.NarInfo{
		StorePath:   storePath,
		URL:         "nar/" + claim.HashPart(storePath) + ".nar",
		Compression: "none",
		NarHash:     narHash,
		NarSize:     narSize,
		References:  refs,
	}
	b := ni.Marshal()
	ss.infos.Add(storePath, b)
	return b, nil
}

func (ss *StoreServer) serveNAR(w http.ResponseWriter, r *http.Request, hashPart string) {
	storePath, ok := ss.find(hashPart)
	if !ok {
		http.NotFound(w, r)
		return
	}
	disk, err := ss.store.DiskPath(storePath)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", contentTypeNAR)
	if b, ok := ss.infos.Get(storePath); ok {
		if ni, err := narinfo.Parse(b); err == nil {
			w.Header().Set("Content-Length", strconv.FormatUint(ni.NarSize, 10))
		}
	}
	if err := nixstore.WriteNAR(w, disk); err != nil {
		ss.log.Warn("NAR write failed", "path", storePath, "err", err)
		// The body is incomplete; make sure the peer sees it short.
		panic(http.ErrAbortHandler)
	}
}

// find returns the store path with hashPart by listing the store directory.
// It reads the directory in batches and stops at the first match; a store
// of a million paths costs a full listing per miss, acceptable for a peer
// endpoint that peers only ask about paths they already know are agreed.
func (ss *StoreServer) find(hashPart string) (string, bool) {
	if !validHashPart(hashPart) {
		return "", false
	}
	dir, err := ss.store.DiskPath(claim.StoreDir + "/" + hashPart + "-x")
	if err != nil {
		return "", false
	}
	f, err := os.Open(filepath.Dir(dir))
	if err != nil {
		return "", false
	}
	defer f.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		names, err := f.Readdirnames(4096)
		for _, n := range names {
			if strings.HasPrefix(n, hashPart+"-") && !strings.HasSuffix(n, ".lock") {
				p := claim.StoreDir + "/" + n
				if claim.ValidStorePath(p) == nil {
					return p, true
				}
			}
		}
		if errors.Is(err, io.EOF) || err != nil {
			return "", false
		}
	}
	return "", false
}
