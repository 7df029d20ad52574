// Package config reads and validates a vouch node's configuration: a TOML
// file whose top-level keys are also flags of `vouch serve`, so a builder
// needs no file at all. The schema, with a commented example, is in
// docs/config.md; this package is its single source of truth.
//
// Which roles a node runs follows from what is configured:
//
//	key      present → log role (this node is a builder and keeps a log)
//	builder  present → follow role (replicate and verify those logs)
//	nix-key  present → substituter role (serve agreed paths to Nix)
//	serve-witness = true → witness role (cosign the builders' checkpoints)
//	dashboard = true → web dashboard at /
package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	fnote "github.com/transparency-dev/formats/note"

	"github.com/vouch-dev/vouch/keys"
)

// Config is a node's whole configuration.
type Config struct {
	State  string `toml:"state"`   // directory for everything the node writes
	Listen string `toml:"listen"`  // HTTP address: /log/, the substituter, the dashboard
	Key    string `toml:"key"`     // builder key file: enables the log role
	Store  string `toml:"store"`   // root of the Nix store on disk; "/" means /nix/store
	NixKey string `toml:"nix-key"` // Nix cache secret key: enables the substituter
	Socket string `toml:"socket"`  // submit socket; default STATE/vouch.sock
	// SocketGroup, if set, is the group allowed to submit (mode 0660);
	// otherwise only the daemon's user may (mode 0600).
	SocketGroup string `toml:"socket-group"`
	Dashboard   bool   `toml:"dashboard"`
	// ServeWitness makes this node a C2SP tlog-witness for the [[builder]]
	// logs, cosigning their checkpoints with its key.
	ServeWitness bool `toml:"serve-witness"`

	Builders  []Builder  `toml:"builder"`
	Witnesses []Witness  `toml:"witness"`
	Quorum    Quorum     `toml:"quorum"`
	Upstreams []Upstream `toml:"upstream"`
	NARCache  NARCache   `toml:"nar-cache"`
	Relay     Relay      `toml:"relay"`
	Follow    Follow     `toml:"follow"`
	// Log says where the builder's own log (the log role) is kept.
	Log LogStore `toml:"log"`

	// Groups name sets of builders (and earlier groups) with a threshold;
	// quorum.group makes one of them the rule. See Group.
	Groups []Group `toml:"group"`
	// Exceptions admit listed subjects that are known not to reproduce
	// under a weaker rule, each with its reason. See Exception.
	Exceptions []Exception `toml:"exception"`

	// Path is the file the config was read from, for messages.
	Path string `toml:"-"`

	// minFromGroup records that Defaults set quorum.min to 1 because a
	// group is the rule, so that SimpleRule can restore the simple default.
	minFromGroup bool
}

// SimpleRule returns a copy of the config without its groups, quorum.group
// and exceptions: the policy its [quorum] keys alone describe, with the
// simple default for a min that was left unset. It is what `vouch policy
// test` compares a policy with groups against.
func (c *Config) SimpleRule() *Config {
	s := *c
	s.Builders = append([]Builder(nil), c.Builders...)
	s.Groups, s.Exceptions, s.Quorum.Group = nil, nil, ""
	if c.minFromGroup {
		s.Quorum.Min, s.minFromGroup = 0, false
		s.Defaults()
	}
	return &s
}

// Builder is one log the node follows and, through the quorum, trusts.
type Builder struct {
	Name     string `toml:"name"`
	VKey     string `toml:"vkey"`     // signed-note verifier key
	Log      string `toml:"log"`      // base URL of the log's tiles, ending in /
	Operator string `toml:"operator"` // who runs it; defaults to Name
	Weight   int    `toml:"weight"`   // votes this builder carries; default 1
}

// Witness is a tlog-witness that cosigns checkpoints. The log role asks
// every listed witness to cosign each new checkpoint; the follow role
// counts their cosignatures (Quorum.Witnesses).
type Witness struct {
	Name string `toml:"name"`
	VKey string `toml:"vkey"` // cosignature/v1 verifier key, as the witness prints it
	URL  string `toml:"url"`  // the witness's root; add-checkpoint is POSTed below it
}

// Quorum is the rule a verdict applies.
type Quorum struct {
	Min          int    `toml:"min"`           // agreeing distinct builders (weighted)
	MinOperators int    `toml:"min-operators"` // distinct operators among them
	OnConflict   string `toml:"on-conflict"`   // "majority" or "refuse"
	// Group, if set, names the [[group]] the agreeing builders must
	// satisfy, in addition to Min and MinOperators (which then default
	// to 1). Unset: the simple rule of Min and MinOperators alone.
	Group string `toml:"group"`
	// Witnesses is how many of the listed witnesses must have cosigned a
	// log's checkpoint before the follower believes it. Default 0.
	Witnesses int `toml:"witnesses"`
	// WitnessMaxAge is how old the Witnesses-th newest cosignature of a
	// log's latest checkpoint may be before the follower reports the log
	// as possibly frozen. Unset: DefaultWitnessMaxAge when Witnesses ≥ 1;
	// "0s" turns the check off.
	WitnessMaxAge *Duration `toml:"witness-max-age"`
}

// Group is a named set of members — builder names, or names of groups
// defined earlier in the file — of which Threshold must be met, in the
// spirit of C2SP tlog-policy's "group" lines. The verdict package specifies
// how a tree of groups is counted (each builder once across the whole tree).
type Group struct {
	Name      string    `toml:"name"`
	Threshold Threshold `toml:"threshold"` // how many members: a number, "all" or "any"
	Members   []string  `toml:"members"`
	// MinOperators, if above 1, is how many distinct operators the
	// builders that meet this group must come from.
	MinOperators int `toml:"min-operators"`
}

// Need is how many of the group's members must be met.
func (g Group) Need() int {
	switch {
	case g.Threshold.All:
		return len(g.Members)
	case g.Threshold.Any:
		return 1
	}
	return g.Threshold.N
}

// Threshold is a group's threshold: a number, or the words "all" or "any"
// (as in C2SP tlog-policy).
type Threshold struct {
	N   int
	All bool // every member
	Any bool // one member
}

// UnmarshalTOML accepts an integer, "all" or "any".
func (t *Threshold) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 1 || v > math.MaxInt32 {
			return fmt.Errorf("threshold %d: want a number of members of at least 1, or \"all\" or \"any\"", v)
		}
		*t = Threshold{N: int(v)}
		return nil
	case string:
		switch v {
		case "all":
			*t = Threshold{All: true}
			return nil
		case "any":
			*t = Threshold{Any: true}
			return nil
		}
	}
	return fmt.Errorf("threshold %v: want a number of members, \"all\" or \"any\"", v)
}

// MarshalText writes the threshold as it is read.
func (t Threshold) MarshalText() ([]byte, error) {
	switch {
	case t.All:
		return []byte("all"), nil
	case t.Any:
		return []byte("any"), nil
	}
	return []byte(strconv.Itoa(t.N)), nil
}

// Exception admits subjects known not to reproduce. It matches one exact
// Subject (a store path, an output id or an OCI subject) or, for store
// paths, every path whose name (the part after "<hash>-") matches the
// glob Name (path.Match syntax). Rule names the group or builder whose
// agreement suffices for such a subject; unset, the quorum's own rule
// applies with disagreement tolerated. The verdict package specifies how
// an exception is applied; it is only ever used when the policy itself
// refuses, and every use is recorded in the verdict.
type Exception struct {
	Subject string `toml:"subject"`
	Name    string `toml:"name"`
	Reason  string `toml:"reason"` // why the subject does not reproduce: required
	Rule    string `toml:"rule"`
}

// maxGroupBuilders bounds the builders of a policy with groups: the group
// rule counts builders in one 64-bit set.
const maxGroupBuilders = 64

// DefaultWitnessMaxAge is quorum.witness-max-age when it is not set. Logs
// have their unchanged checkpoints cosigned again every 10 minutes
// (tessera's default republish interval); a day leaves room for witnesses
// that are down for a while.
const DefaultWitnessMaxAge = 24 * time.Hour

// Upstream is a binary cache or peer NAR bytes may come from.
type Upstream struct {
	URL     string   `toml:"url"`
	Timeout Duration `toml:"timeout"` // whole NAR request; default DefaultUpstreamTimeout
	// NarinfoTimeout bounds one narinfo request; default
	// DefaultNarinfoTimeout. A miss waits for it at most once per
	// upstream: a timeout opens the upstream's circuit breaker.
	NarinfoTimeout Duration `toml:"narinfo-timeout"`
	// StallTimeout cuts a NAR download (or its response headers) that
	// makes less than 64 KiB of progress in this time; default
	// DefaultStallTimeout.
	StallTimeout Duration `toml:"stall-timeout"`
}

// Upstream timeouts when the config does not set them.
const (
	DefaultUpstreamTimeout = 5 * time.Minute
	DefaultNarinfoTimeout  = 5 * time.Second
	DefaultStallTimeout    = 30 * time.Second
)

// NARCache is the substituter's optional bounded on-disk cache of
// verified NARs. It is on when MaxSize is set.
type NARCache struct {
	Dir     string `toml:"dir"`      // default STATE/nar-cache
	MaxSize Size   `toml:"max-size"` // e.g. "20GiB"; unset or 0 disables the cache
}

// Relay tunes how the substituter fetches and checks NARs.
type Relay struct {
	// VerifyFirstMax is the largest NAR received and verified whole before
	// its first byte is sent, so a bad upstream is replaced by the next
	// one without failing the client; larger NARs stream with their last
	// chunk held back. Unset: DefaultVerifyFirstMax; 0 streams every NAR.
	VerifyFirstMax *Size `toml:"verify-first-max"`
	// SpoolDir holds NARs over 1 MiB while they are verified; default
	// STATE/relay-spool (not STATE/spool, the post-build hook's queue).
	SpoolDir string `toml:"spool-dir"`
	// MissTTL is how long an upstream's "not found" for a narinfo is
	// remembered; default DefaultMissTTL.
	MissTTL Duration `toml:"miss-ttl"`
}

// Relay defaults.
const (
	DefaultVerifyFirstMax = 1 << 30
	DefaultMissTTL        = 30 * time.Second
)

// Follow tunes the follow role.
type Follow struct {
	Interval Duration `toml:"interval"` // time between polls of one log; default 10s
}

// Log backends.
const (
	LogBackendPOSIX = "posix" // STATE/log on the local disk; one writer
	LogBackendS3    = "s3"    // S3-compatible bucket + MySQL-compatible database; several frontends
)

// LogStore is where the builder's log lives. With the default backend,
// "posix", it is STATE/log and nothing else is configured. With "s3" the
// log is published in an S3-compatible bucket and sequenced and guarded in
// a MySQL-compatible database, so several `vouch serve` frontends with the
// same key can append to it and followers can read it from the bucket.
type LogStore struct {
	Backend  string `toml:"backend"`
	Bucket   string `toml:"bucket"`   // must exist
	Prefix   string `toml:"prefix"`   // optional prefix of every object name
	Endpoint string `toml:"endpoint"` // S3-compatible server's URL; empty for AWS S3
	Region   string `toml:"region"`   // default us-east-1
	// AccessKey and SecretKey are the bucket's credentials; if both are
	// empty the AWS SDK finds them (AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, shared files, instance roles).
	AccessKey string `toml:"access-key"`
	SecretKey string `toml:"secret-key"`
	// DSN is the database, as github.com/go-sql-driver/mysql writes it:
	// "user:password@tcp(host:3306)/database". If empty, the environment
	// variable VOUCH_LOG_DSN is used, to keep the password out of the file.
	DSN string `toml:"dsn"`
	// StaleReservation is how long a subject reserved by a frontend that
	// died stays blocked before another frontend resolves it from the log.
	// Default 5s.
	StaleReservation Duration `toml:"stale-reservation"`
}

// Duration is a time.Duration written as "10s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w (write e.g. \"10s\" or \"2m\")", b, err)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as Go formats it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Size is a number of bytes, written in TOML as an integer or as a string
// with a unit: "512MiB", "20GiB", "1TB" (KiB, MiB, GiB, TiB are powers of
// 1024; kB, MB, GB, TB powers of 1000).
type Size int64

var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// UnmarshalTOML accepts an integer number of bytes or a string with a unit.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("size %d is negative", v)
		}
		*s = Size(v)
		return nil
	case string:
		n, err := ParseSize(v)
		*s = n
		return err
	}
	return fmt.Errorf("size %v: write a number of bytes or a string such as \"20GiB\"", v)
}

// ParseSize parses "20GiB", "512MiB", "1TB" or a plain number of bytes.
func ParseSize(text string) (Size, error) {
	num, factor := strings.TrimSpace(text), int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, factor = strings.TrimSpace(rest), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a whole number of bytes, optionally with a unit (KiB, MiB, GiB, TiB, kB, MB, GB, TB), e.g. \"20GiB\"", text)
	}
	if n > math.MaxInt64/factor {
		return 0, fmt.Errorf("size %q is too large", text)
	}
	return Size(n * factor), nil
}

// MarshalText writes the size as a number of bytes.
func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// Conflict handling modes.
const (
	OnConflictMajority = "majority"
	OnConflictRefuse   = "refuse"
)

// Load reads the TOML file at path. Unknown keys are errors: a misspelt
// "min-operator" must not silently weaken a policy.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Parse decodes a config from TOML text, applies defaults and validates it.
func Parse(b []byte) (*Config, error) {
	c := &Config{}
	md, err := toml.Decode(string(b), c)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		names := make([]string, len(und))
		for i, k := range und {
			names[i] = k.String()
		}
		return nil, fmt.Errorf("unknown key(s) %s (see docs/config.md for the schema)", strings.Join(names, ", "))
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// DefaultState is where a node keeps its state when none is configured.
func DefaultState() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "vouch")
	}
	if h, err := os.UserHomeDir(); err == nil && os.Getuid() != 0 {
		return filepath.Join(h, ".local", "state", "vouch")
	}
	return "/var/lib/vouch"
}

// Defaults fills in everything left unset.
func (c *Config) Defaults() {
	if c.State == "" {
		c.State = DefaultState()
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.Store == "" {
		c.Store = "/"
	}
	if c.Socket == "" {
		c.Socket = c.DefaultSocket()
	}
	if c.Follow.Interval.Duration == 0 {
		c.Follow.Interval.Duration = 10 * time.Second
	}
	if c.Log.Backend == "" {
		c.Log.Backend = LogBackendPOSIX
	}
	if c.Log.Backend == LogBackendS3 && c.Log.DSN == "" {
		c.Log.DSN = os.Getenv("VOUCH_LOG_DSN")
	}
	for i := range c.Builders {
		b := &c.Builders[i]
		if b.Operator == "" {
			b.Operator = b.Name
		}
		if b.Weight == 0 {
			b.Weight = 1
		}
		if b.Log != "" && !strings.HasSuffix(b.Log, "/") {
			b.Log += "/"
		}
	}
	if c.Quorum.OnConflict == "" {
		c.Quorum.OnConflict = OnConflictRefuse
	}
	if c.Quorum.WitnessMaxAge == nil && c.Quorum.Witnesses > 0 {
		c.Quorum.WitnessMaxAge = &Duration{DefaultWitnessMaxAge}
	}
	if c.Quorum.Min == 0 && len(c.Builders) > 0 && c.Quorum.Group != "" {
		// The group is the rule; min only adds to it when set.
		c.Quorum.Min, c.minFromGroup = 1, true
	}
	if c.Quorum.Min == 0 && len(c.Builders) > 0 {
		// A strict majority of the configured weight: the safe default.
		c.Quorum.Min = c.TotalWeight()/2 + 1
	}
	if c.Quorum.MinOperators == 0 && len(c.Builders) > 0 {
		c.Quorum.MinOperators = 1
	}
	if c.Relay.VerifyFirstMax == nil {
		v := Size(DefaultVerifyFirstMax)
		c.Relay.VerifyFirstMax = &v
	}
	if c.Relay.SpoolDir == "" {
		c.Relay.SpoolDir = filepath.Join(c.State, "relay-spool")
	}
	if c.Relay.MissTTL.Duration == 0 {
		c.Relay.MissTTL.Duration = DefaultMissTTL
	}
	if c.NARCache.MaxSize > 0 && c.NARCache.Dir == "" {
		c.NARCache.Dir = filepath.Join(c.State, "nar-cache")
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if u.Timeout.Duration == 0 {
			u.Timeout.Duration = DefaultUpstreamTimeout
		}
		if u.NarinfoTimeout.Duration == 0 {
			u.NarinfoTimeout.Duration = DefaultNarinfoTimeout
		}
		if u.StallTimeout.Duration == 0 {
			u.StallTimeout.Duration = DefaultStallTimeout
		}
	}
}

// DefaultSocket is the submit socket's path when none is configured.
func (c *Config) DefaultSocket() string { return filepath.Join(c.State, "vouch.sock") }

// TotalWeight is the sum of the configured builders' weights.
func (c *Config) TotalWeight() int {
	n := 0
	for _, b := range c.Builders {
		n += b.Weight
	}
	return n
}

// StoreDir returns the directory on disk that holds /nix/store's files.
func (c *Config) StoreDir() string {
	return filepath.Join(c.Store, "nix", "store")
}

// isHTTPURL reports whether s is an absolute http:// or https:// URL.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Validate checks the config and explains the first problem it finds.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	names := map[string]bool{}
	keyOwner := map[string]string{}
	operators := map[string]bool{}
	for i, b := range c.Builders {
		where := fmt.Sprintf("builder #%d (%q)", i+1, b.Name)
		if err := keys.ValidName(b.Name); err != nil {
			bad("%s: %v", where, err)
		}
		if names[b.Name] {
			bad("%s: duplicate builder name", where)
		}
		names[b.Name] = true
		pub, err := keys.VerifierPublicKey(b.VKey)
		if err != nil {
			bad("%s: vkey: %v", where, err)
		} else if _, err := keys.NewVerifier(b.VKey); err != nil {
			bad("%s: %v", where, err)
		} else {
			id := keys.KeyID(pub)
			if other, dup := keyOwner[id]; dup {
				// The same key under two names would count twice towards a
				// quorum: one builder posing as two.
				bad("%s: uses the same key as builder %q; one key is one builder", where, other)
			}
			keyOwner[id] = b.Name
		}
		if u, err := url.Parse(b.Log); err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") || (u.Scheme != "file" && u.Host == "") {
			bad("%s: log %q must be an http(s):// or file:// URL", where, b.Log)
		}
		if b.Weight < 0 {
			bad("%s: weight must be positive", where)
		}
		operators[b.Operator] = true
	}
	if len(c.Builders) > 0 {
		q := c.Quorum
		if q.Min < 1 {
			bad("quorum.min must be at least 1")
		}
		if q.Min > c.TotalWeight() {
			bad("quorum.min = %d can never be met: the %d configured builders carry %d votes in all", q.Min, len(c.Builders), c.TotalWeight())
		}
		if q.MinOperators < 1 || q.MinOperators > len(operators) {
			bad("quorum.min-operators = %d can never be met with %d distinct operators configured", q.MinOperators, len(operators))
		}
		if q.OnConflict != OnConflictMajority && q.OnConflict != OnConflictRefuse {
			bad("quorum.on-conflict = %q: want %q or %q", q.OnConflict, OnConflictMajority, OnConflictRefuse)
		}
		if q.OnConflict == OnConflictMajority && q.Group == "" && 2*q.Min <= c.TotalWeight() {
			// With min at or below half the votes, two different outputs
			// could both reach the quorum; majority then has no winner.
			bad("quorum.on-conflict = majority needs quorum.min > half of the total weight (%d), got %d", c.TotalWeight(), q.Min)
		}
	}
	errs = append(errs, c.validateGroups(operators)...)
	for i, u := range c.Upstreams {
		if !isHTTPURL(u.URL) {
			bad("upstream #%d: url %q must be http:// or https://", i+1, u.URL)
		}
		if u.Timeout.Duration < 0 || u.NarinfoTimeout.Duration < 0 || u.StallTimeout.Duration < 0 {
			bad("upstream #%d (%s): timeouts must not be negative", i+1, u.URL)
		}
	}
	witnessNames := map[string]bool{}
	for i, w := range c.Witnesses {
		where := fmt.Sprintf("witness #%d (%q)", i+1, w.Name)
		if err := keys.ValidName(w.Name); err != nil {
			bad("%s: %v", where, err)
		}
		if witnessNames[w.Name] {
			bad("%s: duplicate witness name", where)
		}
		witnessNames[w.Name] = true
		if _, err := fnote.NewVerifierForCosignatureV1(w.VKey); err != nil {
			bad("%s: vkey: %v (want the cosignature key a witness prints, name+hex8+base64 starting with type 0x04)", where, err)
		}
		if !isHTTPURL(w.URL) {
			bad("%s: url %q must be http:// or https://", where, w.URL)
		}
	}
	if c.Quorum.Witnesses < 0 || c.Quorum.Witnesses > len(c.Witnesses) {
		bad("quorum.witnesses = %d can never be met with %d [[witness]] entries configured", c.Quorum.Witnesses, len(c.Witnesses))
	}
	if age := c.Quorum.WitnessMaxAge; age != nil && age.Duration < 0 {
		bad("quorum.witness-max-age = %v is negative", age.Duration)
	}
	if age := c.Quorum.WitnessMaxAge; age != nil && age.Duration > 0 && c.Quorum.Witnesses == 0 {
		bad("quorum.witness-max-age = %v needs quorum.witnesses ≥ 1: a checkpoint's age is read from its witnesses' cosignatures", age.Duration)
	}
	if c.ServeWitness && (c.Key == "" || len(c.Builders) == 0) {
		bad("serve-witness needs a key to cosign with and [[builder]] logs to witness")
	}
	if c.Relay.MissTTL.Duration < 0 {
		bad("relay.miss-ttl must not be negative")
	}
	if c.NARCache.Dir != "" && c.NARCache.MaxSize == 0 {
		bad("nar-cache.dir is set but nar-cache.max-size is not: say how much disk the cache may use, e.g. max-size = \"20GiB\"")
	}
	switch l := c.Log; l.Backend {
	case LogBackendPOSIX:
		if l.Bucket != "" || l.Endpoint != "" || l.DSN != "" || l.AccessKey != "" || l.SecretKey != "" || l.Prefix != "" || l.Region != "" {
			bad("log: bucket, endpoint, dsn and the other [log] settings need backend = %q", LogBackendS3)
		}
	case LogBackendS3:
		if l.Bucket == "" {
			bad("log: backend = %q needs bucket (the bucket the log is published in; create it first)", LogBackendS3)
		}
		if l.DSN == "" {
			bad("log: backend = %q needs dsn (e.g. \"vouch:PASSWORD@tcp(db:3306)/vouchlog\"), or the VOUCH_LOG_DSN environment variable", LogBackendS3)
		}
		if l.Endpoint != "" && !isHTTPURL(l.Endpoint) {
			bad("log: endpoint %q must be an http:// or https:// URL", l.Endpoint)
		}
		if (l.AccessKey == "") != (l.SecretKey == "") {
			bad("log: set both access-key and secret-key, or neither (to use the AWS environment)")
		}
		if l.StaleReservation.Duration < 0 || (l.StaleReservation.Duration > 0 && l.StaleReservation.Duration < time.Second) {
			bad("log: stale-reservation = %v is too short (at least 1s; default 5s)", l.StaleReservation.Duration)
		}
	default:
		bad("log: backend = %q: want %q or %q", l.Backend, LogBackendPOSIX, LogBackendS3)
	}
	if c.Follow.Interval.Duration < 100*time.Millisecond {
		bad("follow.interval = %v is too short (at least 100ms)", c.Follow.Interval.Duration)
	}
	return errors.Join(errs...)
}

// validateGroups checks [[group]], quorum.group and [[exception]].
// Whether a group can ever be met with each builder counted once is
// checked by verdict.NewPolicy, which knows how groups are counted.
func (c *Config) validateGroups(operators map[string]bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	builders := map[string]bool{}
	for _, b := range c.Builders {
		builders[b.Name] = true
	}
	groups := map[string]bool{}
	for i, g := range c.Groups {
		where := fmt.Sprintf("group #%d (%q)", i+1, g.Name)
		if err := keys.ValidName(g.Name); err != nil {
			bad("%s: %v", where, err)
		}
		if groups[g.Name] || builders[g.Name] {
			bad("%s: the name is already used by a builder or an earlier group; builders and groups share one set of names", where)
		}
		if len(g.Members) == 0 {
			bad("%s: no members; list builder names or earlier groups in members = [...]", where)
		}
		seen := map[string]bool{}
		for _, m := range g.Members {
			switch {
			case seen[m]:
				bad("%s: member %q is listed twice", where, m)
			case m == g.Name:
				bad("%s: a group cannot be its own member", where)
			case !builders[m] && !groups[m]:
				bad("%s: member %q is neither a [[builder]] nor a group defined earlier in the file", where, m)
			}
			seen[m] = true
		}
		if t := g.Threshold; !t.All && !t.Any && (t.N < 1 || t.N > len(g.Members)) {
			bad("%s: threshold = %d must be between 1 and its %d members (or \"all\" / \"any\")", where, t.N, len(g.Members))
		}
		if g.MinOperators < 0 || g.MinOperators > len(operators) {
			bad("%s: min-operators = %d can never be met with %d distinct operators configured", where, g.MinOperators, len(operators))
		}
		groups[g.Name] = true
	}
	if len(c.Groups) > 0 && len(c.Builders) > maxGroupBuilders {
		bad("[[group]] policies count at most %d builders; %d are configured", maxGroupBuilders, len(c.Builders))
	}
	if q := c.Quorum.Group; q != "" && !groups[q] {
		bad("quorum.group = %q: no [[group]] has that name", q)
	}
	for i, e := range c.Exceptions {
		where := fmt.Sprintf("exception #%d", i+1)
		switch {
		case (e.Subject == "") == (e.Name == ""):
			bad("%s: set exactly one of subject (an exact subject) or name (a store-path name pattern)", where)
		case e.Name != "":
			if err := ValidNamePattern(e.Name); err != nil {
				bad("%s: %v", where, err)
			}
		}
		if strings.TrimSpace(e.Reason) == "" {
			bad("%s: reason is required: say why this subject does not reproduce", where)
		}
		if e.Rule != "" && !groups[e.Rule] && !builders[e.Rule] {
			bad("%s: rule = %q is neither a [[group]] nor a [[builder]]", where, e.Rule)
		}
	}
	return errs
}

// ValidNamePattern checks an exception's store-path name pattern: a
// path.Match glob on one name, with at least one literal character (a
// pattern of wildcards alone would admit every path, which is no
// exception but a policy of trusting anything).
func ValidNamePattern(pattern string) error {
	if strings.Contains(pattern, "/") {
		return fmt.Errorf("name = %q: a name pattern matches the part of a store path after \"<hash>-\" and cannot contain '/'; use subject for an exact path", pattern)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("name = %q: %v (path.Match syntax: *, ?, [a-z])", pattern, err)
	}
	if strings.Trim(pattern, "*?") == "" {
		return fmt.Errorf("name = %q matches every store path: name the package, e.g. \"foo-doc-*\"", pattern)
	}
	return nil
}
