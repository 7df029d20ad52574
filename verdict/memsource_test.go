package verdict

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
)

// memSource is an in-memory Source: one real RFC 6962 tree per builder
// (golang.org/x/mod/sumdb/tlog) over the canonical claim encodings, so the
// inclusion proofs Decide attaches can be checked like a follower's.
type memSource struct {
	logs        map[string]*memLog
	bySubject   map[string][]Entry
	compromised map[string]bool
	failClaims  error // returned by Claims when set
	failProofs  error // returned by InclusionProof when set
}

type memLog struct {
	hashes []tlog.Hash // stored hashes, as tlog.StoredHashes lays them out
	n      int64       // number of records
}

func (l *memLog) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(l.hashes)) {
			return nil, fmt.Errorf("hash %d not stored", x)
		}
		out[i] = l.hashes[x]
	}
	return out, nil
}

func newMemSource() *memSource {
	return &memSource{logs: map[string]*memLog{}, bySubject: map[string][]Entry{}, compromised: map[string]bool{}}
}

// add appends c to builder's log and indexes it.
func (s *memSource) add(builder string, c *claim.Claim) Entry {
	l := s.logs[builder]
	if l == nil {
		l = &memLog{}
		s.logs[builder] = l
	}
	data, err := c.Marshal()
	if err != nil {
		panic(err)
	}
	hs, err := tlog.StoredHashes(l.n, data, l)
	if err != nil {
		panic(err)
	}
	l.hashes = append(l.hashes, hs...)
	e := Entry{Builder: builder, Claim: c, Index: uint64(l.n)}
	l.n++
	s.bySubject[c.Key()] = append(s.bySubject[c.Key()], e)
	return e
}

// root is the tree hash of builder's log at its current size.
func (s *memSource) root(builder string) (int64, tlog.Hash) {
	l := s.logs[builder]
	h, err := tlog.TreeHash(l.n, l)
	if err != nil {
		panic(err)
	}
	return l.n, h
}

func (s *memSource) Claims(kind claim.Kind, subject string) ([]Entry, error) {
	if s.failClaims != nil {
		return nil, s.failClaims
	}
	return s.bySubject[string(kind)+" "+subject], nil
}

func (s *memSource) Compromised(builder string) bool { return s.compromised[builder] }

func (s *memSource) InclusionProof(builder string, index uint64) (uint64, [][]byte, error) {
	if s.failProofs != nil {
		return 0, nil, s.failProofs
	}
	l := s.logs[builder]
	if l == nil || int64(index) >= l.n {
		return 0, nil, fmt.Errorf("no entry %d in %s", index, builder)
	}
	p, err := tlog.ProveRecord(l.n, int64(index), l)
	if err != nil {
		return 0, nil, err
	}
	proof := make([][]byte, len(p))
	for i := range p {
		proof[i] = append([]byte(nil), p[i][:]...)
	}
	return uint64(l.n), proof, nil
}

// Claims for tests: one subject, outputs named by a letter.

const subjectHello = "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-hello"

// narHashFor gives each output letter its own valid nar-hash.
func narHashFor(output string) string {
	const nix32 = "0123456789abcdfghijklmnpqrsvwxyz"
	c := nix32[int(output[0])%len(nix32)]
	return "sha256:" + strings.Repeat(string(c), 52)
}

func nixClaim(subject, output string) *claim.Claim {
	return &claim.Claim{Kind: claim.KindNix, Subject: subject, NarHash: narHashFor(output), NarSize: 1024}
}

func names(votes []Vote) []string {
	out := []string{}
	for _, v := range votes {
		out = append(out, v.Builder)
	}
	return out
}

func sortedCopy(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}
