package submit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/vouch-dev/vouch/claim"
)

// Client talks to a daemon's submit socket.
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{Socket: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// ErrUnavailable wraps errors reaching the daemon: it is not running, or the
// socket path is wrong. Nothing was logged.
var ErrUnavailable = errors.New("vouch daemon unavailable")

func (c *Client) post(ctx context.Context, path, ctype string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://vouch"+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.http.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("%w at %s: %v (is `vouch serve` running with this state directory? see --socket)", ErrUnavailable, c.Socket, err)
		}
		return 0, fmt.Errorf("%w at %s: %v", ErrUnavailable, c.Socket, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := decodeJSON(resp.Body, 64<<20, out); err != nil {
			return resp.StatusCode, fmt.Errorf("daemon answered %s with an unreadable body: %v", resp.Status, err)
		}
	}
	return resp.StatusCode, nil
}

// SubmitPaths asks the daemon to log the given store paths. The returned
// results are in the order of paths; check each Result.Error.
func (c *Client) SubmitPaths(ctx context.Context, paths []string) ([]Result, error) {
	body, _ := json.Marshal(pathsRequest{Paths: paths})
	var resp struct {
		pathsResponse
		Result
	}
	st, err := c.post(ctx, "/v1/paths", "application/json", body, &resp)
	if err != nil {
		return nil, err
	}
	if len(resp.Results) == 0 {
		return nil, fmt.Errorf("daemon refused the request (%d): %s", st, resp.Error)
	}
	return resp.Results, nil
}

// Submit asks the daemon to log a claim the daemon cannot compute itself
// (kinds oci and nix-ca). It returns the log index once the claim is
// durable; duplicate is true if an agreeing claim was already logged.
func (c *Client) Submit(ctx context.Context, cl *claim.Claim) (index uint64, duplicate bool, err error) {
	b, err := cl.Marshal()
	if err != nil {
		return 0, false, err
	}
	var res Result
	st, err := c.post(ctx, "/v1/claims", "text/plain; charset=utf-8", b, &res)
	if err != nil {
		return 0, false, err
	}
	if st != http.StatusOK || res.Error != "" {
		return 0, false, fmt.Errorf("daemon refused the claim (%d): %s", st, res.Error)
	}
	return res.Index, res.Duplicate, nil
}

// Drain asks the daemon to drain the hook spool now. It does not wait.
func (c *Client) Drain(ctx context.Context) error {
	_, err := c.post(ctx, "/v1/drain", "text/plain", nil, nil)
	return err
}

func decodeJSON(r io.Reader, limit int64, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
