// Package submit is the write side of a builder's log: a local UNIX socket
// on which trusted local processes (the Nix post-build hook, `vouch submit`,
// `vouch attest`) hand the daemon what it should log.
//
// # Who may submit
//
// The socket is created with mode 0600 (only the daemon's user) or 0660 with
// a configured group (socket-group). Anyone who can write to it can make the
// builder log claims, so grant it exactly to the processes you trust to say
// "this was built here". For Nix outputs the submitter names only store
// paths: the daemon hashes the path itself from the store on disk, so even a
// trusted submitter cannot make it log an output it does not have. Claims of
// other kinds (oci, nix-ca), whose output the daemon cannot recompute, are
// accepted whole.
//
// # Protocol
//
// HTTP/1.1 over the socket, JSON bodies:
//
//	POST /v1/paths   {"paths": ["/nix/store/…", …]}       → {"results": [Result, …]}
//	POST /v1/claims  <one claim encoding, as package claim> → Result
//	POST /v1/drain   (no body) → 202; asks the daemon to drain the hook spool now
//
// A Result is {"subject", "index", "duplicate", "error"}. A path's result
// carries an index only once its claim is durable in the log (see package
// buildlog). HTTP status: 200 when every item was logged (or was already),
// 409 when one conflicts with a logged claim, 400 for malformed input, 503
// when the log could not say (retry: submissions are idempotent).
package submit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/vouch-dev/vouch/buildlog"
	"github.com/vouch-dev/vouch/claim"
)

// MaxPaths bounds one /v1/paths request.
const MaxPaths = 10000

// Result is the outcome of one submitted item.
type Result struct {
	Subject   string `json:"subject"`
	Index     uint64 `json:"index"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     string `json:"error,omitempty"`
	// Conflict is set when Error is a conflict with an already logged claim.
	Conflict bool `json:"conflict,omitempty"`
}

// Claimer turns a store path into a claim by reading the store. It is
// implemented by nixstore.Store.
type Claimer interface {
	Claim(ctx context.Context, storePath string) (*claim.Claim, error)
}

// Appender is what the server appends to; *buildlog.Log implements it.
type Appender interface {
	Add(ctx context.Context, c *claim.Claim) (buildlog.Result, error)
}

// Listen creates the socket at path with the permissions described in the
// package doc. A stale socket file from a dead daemon is replaced; a live
// one is an error.
func Listen(path, group string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("submit socket %s is in use by a running daemon", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("submit socket: %w", err)
	}
	mode := os.FileMode(0o600)
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("submit socket: socket-group %q: %w", group, err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("submit socket: chown to group %q: %w", group, err)
		}
		mode = 0o660
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("submit socket: %w", err)
	}
	return ln, nil
}

// Server answers submissions.
type Server struct {
	Log   Appender
	Store Claimer
	// Drain, if set, is called (without waiting) on POST /v1/drain.
	Drain func()
	// Logf reports refused submissions; defaults to discarding.
	Logf func(format string, args ...any)
}

// Serve answers on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// ServeHTTP implements the protocol in the package doc.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, Result{Error: "use POST"})
		return
	}
	switch r.URL.Path {
	case "/v1/paths":
		s.servePaths(w, r)
	case "/v1/claims":
		s.serveClaim(w, r)
	case "/v1/drain":
		if s.Drain != nil {
			go s.Drain()
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		writeJSON(w, http.StatusNotFound, Result{Error: "unknown endpoint " + r.URL.Path + " (want /v1/paths, /v1/claims or /v1/drain)"})
	}
}

type pathsRequest struct {
	Paths []string `json:"paths"`
}

type pathsResponse struct {
	Results []Result `json:"results"`
}

func (s *Server) servePaths(w http.ResponseWriter, r *http.Request) {
	var req pathsRequest
	if err := decodeJSON(r.Body, 4<<20, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, Result{Error: "malformed request: " + err.Error() + ` (want {"paths": ["/nix/store/…"]})`})
		return
	}
	if len(req.Paths) == 0 || len(req.Paths) > MaxPaths {
		writeJSON(w, http.StatusBadRequest, Result{Error: fmt.Sprintf("want 1 to %d paths, got %d", MaxPaths, len(req.Paths))})
		return
	}
	// Check every path before logging any, so a typo fails the request
	// as a whole instead of half-applying it.
	for _, p := range req.Paths {
		if err := claim.ValidStorePath(p); err != nil {
			writeJSON(w, http.StatusBadRequest, Result{Subject: p, Error: "not a store path: " + err.Error()})
			return
		}
	}
	resp := pathsResponse{Results: make([]Result, len(req.Paths))}
	status := http.StatusOK
	for i, p := range req.Paths {
		res, st := s.addPath(r.Context(), p)
		resp.Results[i] = res
		status = worse(status, st)
	}
	writeJSON(w, status, resp)
}

func (s *Server) addPath(ctx context.Context, p string) (Result, int) {
	c, err := s.Store.Claim(ctx, p)
	if err != nil {
		s.logf("submit: %s: %v", p, err)
		return Result{Subject: p, Error: err.Error()}, http.StatusBadRequest
	}
	return s.add(ctx, c)
}

func (s *Server) add(ctx context.Context, c *claim.Claim) (Result, int) {
	res, err := s.Log.Add(ctx, c)
	switch {
	case errors.Is(err, buildlog.ErrConflict):
		s.logf("submit: refused %s: %v", c.Subject, err)
		return Result{Subject: c.Subject, Error: err.Error(), Conflict: true}, http.StatusConflict
	case err != nil:
		s.logf("submit: %s: %v", c.Subject, err)
		return Result{Subject: c.Subject, Error: err.Error()}, http.StatusServiceUnavailable
	}
	return Result{Subject: c.Subject, Index: res.Index, Duplicate: res.Duplicate}, http.StatusOK
}

func (s *Server) serveClaim(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, claim.MaxSize+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Result{Error: err.Error()})
		return
	}
	c, err := claim.Parse(b)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Result{Error: err.Error()})
		return
	}
	if c.Kind == claim.KindNix {
		writeJSON(w, http.StatusBadRequest, Result{Subject: c.Subject, Error: "nix claims are made by the daemon from the store: submit the path to /v1/paths instead"})
		return
	}
	res, st := s.add(r.Context(), c)
	writeJSON(w, st, res)
}

// worse orders statuses by what the client must do about them.
func worse(a, b int) int {
	rank := map[int]int{http.StatusOK: 0, http.StatusConflict: 1, http.StatusBadRequest: 2, http.StatusServiceUnavailable: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}
