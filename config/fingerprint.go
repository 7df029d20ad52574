package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// PolicyFingerprint identifies the trust policy the config describes:
// "sha256:" and the hex SHA-256 of a canonical JSON encoding of everything
// that decides what a verdict is or which checkpoints the follower
// believes — the [[builder]] list in order (name, verifier key, log URL,
// operator, weight; two names for one key are two entries), the [quorum]
// section, the [[group]] and [[exception]] lists and the [[witness]] list — after defaults are applied, so that
// writing a default out does not change it. Comments, formatting, the
// listen address, upstreams and other settings that do not change a
// verdict do not enter it.
//
// A node records it beside its state and returns it with every answer, so
// that a command run with a config can tell whether a running node decides
// under the same policy before it prints that node's answer.
func (c *Config) PolicyFingerprint() string {
	d := *c
	d.Builders = append([]Builder(nil), c.Builders...)
	d.Defaults()
	for i := range d.Builders {
		d.Builders[i].VKey = strings.TrimSpace(d.Builders[i].VKey)
	}
	// Whole sections are encoded, not picked fields: a field added to one
	// of them later enters the fingerprint without anyone remembering to.
	canonical := struct {
		Version    string      `json:"version"`
		Builders   []Builder   `json:"builders"`
		Quorum     Quorum      `json:"quorum"`
		Groups     []Group     `json:"groups,omitempty"`
		Exceptions []Exception `json:"exceptions,omitempty"`
		Witnesses  []Witness   `json:"witnesses"`
	}{"vouch-policy/v1", d.Builders, d.Quorum, d.Groups, d.Exceptions, d.Witnesses}
	b, err := json.Marshal(canonical)
	if err != nil {
		panic("config: encoding the policy: " + err.Error()) // plain strings and numbers only
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
