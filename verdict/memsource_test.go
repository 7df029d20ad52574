package verdict

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/memtlog"
)

// memSource is an in-memory Source: one real RFC 6962 tree per builder
// (golang.org/x/mod/sumdb/tlog) over the canonical claim encodings, so the
// inclusion proofs Decide attaches can be checked like a follower's.
type memSource struct {
	logs        map[string]*memtlog.Tree
	bySubject   map[string][]Entry
	compromised map[string]bool
	failClaims  error // returned by Claims when set
	failProofs  error // returned by InclusionProof when set
}

func newMemSource() *memSource {
	return &memSource{logs: map[string]*memtlog.Tree{}, bySubject: map[string][]Entry{}, compromised: map[string]bool{}}
}

// add appends c to builder's log and indexes it.
func (s *memSource) add(builder string, c *claim.Claim) Entry {
	l := s.logs[builder]
	if l == nil {
		l = &memtlog.Tree{}
		s.logs[builder] = l
	}
	data, err := c.Marshal()
	if err != nil {
		panic(err)
	}
	e := Entry{Builder: builder, Claim: c, Index: uint64(l.N())}
	l.Add(data)
	s.bySubject[c.Key()] = append(s.bySubject[c.Key()], e)
	return e
}

// root is the tree hash of builder's log at its current size.
func (s *memSource) root(builder string) (int64, tlog.Hash) {
	l := s.logs[builder]
	h, err := l.Root(l.N())
	if err != nil {
		panic(err)
	}
	return l.N(), h
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
	if l == nil || int64(index) >= l.N() {
		return 0, nil, fmt.Errorf("no entry %d in %s", index, builder)
	}
	p, err := tlog.ProveRecord(l.N(), int64(index), l)
	if err != nil {
		return 0, nil, err
	}
	proof := make([][]byte, len(p))
	for i := range p {
		proof[i] = append([]byte(nil), p[i][:]...)
	}
	return uint64(l.N()), proof, nil
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
