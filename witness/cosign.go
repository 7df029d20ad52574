package witness

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/keys"
)

// CosignatureVerifierKey returns the verifier key of the cosignatures id
// makes as a witness: "name+hex8+base64(0x04‖pub)", the C2SP
// tlog-cosignature form. It is what users list to require this node's
// cosignature, and what a log passes to tessera.NewWitness.
func CosignatureVerifierKey(id *keys.Identity) (string, error) {
	if id == nil {
		return "", errors.New("witness: no identity")
	}
	vkey, err := fnote.VKeyToCosignatureV1(id.VerifierKey)
	if err != nil {
		return "", fmt.Errorf("witness: cosignature key of %q: %w", id.Name, err)
	}
	return vkey, nil
}

// cosigner is a note.Signer producing cosignature/v1 signatures with the
// time from a clock. (formats' NewSignerForCosignatureV1 makes the same
// signatures but always reads time.Now.)
//
// The signed message is
//
//	cosignature/v1
//	time <POSIX seconds>
//	<the checkpoint text>
//
// and the signature is the 8-byte big-endian timestamp followed by the
// Ed25519 signature. The key hash and the verifier key come from formats,
// so they cannot drift from what clients verify against.
type cosigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
	now  func() time.Time
}

func newCosigner(id *keys.Identity, now func() time.Time) (*cosigner, string, error) {
	vkey, err := CosignatureVerifierKey(id)
	if err != nil {
		return nil, "", err
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("witness: %w", err)
	}
	return &cosigner{name: v.Name(), hash: v.KeyHash(), key: id.Private, now: now}, vkey, nil
}

// NewCosigner returns a signer making id's cosignature/v1 signatures with
// the time now gives, and the verifier key that checks them. The witness
// server uses one with the wall clock; tests of how followers judge a
// cosignature's age use fixed clocks.
func NewCosigner(id *keys.Identity, now func() time.Time) (note.Signer, string, error) {
	return newCosigner(id, now)
}

func (c *cosigner) Name() string    { return c.name }
func (c *cosigner) KeyHash() uint32 { return c.hash }

func (c *cosigner) Sign(text []byte) ([]byte, error) {
	t := c.now().Unix()
	if t < 0 {
		return nil, fmt.Errorf("witness: the clock reads %v, before 1970; refusing to cosign", c.now())
	}
	msg := make([]byte, 0, 40+len(text))
	msg = append(msg, "cosignature/v1\ntime "...)
	msg = strconv.AppendInt(msg, t, 10)
	msg = append(msg, '\n')
	msg = append(msg, text...)
	sig := binary.BigEndian.AppendUint64(make([]byte, 0, 8+ed25519.SignatureSize), uint64(t))
	return append(sig, ed25519.Sign(c.key, msg)...), nil
}

// signatureLines returns just the signature lines that signing text with
// s adds: what an add-checkpoint response carries.
func signatureLines(text string, s note.Signer) ([]byte, error) {
	signed, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		return nil, err
	}
	// note.Sign writes the text, a blank line, then the signature lines.
	return signed[len(text)+1:], nil
}
