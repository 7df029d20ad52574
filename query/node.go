package query

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

// EvidencePath is where a node serves the evidence its index holds, as a
// JSON array of index.Evidence (what `vouch evidence --json` prints).
const EvidencePath = "/api/evidence"

// The headers that tie an answer to the node recorded in a state
// directory. A request carries a fresh random challenge; the node answers
// with its policy fingerprint and an HMAC-SHA256, keyed with the secret
// in its node.json, over the challenge and that fingerprint. Only a
// process that can read the state directory knows the secret, so a node
// for another state directory cannot produce the proof, and a node under
// another policy cannot produce it for this policy.
const (
	HeaderPolicy    = "Vouch-Policy"
	HeaderChallenge = "Vouch-Challenge"
	HeaderProof     = "Vouch-Proof"
)

// NodeInfo is STATE/node.json: which node serves a state directory.
type NodeInfo struct {
	Listen  string    `json:"listen"`           // the address the node listens on
	PID     int       `json:"pid"`              // its process id, for messages
	Config  string    `json:"config,omitempty"` // its config file, for messages
	Store   string    `json:"store,omitempty"`  // the Nix store it logs from (vouch submit --closure reads the same one)
	Policy  string    `json:"policy"`           // config.PolicyFingerprint of its config
	Started time.Time `json:"started"`
	// Secret is random, new at each start: the key of HeaderProof.
	Secret string `json:"secret,omitempty"`
}

// NodeFile is where a node serving state records its NodeInfo.
func NodeFile(state string) string { return filepath.Join(state, "node.json") }

// NewNodeInfo returns the NodeInfo of a node about to serve cfg, with a
// fresh secret; Listen is set once it listens.
func NewNodeInfo(cfg *config.Config) (*NodeInfo, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return &NodeInfo{PID: os.Getpid(), Config: cfg.Path, Store: cfg.Store, Policy: cfg.PolicyFingerprint(), Started: time.Now().UTC(), Secret: hex.EncodeToString(secret)}, nil
}

// WriteNodeFile records info in state (mode 0600, replaced atomically) and
// returns a function that removes it again if it is still this node's.
func WriteNodeFile(state string, info *NodeInfo) (remove func(), err error) {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	path := NodeFile(state)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return func() {
		if cur, err := ReadNodeFile(state); err == nil && cur.Secret == info.Secret {
			os.Remove(path)
		}
	}, nil
}

// ReadNodeFile reads STATE/node.json; the error wraps os.ErrNotExist when
// no node recorded itself there.
func ReadNodeFile(state string) (*NodeInfo, error) {
	b, err := os.ReadFile(NodeFile(state))
	if err != nil {
		return nil, err
	}
	info := &NodeInfo{}
	if err := json.Unmarshal(b, info); err != nil {
		return nil, fmt.Errorf("%s: %w", NodeFile(state), err)
	}
	if info.Listen == "" || info.Policy == "" || info.Secret == "" {
		return nil, fmt.Errorf("%s lacks the listen address, policy or secret", NodeFile(state))
	}
	return info, nil
}

// proof is the HeaderProof for a challenge under policy.
func proof(secret, challenge, policy string) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "vouch-node-proof/v1\n%s\n%s\n", challenge, policy)
	return hex.EncodeToString(m.Sum(nil))
}

// Routes serves, on mux, what local commands ask a node that holds the
// index: verdict.HTTPPath, report.HTTPPath, EvidencePath and NodePath, answered from
// idx under policy, each stamped as the package doc describes.
func Routes(mux *http.ServeMux, info *NodeInfo, policy *verdict.Policy, idx *index.Index) {
	mux.Handle(verdict.HTTPPath, stamp(info, verdict.Handler(policy, idx)))
	mux.Handle(report.HTTPPath, stamp(info, report.Handler(policy, idx)))
	mux.Handle(EvidencePath, stamp(info, evidenceHandler(idx)))
	mux.Handle(NodePath, stamp(info, nodeHandler(info)))
}

// nodeHandler serves GET NodePath: info without its secret.
func nodeHandler(info *NodeInfo) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		public := *info
		public.Secret = ""
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(public)
	})
}

// stamp adds the policy fingerprint and the proof to h's answers, and
// refuses a request that names another policy.
func stamp(info *NodeInfo, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderPolicy, info.Policy)
		if c := r.Header.Get(HeaderChallenge); c != "" {
			w.Header().Set(HeaderProof, proof(info.Secret, c, info.Policy))
		}
		if want := r.URL.Query().Get("policy"); want != "" && want != info.Policy {
			http.Error(w, fmt.Sprintf("this node decides under policy %s, not %s: start it with the config you asked with", info.Policy, want), http.StatusConflict)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// evidenceHandler serves GET EvidencePath: every piece of evidence idx
// holds, as JSON.
func evidenceHandler(idx *index.Index) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		evs, err := idx.Evidence()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if evs == nil {
			evs = []*index.Evidence{}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(evs)
	})
}
