package config

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/keys"
)

func vkey(t *testing.T, name string) string {
	_, v, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseDefaults(t *testing.T) {
	a, b, c := vkey(t, "a"), vkey(t, "b"), vkey(t, "c")
	cfg, err := Parse([]byte(`
state = "/tmp/x"
[[builder]]
name = "a"
vkey = "` + a + `"
log = "http://127.0.0.1:1/log"
[[builder]]
name = "b"
vkey = "` + b + `"
log = "http://127.0.0.1:2/log/"
operator = "org"
[[builder]]
name = "c"
vkey = "` + c + `"
log = "http://127.0.0.1:3/log/"
operator = "org"
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Quorum.Min != 2 || cfg.Quorum.MinOperators != 1 || cfg.Quorum.OnConflict != "refuse" {
		t.Fatalf("quorum defaults %+v", cfg.Quorum)
	}
	if cfg.Builders[0].Log != "http://127.0.0.1:1/log/" || cfg.Builders[0].Operator != "a" || cfg.Builders[0].Weight != 1 {
		t.Fatalf("builder defaults %+v", cfg.Builders[0])
	}
	if cfg.Socket != "/tmp/x/vouch.sock" {
		t.Fatal(cfg.Socket)
	}
}

func TestValidationMessages(t *testing.T) {
	a, b := vkey(t, "a"), vkey(t, "b")
	cases := map[string]struct{ toml, want string }{
		"unknown key":    {`min-operator = 2`, "unknown key"},
		"duplicate name": {bld("a", a) + bld("a", b), "duplicate builder name"},
		"same key twice": {bld("a", a) + bld("b", rename(t, a, "b")), "same key"},
		"unreachable":    {bld("a", a) + bld("b", b) + "[quorum]\nmin = 3\n", "can never be met"},
		"operators":      {bld("a", a) + bld("b", b) + "[quorum]\nmin = 2\nmin-operators = 3\n", "min-operators = 3 can never be met"},
		"bad conflict":   {bld("a", a) + "[quorum]\non-conflict = \"vote\"\n", "on-conflict"},
		"bad vkey":       {bld("a", "nonsense"), "vkey"},
		"bad url":        {strings.Replace(bld("a", a), "http://", "ftp://", 1), "must be an http"},
		"bad duration":   {"[follow]\ninterval = \"often\"\n", "duration"},
	}
	for name, tc := range cases {
		_, err := Parse([]byte(tc.toml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}

// rename returns the same Ed25519 key as vk under another name.
func rename(t *testing.T, vk, name string) string {
	pub, err := keys.VerifierPublicKey(vk)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func bld(name, vkey string) string {
	return "[[builder]]\nname = \"" + name + "\"\nvkey = \"" + vkey + "\"\nlog = \"http://127.0.0.1:9/log/\"\n"
}

func TestNARCacheSize(t *testing.T) {
	for text, want := range map[string]Size{
		`max-size = 1048576`:  1 << 20,
		`max-size = "512MiB"`: 512 << 20,
		`max-size = "20GiB"`:  20 << 30,
		`max-size = "1 TB"`:   1e12,
		`max-size = "4096"`:   4096,
	} {
		c, err := Parse([]byte("state = \"/s\"\n[nar-cache]\n" + text + "\n"))
		if err != nil {
			t.Errorf("%s: %v", text, err)
			continue
		}
		if c.NARCache.MaxSize != want || c.NARCache.Dir != "/s/nar-cache" {
			t.Errorf("%s: size %d dir %q, want %d in /s/nar-cache", text, c.NARCache.MaxSize, c.NARCache.Dir, want)
		}
	}
	for _, text := range []string{`max-size = -1`, `max-size = "lots"`, `max-size = "1.5GiB"`, `max-size = "99999999999TiB"`, `max-size = true`, `dir = "/x"`} {
		if _, err := Parse([]byte("[nar-cache]\n" + text + "\n")); err == nil {
			t.Errorf("%s: accepted", text)
		} else {
			t.Logf("%s: %v", text, err)
		}
	}
	if c, err := Parse(nil); err != nil || c.NARCache.Dir != "" || c.NARCache.MaxSize != 0 {
		t.Errorf("the NAR cache is off unless configured: %+v %v", c.NARCache, err)
	}
}

func TestWitnesses(t *testing.T) {
	_, vk, err := note.GenerateKey(rand.Reader, "w1")
	if err != nil {
		t.Fatal(err)
	}
	cosig, err := fnote.VKeyToCosignatureV1(vk)
	if err != nil {
		t.Fatal(err)
	}
	a := vkey(t, "a")
	wit := func(name, vk, url string) string {
		return fmt.Sprintf("[[witness]]\nname = %q\nvkey = %q\nurl = %q\n", name, vk, url)
	}
	c, err := Parse([]byte(bld("a", a) + wit("w1", cosig, "http://127.0.0.1:1/witness/") + "[quorum]\nwitnesses = 1\n"))
	if err != nil || len(c.Witnesses) != 1 || c.Quorum.Witnesses != 1 {
		t.Fatalf("a valid witness config: %+v %v", c, err)
	}
	if age := c.Quorum.WitnessMaxAge; age == nil || age.Duration != DefaultWitnessMaxAge {
		t.Fatalf("witness-max-age defaults to %v with witnesses, got %v", DefaultWitnessMaxAge, age)
	}
	c, err = Parse([]byte(bld("a", a) + wit("w1", cosig, "http://127.0.0.1:1/witness/") + "[quorum]\nwitnesses = 1\nwitness-max-age = \"0s\"\n"))
	if err != nil || c.Quorum.WitnessMaxAge == nil || c.Quorum.WitnessMaxAge.Duration != 0 {
		t.Fatalf("witness-max-age = 0s turns the check off: %+v %v", c.Quorum.WitnessMaxAge, err)
	}
	for name, tc := range map[string]struct{ toml, want string }{
		"not a key":             {wit("w1", "w1+0000+AQ==", "http://x/"), "cosignature key"},
		"duplicate":             {wit("w1", cosig, "http://x/") + wit("w1", cosig, "http://y/"), "duplicate witness name"},
		"bad url":               {wit("w1", cosig, "ftp://x/"), "must be http"},
		"unreachable":           {wit("w1", cosig, "http://x/") + "[quorum]\nwitnesses = 2\n", "can never be met"},
		"serve without key":     {"serve-witness = true\n" + bld("a", a), "needs a key"},
		"max age, no witnesses": {bld("a", a) + "[quorum]\nwitness-max-age = \"1h\"\n", "needs quorum.witnesses"},
		"negative max age":      {wit("w1", cosig, "http://x/") + "[quorum]\nwitnesses = 1\nwitness-max-age = \"-1h\"\n", "negative"},
	} {
		_, err := Parse([]byte(tc.toml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func TestGroupsAndExceptions(t *testing.T) {
	a, b, c := vkey(t, "a"), vkey(t, "b"), vkey(t, "c")
	builders := bld("a", a) + bld("b", b) + bld("c", c)
	group := func(name, threshold string, members ...string) string {
		return fmt.Sprintf("[[group]]\nname = %q\nthreshold = %s\nmembers = [\"%s\"]\n", name, threshold, strings.Join(members, `", "`))
	}
	cfg, err := Parse([]byte(builders + group("ci", `"all"`, "a", "b") + group("any", `"any"`, "a", "c") + group("top", "2", "ci", "any", "c") +
		"[quorum]\ngroup = \"top\"\non-conflict = \"majority\"\n" +
		"[[exception]]\nname = \"foo-doc-*\"\nreason = \"timestamps\"\nrule = \"any\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := []int{cfg.Groups[0].Need(), cfg.Groups[1].Need(), cfg.Groups[2].Need()}; n[0] != 2 || n[1] != 1 || n[2] != 2 {
		t.Fatalf("thresholds all, any, 2 read as %v", n)
	}
	// With a group, min defaults to 1 (the group is the rule), and
	// majority needs no min above half: the rule itself asks for it.
	if cfg.Quorum.Min != 1 || cfg.Quorum.MinOperators != 1 {
		t.Fatalf("quorum with a group %+v", cfg.Quorum)
	}
	// The simple rule of the same file: no groups, min a strict majority.
	if s := cfg.SimpleRule(); s.Quorum.Min != 2 || s.Quorum.Group != "" || s.Groups != nil || s.Exceptions != nil || len(cfg.Groups) != 3 {
		t.Fatalf("simple rule %+v (from %+v)", s.Quorum, cfg.Quorum)
	}

	for name, tc := range map[string]struct{ toml, want string }{
		"threshold too high":   {group("g", "3", "a", "b"), "threshold = 3 must be between 1 and its 2 members"},
		"threshold word":       {group("g", `"most"`, "a", "b"), `threshold most: want a number of members, "all" or "any"`},
		"threshold zero":       {group("g", "0", "a"), "threshold 0"},
		"member later":         {group("g", "1", "h") + group("h", "1", "a"), `member "h" is neither a [[builder]] nor a group defined earlier`},
		"member twice":         {group("g", "1", "a", "a"), `member "a" is listed twice`},
		"name of a builder":    {group("a", "1", "b"), "already used by a builder"},
		"no members":           {"[[group]]\nname = \"g\"\nthreshold = 1\nmembers = []\n", "no members"},
		"group operators":      {"[[group]]\nname = \"g\"\nthreshold = 1\nmembers = [\"a\"]\nmin-operators = 4\n", "min-operators = 4 can never be met"},
		"unknown quorum group": {"[quorum]\ngroup = \"nope\"\n", `quorum.group = "nope": no [[group]]`},
		"subject and name":     {"[[exception]]\nsubject = \"/nix/store/x\"\nname = \"x\"\nreason = \"r\"\n", "exactly one of subject"},
		"neither":              {"[[exception]]\nreason = \"r\"\n", "exactly one of subject"},
		"no reason":            {"[[exception]]\nname = \"foo\"\n", "reason is required"},
		"everything":           {"[[exception]]\nname = \"*?*\"\nreason = \"r\"\n", "matches every store path"},
		"a slash":              {"[[exception]]\nname = \"x/y\"\nreason = \"r\"\n", "cannot contain '/'"},
		"bad glob":             {"[[exception]]\nname = \"foo[\"\nreason = \"r\"\n", "path.Match syntax"},
		"unknown rule":         {"[[exception]]\nname = \"foo\"\nreason = \"r\"\nrule = \"nobody\"\n", `rule = "nobody" is neither`},
	} {
		_, err := Parse([]byte(builders + tc.toml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func TestLogBackend(t *testing.T) {
	t.Setenv("VOUCH_LOG_DSN", "")
	c, err := Parse([]byte(`key = "/k"` + "\n[log]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"\ndsn = \"u:p@tcp(db:3306)/l\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Backend != LogBackendS3 || c.Log.Bucket != "b" || c.Log.DSN != "u:p@tcp(db:3306)/l" {
		t.Fatalf("parsed %+v", c.Log)
	}
	if c, err := Parse(nil); err != nil || c.Log.Backend != LogBackendPOSIX {
		t.Fatalf("default backend: %+v %v", c.Log, err)
	}
	t.Setenv("VOUCH_LOG_DSN", "u:p@tcp(db:3306)/fromenv")
	c, err = Parse([]byte(`key = "/k"` + "\n[log]\nbackend = \"s3\"\nbucket = \"b\"\n"))
	if err != nil || c.Log.DSN != "u:p@tcp(db:3306)/fromenv" {
		t.Fatalf("DSN from VOUCH_LOG_DSN: %+v %v", c.Log, err)
	}
	t.Setenv("VOUCH_LOG_DSN", "")
	for name, tc := range map[string]struct{ toml, want string }{
		"unknown backend": {"[log]\nbackend = \"gcs\"\n", `backend = "gcs"`},
		"no bucket":       {`key = "/k"` + "\n[log]\nbackend = \"s3\"\ndsn = \"x\"\n", "needs bucket"},
		"no dsn":          {`key = "/k"` + "\n[log]\nbackend = \"s3\"\nbucket = \"b\"\n", "needs dsn"},
		"half creds":      {`key = "/k"` + "\n[log]\nbackend = \"s3\"\nbucket = \"b\"\ndsn = \"x\"\naccess-key = \"a\"\n", "both access-key and secret-key"},
		"bad endpoint":    {`key = "/k"` + "\n[log]\nbackend = \"s3\"\nbucket = \"b\"\ndsn = \"x\"\nendpoint = \"s3.example\"\n", "endpoint"},
		"posix + bucket":  {"[log]\nbucket = \"b\"\n", "need backend"},
	} {
		_, err := Parse([]byte(tc.toml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func TestUpstreamTimeoutsAndRelay(t *testing.T) {
	c, err := Parse([]byte("state = \"/s\"\n[[upstream]]\nurl = \"https://a.example\"\n[[upstream]]\nurl = \"https://b.example\"\nnarinfo-timeout = \"500ms\"\nstall-timeout = \"5s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Upstreams[0], c.Upstreams[1]
	if a.Timeout.Duration != DefaultUpstreamTimeout || a.NarinfoTimeout.Duration != DefaultNarinfoTimeout || a.StallTimeout.Duration != DefaultStallTimeout {
		t.Errorf("defaults: %+v", a)
	}
	if b.NarinfoTimeout.Duration != 500*time.Millisecond || b.StallTimeout.Duration != 5*time.Second {
		t.Errorf("set: %+v", b)
	}
	if *c.Relay.VerifyFirstMax != DefaultVerifyFirstMax || c.Relay.MissTTL.Duration != DefaultMissTTL || c.Relay.SpoolDir != "/s/relay-spool" {
		t.Errorf("relay defaults: %+v", c.Relay)
	}
	c, err = Parse([]byte("[relay]\nverify-first-max = 0\nmiss-ttl = \"5s\"\n"))
	if err != nil || *c.Relay.VerifyFirstMax != 0 || c.Relay.MissTTL.Duration != 5*time.Second {
		t.Errorf("relay set: %+v %v", c.Relay, err)
	}
	for _, text := range []string{
		"[[upstream]]\nurl = \"https://a.example\"\nnarinfo-timeout = \"-1s\"\n",
		"[relay]\nmiss-ttl = \"-1s\"\n",
	} {
		if _, err := Parse([]byte(text)); err == nil {
			t.Errorf("accepted %q", text)
		}
	}
}
