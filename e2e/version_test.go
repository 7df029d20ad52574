package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestVersionEverywhere: `vouch version`, `vouch --version` and a running
// node's /metrics all name the same build, and a binary that carries a
// revision carries this checkout's.
func TestVersionEverywhere(t *testing.T) {
	text, code := vouch(t, "version")
	if code != 0 || !strings.HasPrefix(text, "vouch ") {
		t.Fatalf("vouch version: exit %d\n%s", code, text)
	}
	if other, code := vouch(t, "--version"); code != 0 || other != text {
		t.Errorf("vouch --version: exit %d, %q; want %q as vouch version prints", code, other, text)
	}
	out, code := vouch(t, "version", "--json")
	var info struct {
		Version, Revision, Time, Go string
		Modified                    bool
	}
	if err := json.Unmarshal([]byte(out), &info); code != 0 || err != nil {
		t.Fatalf("vouch version --json: exit %d, %v\n%s", code, err, out)
	}
	if info.Version == "" || info.Go == "" || !strings.Contains(text, info.Version) {
		t.Errorf("vouch version --json = %+v; the text form is %q", info, text)
	}
	if info.Revision != "" {
		head, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err == nil && strings.TrimSpace(string(head)) != info.Revision {
			t.Errorf("the binary says revision %s, the checkout is at %s", info.Revision, head)
		}
	}

	d := startDaemon(t, t.TempDir(), "")
	body, err := httpGet("http://" + d.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`vouch_build_info{goversion=%q,modified="%t",revision=%q,vcs_time=%q,version=%q} 1`,
		info.Go, info.Modified, info.Revision, info.Time, info.Version)
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s:\n%s", want, body)
	}
}
