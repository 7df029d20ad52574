// Package buildinfo says which vouch a binary is: the module version and the
// version-control state the go command stamped into it (runtime/debug's
// build information). `vouch version` prints it, /metrics exports it as the
// vouch_build_info gauge and the dashboard shows it in its footer, so an
// operator can tell from outside which commit a node runs.
//
// The go command records the revision only when it builds inside a
// repository it recognises and -buildvcs is not false; it does not
// recognise a git worktree (whose .git is a file). Such a binary reports
// its revision as unknown rather than guessing. scripts/build-deb.sh builds
// from a fresh clone of the commit so that packages always carry it.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Info is what a binary knows about its own build.
type Info struct {
	// Version is the main module's version: a release tag, a
	// pseudo-version the go command derived from the commit, or "(devel)".
	Version string `json:"version"`
	// Revision is the commit the binary was built from ("" if unknown).
	Revision string `json:"revision,omitempty"`
	// Time is the commit time, RFC 3339 ("" if unknown).
	Time string `json:"time,omitempty"`
	// Modified reports uncommitted changes in the tree it was built from.
	Modified bool `json:"modified"`
	// GoVersion is the toolchain that built it.
	GoVersion string `json:"go"`
}

// Read returns this binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "(unknown)", GoVersion: runtime.Version()}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts Info from the go command's build information.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the one-line form `vouch version` prints, for example
// "vouch v0.0.0-20261206120000-0123456789ab (revision 0123456789ab…, 2026-12-06T12:00:00Z) go1.26.8".
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vouch %s (", i.Version)
	if i.Revision == "" {
		b.WriteString("revision unknown: built without VCS information")
	} else {
		fmt.Fprintf(&b, "revision %s", i.Revision)
		if i.Time != "" {
			fmt.Fprintf(&b, ", %s", i.Time)
		}
		if i.Modified {
			b.WriteString(", with uncommitted changes")
		}
	}
	fmt.Fprintf(&b, ") %s", i.GoVersion)
	return b.String()
}

// Short is a compact form for page footers: the version and the first 12
// characters of the revision, "+dirty" when the tree was modified.
func (i Info) Short() string {
	s := i.Version
	if i.Revision != "" {
		r := i.Revision
		if len(r) > 12 {
			r = r[:12]
		}
		s += " " + r
		if i.Modified {
			s += "+dirty"
		}
	}
	return s
}

// Collector returns the vouch_build_info gauge: always 1, with the build
// information as labels (the convention of Prometheus' own *_build_info
// series), so dashboards can join it to a node's other series.
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vouch_build_info",
		Help: "Which vouch this node runs: module version, VCS revision and time, whether the tree was modified, Go version. Always 1.",
		ConstLabels: prometheus.Labels{
			"version":   i.Version,
			"revision":  i.Revision,
			"vcs_time":  i.Time,
			"modified":  fmt.Sprint(i.Modified),
			"goversion": i.GoVersion,
		},
	})
	g.Set(1)
	return g
}
