// Package dashboard is a node's web dashboard and its JSON API: what the
// follower index says about the builders it follows, readable in a browser
// (a phone too) and by scripts.
//
// New returns an http.Handler the node mounts at / of its listener. It
// answers only the paths below and 404s everything else, so the routes of
// the substituter (/nix-cache-info, /*.narinfo, /nar/…, /realisations/…)
// and the builder log (/log/…) stay with their owners.
//
//	page                      JSON                           what
//	/                         /api/v1/overview               numbers, plots, log health, alarms
//	/subjects?after=C         /api/v1/subjects?after=C       every subject, a page at a time
//	/search?q=Q               /api/v1/search?q=Q             store path, subject, hash part, digest
//	/subject?kind=K&s=S       /api/v1/subject?kind=K&s=S     claims, inclusion proofs, verdict
//	/conflicts?page=N         /api/v1/conflicts?page=N       subjects with two or more outputs
//	/builders/NAME            /api/v1/builders[/NAME]        log health, agreement, evidence
//	/evidence/ID              /api/v1/evidence[/ID]          one alarm, checked with the builder's key
//	/evidence/ID.json                                        the exportable evidence file
//
// docs/http-api.md shows every JSON response with an example.
//
// # Numbers and their freshness
//
// The overview's numbers (verdict counts, agreement, reproducibility by
// day) and the conflicts list need a walk over every subject: about 60 µs a
// subject, a quarter of a minute for 250,000 subjects. They come from a
// snapshot built by such a walk (report.Build, so they are exactly the
// numbers of `vouch report` and of `vouch verdict` for each subject). A
// request that finds the index changed since the snapshot (a log grew or
// was marked compromised) starts a new walk in the background and waits
// for it at most FreshWait; a small index is therefore always shown fresh
// and a large one stays fast, its pages saying how old their numbers are.
// Everything else is read from the index on each request: a subject's
// claims and verdict (Policy.Decide), the subjects list (a cursor over
// index.Subjects), log health (index.Stats) and evidence.
//
// The snapshot also keeps what search needs to find a subject by a hash
// part (nix store paths, nix-ca output paths) or by an output (NAR hash,
// OCI manifest digest), which the index does not key by: 16 bytes for each
// such value (16–48 MB for 10^6 subjects), never the strings themselves.
//
// # Reproducibility by day
//
// A subject is dated by the earliest time among its claims (claims carry
// the time their builder logged them; subjects with no time are not
// plotted). Each day counts the subjects first logged then as reproduced
// (one output, claimed by two or more builders), disagreeing (two or more
// outputs) or built by one builder only.
//
// # Safety
//
// Every page is rendered by html/template, so subjects, builder names and
// claim fields are escaped; the SVG plots are drawn on the server with
// every text escaped. Pages carry a Content-Security-Policy that allows no
// script and no resource from elsewhere: the stylesheet is embedded in the
// binary and served from /assets/, so the dashboard works offline. A panic
// in a handler answers 500 with a short message and is logged; query
// parameters are bounded in length and page sizes in count.
package dashboard
