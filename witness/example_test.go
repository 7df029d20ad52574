package witness

import (
	"testing"
	"time"
)

// TestDocExample replays the worked example of the package doc with the
// same keys, entries and clock, and checks every value the doc shows.
func TestDocExample(t *testing.T) {
	alice := identityFromSeed(t, "alice", 1)
	bob := &memLog{id: identityFromSeed(t, "bob", 2)}
	at := time.Unix(1735922765, 0)
	tw := startWitness(t, t.TempDir(), alice, func() time.Time { return at }, bob.id)
	bob.append(3)
	if code, answer, _ := tw.post(t, requestBody(0, nil, bob.checkpoint(t, 1))); code != 200 {
		t.Fatalf("%d %q", code, answer)
	}
	const (
		witnessKey = "alice+39bfa20e+BIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c"
		logKey     = "bob+9ebaaa42+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU"
		request    = "old 1\n" +
			"G79xkq/sCUKlMRqwJ3f2W8JbMV712fZ1bFsURz37EMg=\n" +
			"7rpF3SAmvY7AYUYQXo/E/MQEMKMtooTgHExmfLiaoEw=\n" +
			"\n" +
			"bob\n" +
			"3\n" +
			"aIW0CpGE+d/m/aOKs7B4KD22uZCV3s0zWvSU+VJ40fs=\n" +
			"\n" +
			"— bob nrqqQvLR1wZNR4BFwqN7j9+0Y2tEPF07EC//aM/bXbetT2neDgIyWMA4Qi0np3IxVZ124lIaLBGmyY2yjuVpVMWrcA8=\n"
		response = "— alice Ob+iDgAAAABneBRNs39Ultk7Oh0a6PIss8VW39TAMtjFOZXc4OeqEuSIxIg/37m8shTZ/VeC19szLw9/zM1jDr3L0sxmtf38neSCAg==\n"
	)
	if tw.VerifierKey() != witnessKey || bob.id.VerifierKey != logKey {
		t.Fatalf("keys %s %s", tw.VerifierKey(), bob.id.VerifierKey)
	}
	if body := string(requestBody(1, bob.proof(t, 1, 3), bob.checkpoint(t, 3))); body != request {
		t.Fatalf("request:\n%s", body)
	}
	if code, answer, _ := tw.post(t, []byte("old 0"+request[len("old 1"):])); code != 409 || answer != "1\n" {
		t.Fatalf("old 0: %d %q", code, answer)
	}
	if code, answer, ctype := tw.post(t, []byte(request)); code != 200 || answer != response || ctype != "text/plain; charset=utf-8" {
		t.Fatalf("%d %s:\n%s", code, ctype, answer)
	}
	tw.checkCosigned(t, bob.checkpoint(t, 3), response, at)
}
