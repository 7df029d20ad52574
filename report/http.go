package report

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/vouch-dev/vouch/verdict"
)

// HTTPPath is where a running node serves Handler, so that `vouch report`
// can ask it when the node holds the index open.
const HTTPPath = "/api/report"

// Handler serves the report of r under policy p as JSON:
//
//	GET HTTPPath?limit=20&all=0
//
// limit bounds each list (Options.ListLimit; default 20, 0 for no bound),
// all=1 adds every subject (Options.AllSubjects). It answers 400 for a bad
// parameter, 405 for methods other than GET and HEAD, 500 when the index
// fails.
func Handler(p *verdict.Policy, r Reader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		q := req.URL.Query()
		opt := Options{ListLimit: 20}
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				http.Error(w, "limit must be a number ≥ 0", http.StatusBadRequest)
				return
			}
			opt.ListLimit = n
		}
		switch q.Get("all") {
		case "", "0", "false":
		case "1", "true":
			opt.AllSubjects = true
		default:
			http.Error(w, "all must be 0 or 1", http.StatusBadRequest)
			return
		}
		rep, err := Build(r, p, opt)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(rep)
	})
}
