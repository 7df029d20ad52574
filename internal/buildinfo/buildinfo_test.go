package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// stamped is what `go version -m` prints for a binary built with VCS
// stamping from a tree with uncommitted changes.
// (debug.ParseBuildInfo leaves GoVersion to the caller.)
const stamped = `path	github.com/vouch-dev/vouch/cmd/vouch
mod	github.com/vouch-dev/vouch	v0.0.0-20261206120000-0123456789ab+dirty
build	-buildmode=exe
build	vcs=git
build	vcs.revision=0123456789abcdef0123456789abcdef01234567
build	vcs.time=2026-12-06T12:00:00Z
build	vcs.modified=true
`

func TestFromBuildInfoReadsTheVCSStamp(t *testing.T) {
	bi := parse(t, stamped)
	i := FromBuildInfo(bi)
	want := Info{Version: "v0.0.0-20261206120000-0123456789ab+dirty", Revision: "0123456789abcdef0123456789abcdef01234567",
		Time: "2026-12-06T12:00:00Z", Modified: true, GoVersion: "go1.26.8"}
	if i != want {
		t.Fatalf("FromBuildInfo = %+v, want %+v", i, want)
	}
	if s := i.String(); s != "vouch v0.0.0-20261206120000-0123456789ab+dirty (revision 0123456789abcdef0123456789abcdef01234567, 2026-12-06T12:00:00Z, with uncommitted changes) go1.26.8" {
		t.Errorf("String = %q", s)
	}
	if s := i.Short(); s != "v0.0.0-20261206120000-0123456789ab+dirty 0123456789ab+dirty" {
		t.Errorf("Short = %q", s)
	}
}

func TestUnstampedBuildSaysSo(t *testing.T) {
	bi := parse(t, "path\tgithub.com/vouch-dev/vouch/cmd/vouch\nmod\tgithub.com/vouch-dev/vouch\t(devel)\t\n")
	i := FromBuildInfo(bi)
	if i.Revision != "" || i.Modified || i.Version != "(devel)" {
		t.Fatalf("FromBuildInfo = %+v, want (devel) with no revision", i)
	}
	if s := i.String(); !strings.Contains(s, "revision unknown") {
		t.Errorf("String = %q, want it to say the revision is unknown", s)
	}
	if s := i.Short(); s != "(devel)" {
		t.Errorf("Short = %q", s)
	}
}

func TestCollectorExportsTheBuildAsLabels(t *testing.T) {
	bi := parse(t, stamped)
	want := `# HELP vouch_build_info Which vouch this node runs: module version, VCS revision and time, whether the tree was modified, Go version. Always 1.
# TYPE vouch_build_info gauge
vouch_build_info{goversion="go1.26.8",modified="true",revision="0123456789abcdef0123456789abcdef01234567",vcs_time="2026-12-06T12:00:00Z",version="v0.0.0-20261206120000-0123456789ab+dirty"} 1
`
	if err := testutil.CollectAndCompare(FromBuildInfo(bi).Collector(), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestReadDescribesThisBinary(t *testing.T) {
	i := Read()
	if i.GoVersion == "" || i.Version == "" {
		t.Fatalf("Read = %+v: a test binary has build information", i)
	}
}

func parse(t *testing.T, text string) *debug.BuildInfo {
	t.Helper()
	bi, err := debug.ParseBuildInfo(text)
	if err != nil {
		t.Fatal(err)
	}
	bi.GoVersion = "go1.26.8"
	return bi
}
