package verdict

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/vouch-dev/vouch/claim"
)

// HTTPPath is where a running node serves Handler, so that `vouch verdict`
// can ask it when the node holds the index open.
const HTTPPath = "/api/verdict"

// Handler serves the verdicts of policy p over src (the node's own index:
// still a local lookup, never a remote one):
//
//	GET HTTPPath?kind=nix&subject=/nix/store/…-hello
//
// answers 200 with the Verdict as JSON whatever its outcome; 400 when kind
// or subject is missing or malformed; 405 for other methods; 500 when the
// index fails (the Verdict is then Insufficient and the error is in Reason).
func Handler(p *Policy, src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		kind := claim.Kind(q.Get("kind"))
		if kind == "" {
			kind = claim.KindNix
		}
		subject := q.Get("subject")
		if err := CheckSubject(kind, subject); err != nil {
			http.Error(w, "want ?kind=nix|nix-ca|oci&subject=…: "+err.Error(), http.StatusBadRequest)
			return
		}
		v, err := p.Decide(src, kind, subject)
		status := http.StatusOK
		if err != nil {
			status = http.StatusInternalServerError
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	})
}

// CheckSubject checks that subject is well formed for kind, as the subject
// of a claim must be.
func CheckSubject(kind claim.Kind, subject string) error {
	switch kind {
	case claim.KindNix:
		return claim.ValidStorePath(subject)
	case claim.KindOCI:
		_, _, _, _, err := claim.ParseOCISubject(subject)
		return err
	case claim.KindNixCA:
		// The claim package checks output ids only as part of a claim:
		// give it one whose other fields are valid.
		probe := &claim.Claim{Kind: kind, Subject: subject, NarSize: 1,
			OutPath: claim.StoreDir + "/" + strings.Repeat("0", 32) + "-probe", NarHash: "sha256:" + strings.Repeat("0", 52)}
		return probe.Validate()
	}
	return fmt.Errorf("unknown kind %q (want nix, nix-ca or oci)", kind)
}
