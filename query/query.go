// Package query answers the questions local commands (vouch verdict,
// report, evidence, verify oci, promote) ask about one config's state:
// verdicts, the reproducibility report and recorded evidence.
//
// # Where answers come from
//
// An answer comes from the follower index in the config's state directory
// (STATE/index.db), decided under the config's own policy, or — while a
// running node holds that index open — from that node, but only when the
// node provably holds this state and decides under this policy. Open
// chooses, in this order:
//
//  1. No STATE/index.db: an error saying to run `vouch sync --config FILE`
//     first. Nothing is asked over the network: an index that was never
//     synced must not turn into another node's opinion.
//  2. STATE/node.json exists (a node serving this state wrote it when it
//     started listening; see WriteNodeFile): ask the node at the address it
//     recorded, if the file's policy fingerprint equals the one computed
//     from the config the command was given. Every answer must carry, in
//     response headers, the same fingerprint and the random instance id
//     the file holds, which only the node that wrote the file knows; any
//     mismatch, or a node that does not answer, and the answer is refused.
//  3. Otherwise, or when step 2 refused: open the index directly. When that
//     fails too (a node holds it but is not the one in node.json, or runs
//     under another policy), the error says what was found and what to do:
//     restart the node with this config, or stop it so the command can read
//     the index itself.
//
// The configured listen address alone is never trusted: whatever answers
// on 127.0.0.1:8080 may be a node for another config, with other builders
// and another quorum, and its "trusted" is not this policy's.
//
// bbolt, the index's database, takes an exclusive flock for a writer and a
// shared one for a read-only open, so a read-only open cannot run beside a
// node either: asking the node is the only way while it runs.
//
// # The node's side
//
// A node serves Routes (verdicts, report, evidence, each stamped with the
// headers above) and writes STATE/node.json with WriteNodeFile once it
// listens. A request may carry ?policy=FINGERPRINT; a node under another
// policy then answers 409 Conflict instead of its own verdict, so even a
// client that forgot to check the header cannot print it.
package query

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

// Source answers questions about one config's state under its policy.
type Source interface {
	// Verdict decides (kind, subject), with the inclusion proofs of the
	// claims it rests on.
	Verdict(kind claim.Kind, subject string) (verdict.Verdict, error)
	// Report builds the reproducibility report.
	Report(opt report.Options) (*report.Report, error)
	// Evidence lists the recorded evidence of misbehaving logs.
	Evidence() ([]*index.Evidence, error)
	// EvidenceByID returns one piece of evidence, by the id Evidence lists.
	EvidenceByID(id string) (*index.Evidence, error)
	// Origin says where the answers come from, for a note to the user: ""
	// for the index itself, else which node answers.
	Origin() string
	// Close releases the index or the connection.
	Close() error
}

// ErrNoIndex is wrapped by Open's error when the state directory has no
// follower index yet.
var ErrNoIndex = errors.New("no follower index")

// IndexPath is the follower index of a state directory.
func IndexPath(state string) string { return filepath.Join(state, "index.db") }

// Open returns the Source for cfg: its index, or the running node that
// provably holds it (see the package doc). Close it when done.
func Open(cfg *config.Config) (Source, error) {
	if !exists(IndexPath(cfg.State)) {
		return nil, fmt.Errorf("%w at %s yet: run vouch sync --config %s (or vouch serve --config %s) first", ErrNoIndex, IndexPath(cfg.State), cfg.Path, cfg.Path)
	}
	policy, err := verdict.NewPolicy(cfg)
	if err != nil {
		return nil, err
	}
	var remoteErr error
	if nf, err := ReadNodeFile(cfg.State); err == nil {
		src, err := dialNode(cfg, nf)
		if err == nil {
			return src, nil
		}
		remoteErr = err
	} else if !errors.Is(err, os.ErrNotExist) {
		remoteErr = err
	}
	src, localErr := openLocal(cfg, policy)
	if localErr == nil {
		return src, nil
	}
	if remoteErr == nil {
		return nil, fmt.Errorf("%v; no node recorded in %s answers for this state, so nothing else is asked", localErr, NodeFile(cfg.State))
	}
	return nil, fmt.Errorf("%v; reading the index directly failed too: %v", remoteErr, localErr)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
