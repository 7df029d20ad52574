package oci

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/vouch-dev/vouch/keys"
)

const testDigest = "sha256:70d200b8ceb47928446457369af3d13b34568749e596f166037ce0586cc9f3a4"

func signedEnvelope(t testing.TB) ([]byte, []TrustedKey) {
	w := newWorld(t, "", "alice")
	d, _ := name.NewDigest("registry.example/app@" + testDigest)
	env, err := Sign(context.Background(), w.ids["alice"], w.build(d, "image"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(env)
	pub := w.ids["alice"].Public()
	return raw, []TrustedKey{{KeyID: keys.KeyID(pub), Public: pub}}
}

func TestOpenRoundTrip(t *testing.T) {
	raw, trusted := signedEnvelope(t)
	a, err := Open(raw, testDigest, trusted)
	if err != nil {
		t.Fatal(err)
	}
	if a.Claim.Digest != testDigest || a.SignedBy[0] != trusted[0].KeyID || a.Statement.Predicate.Builder.Name != "alice" {
		t.Fatalf("%+v", a)
	}
	// Any change to the envelope's JSON shape is refused, not skipped.
	for _, bad := range []string{
		strings.Replace(string(raw), `"payloadType":"application/vnd.in-toto+json"`, `"payloadType":"text/plain"`, 1),
		strings.Replace(string(raw), `{"payloadType"`, `{"extra":1,"payloadType"`, 1),
		string(raw) + "{}",
	} {
		_, err := Open([]byte(bad), testDigest, trusted)
		var rj *RejectedError
		if !errors.As(err, &rj) {
			t.Errorf("accepted or wrong error %v for %.60s", err, bad)
		}
	}
}

func FuzzOpen(f *testing.F) {
	raw, trusted := signedEnvelope(f)
	f.Add(raw)
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Open(b, testDigest, trusted)
		if err != nil {
			var rj *RejectedError
			if !errors.As(err, &rj) {
				t.Fatalf("non-rejection error %v", err)
			}
			return
		}
		if a.Claim == nil || a.Claim.Validate() != nil || a.Claim.Digest != testDigest {
			t.Fatalf("accepted an attestation without a valid claim: %+v", a)
		}
	})
}

func FuzzParseStatement(f *testing.F) {
	raw, _ := signedEnvelope(f)
	var env struct{ Payload []byte }
	json.Unmarshal(raw, &env)
	f.Add(env.Payload)
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStatement(b)
		if err != nil {
			return
		}
		again, _ := json.Marshal(st)
		if _, err := ParseStatement(again); err != nil {
			t.Fatalf("re-encoded statement refused: %v", err)
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	raw, trusted := signedEnvelope(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Open(raw, testDigest, trusted); err != nil {
			b.Fatal(err)
		}
	}
}
