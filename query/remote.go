package query

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

// NodePath is where a node answers who it is (its NodeInfo without the
// secret), stamped like every answer: the cheap first question a command
// asks before it relies on the node.
const NodePath = "/api/node"

// remote answers from the node recorded in the state directory, after
// checking every answer comes from that node under this config's policy.
type remote struct {
	info   *NodeInfo
	policy string // the fingerprint of the command's config
	base   string // http://host:port
	client *http.Client
}

// maxAnswer bounds what is read from a node (a report with --all is large).
const maxAnswer = 1 << 30

// dialNode checks that the node nf describes runs under cfg's policy and
// answers as the holder of nf's secret.
func dialNode(cfg *config.Config, nf *NodeInfo) (*remote, error) {
	want := cfg.PolicyFingerprint()
	who := fmt.Sprintf("the node at %s (pid %d", nf.Listen, nf.PID)
	if nf.Config != "" {
		who += ", config " + nf.Config
	}
	who += ")"
	if nf.Policy != want {
		return nil, fmt.Errorf("%s serves %s under another policy (%s) than %s (%s): restart it with --config %s, or stop it so that this command reads the index itself",
			who, cfg.State, nf.Policy, cfg.Path, want, cfg.Path)
	}
	host, port, err := net.SplitHostPort(nf.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s: listen address %q: %w", NodeFile(cfg.State), nf.Listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // it listens on every address, loopback included
	}
	r := &remote{info: nf, policy: want, base: "http://" + net.JoinHostPort(host, port), client: &http.Client{Timeout: 5 * time.Second}}
	var probe NodeInfo
	if err := r.get(NodePath, nil, &probe); err != nil {
		return nil, fmt.Errorf("%s, recorded in %s, does not answer as that node: %v", who, NodeFile(cfg.State), err)
	}
	r.client.Timeout = 5 * time.Minute // a report of a large index takes a while
	return r, nil
}

// get asks the node and decodes its JSON answer into out, after checking
// the answer's policy and proof.
func (r *remote) get(path string, query url.Values, out any) error {
	challenge := make([]byte, 16)
	if _, err := rand.Read(challenge); err != nil {
		return err
	}
	c := hex.EncodeToString(challenge)
	if query == nil {
		query = url.Values{}
	}
	query.Set("policy", r.policy)
	u := r.base + path + "?" + query.Encode()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set(HeaderChallenge, c)
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, mac := resp.Header.Get(HeaderPolicy), resp.Header.Get(HeaderProof)
	switch {
	case got == "":
		return fmt.Errorf("GET %s: %s, without a policy fingerprint: not a vouch node that serves this state", u, resp.Status)
	case got != r.policy:
		return fmt.Errorf("GET %s: the node decides under policy %s, not %s", u, got, r.policy)
	case !hmac.Equal([]byte(mac), []byte(proof(r.info.Secret, c, r.policy))):
		return fmt.Errorf("GET %s: the answer does not prove it comes from the node that wrote %s (another process listens there now?)", u, "node.json")
	}
	body := io.LimitReader(resp.Body, maxAnswer)
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(body, 1024))
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

func (r *remote) Verdict(kind claim.Kind, subject string) (verdict.Verdict, error) {
	var v verdict.Verdict
	err := r.get(verdict.HTTPPath, url.Values{"kind": {string(kind)}, "subject": {subject}}, &v)
	return v, err
}

func (r *remote) Report(opt report.Options) (*report.Report, error) {
	rep := &report.Report{}
	q := url.Values{"limit": {strconv.Itoa(opt.ListLimit)}, "all": {strconv.FormatBool(opt.AllSubjects)}}
	if err := r.get(report.HTTPPath, q, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

func (r *remote) Evidence() ([]*index.Evidence, error) {
	var evs []*index.Evidence
	if err := r.get(EvidencePath, nil, &evs); err != nil {
		return nil, err
	}
	return evs, nil
}

func (r *remote) EvidenceByID(id string) (*index.Evidence, error) {
	evs, err := r.Evidence()
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		if e.ID == id {
			return e, nil
		}
	}
	return nil, fmt.Errorf("no evidence with id %s (vouch evidence lists them)", id)
}

func (r *remote) Origin() string {
	return fmt.Sprintf("the index is in use by the node at %s (pid %d), which serves this state under this policy: these are its answers", r.info.Listen, r.info.PID)
}

func (r *remote) Close() error { return nil }
