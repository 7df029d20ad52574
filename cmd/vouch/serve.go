package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/node"
	"github.com/vouch-dev/vouch/witness"
)

func init() {
	register(command{name: "serve", summary: "run the roles the config enables (log, follow, substituter, witness, dashboard)", run: runServe})
}

// nodeFlags are the top-level config keys, also accepted as flags.
type nodeFlags struct {
	config, state, listen, key, store, nixKey, socket *string
}

func addNodeFlags(fs *flag.FlagSet) nodeFlags {
	return nodeFlags{
		config: fs.String("config", "", "config file (TOML, see docs/config.md)"),
		state:  fs.String("state", "", "state directory (default "+config.DefaultState()+")"),
		listen: fs.String("listen", "", "HTTP listen address (default 127.0.0.1:8080)"),
		key:    fs.String("key", "", "builder key file: enables the log role"),
		store:  fs.String("store", "", `root of the Nix store on disk ("/" = /nix/store; a chroot store's directory)`),
		nixKey: fs.String("nix-key", "", "Nix cache secret key: enables the substituter"),
		socket: fs.String("socket", "", "submit socket (default STATE/vouch.sock)"),
	}
}

// load reads the config file, if any, and applies the flags over it.
func (f nodeFlags) load() (*config.Config, error) {
	cfg := &config.Config{}
	if *f.config != "" {
		var err error
		if cfg, err = config.Load(*f.config); err != nil {
			return nil, err
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	stateFromFlag := *f.state != "" && *f.state != cfg.State
	set(&cfg.State, *f.state)
	set(&cfg.Listen, *f.listen)
	set(&cfg.Key, *f.key)
	set(&cfg.Store, *f.store)
	set(&cfg.NixKey, *f.nixKey)
	if stateFromFlag && *f.socket == "" {
		cfg.Socket = "" // re-derive from the new state directory
	}
	set(&cfg.Socket, *f.socket)
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func runServe(args []string) int {
	fs := newFlags("serve", "")
	nf := addNodeFlags(fs)
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	cfg, err := nf.load()
	if err != nil {
		return fail("%v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// The embedded default: no config and no key → this machine is a
	// builder; create its keys on first run.
	if *nf.config == "" && cfg.Key == "" {
		keyDir := filepath.Join(cfg.State, "keys")
		existing, _ := filepath.Glob(filepath.Join(keyDir, "*.key"))
		switch len(existing) {
		case 0:
			name := defaultKeyName()
			if _, err := keys.Generate(keyDir, name); err != nil {
				return fail("create keys: %v", err)
			}
			fmt.Fprintf(os.Stderr, "created keys for the log %q in %s (vouch keygen --name NAME makes a key with a name of your choosing)\n", name, keyDir)
			cfg.Key = keys.FilesFor(keyDir, name).Key
		case 1:
			cfg.Key = existing[0]
		default:
			return fail("%s holds %d keys (%s): say which one this builder signs with (--key FILE)", keyDir, len(existing), strings.Join(existing, ", "))
		}
	}

	n, err := node.New(cfg, logger)
	if err != nil {
		return fail("%v", err)
	}
	n.Ready = func(addr string) { printBanner(cfg, n, addr) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Run(ctx); err != nil {
		return fail("%v", err)
	}
	return 0
}

// defaultKeyName names a builder that was given no name: the host name and
// a random suffix. The name is the log's origin and the verifier key's
// name, and followers and witnesses tell logs apart by it: demo machines
// all called "vm" made logs that a witness refused as "listed twice".
func defaultKeyName() string {
	var suffix [3]byte
	rand.Read(suffix[:])
	h, err := os.Hostname()
	h = strings.ToLower(h)
	if err != nil || keys.ValidName(h) != nil || len(h) > 40 {
		h = "vouch"
	}
	return fmt.Sprintf("%s-%x", h, suffix)
}

func printBanner(cfg *config.Config, n *node.Node, addr string) {
	fmt.Printf("vouch is serving on http://%s/\n", addr)
	fmt.Printf("  state:        %s\n", cfg.State)
	if id := n.Identity(); id != nil {
		fmt.Printf("  log:          http://%s/log/  (origin %q)\n", addr, id.Name)
		fmt.Printf("  verifier key: %s\n", id.VerifierKey)
		if lc := cfg.Log; lc.Backend == config.LogBackendS3 {
			where := lc.Endpoint
			if where == "" {
				where = "AWS S3"
			}
			fmt.Printf("  published in: bucket %q on %s, shared with the log's other frontends (followers may use the bucket's URL as this builder's log)\n", lc.Bucket, where)
		}
		fmt.Printf("  submit:       %s  (vouch submit PATH…, or post-build-hook = a script running `vouch hook --state %s`)\n", cfg.Socket, cfg.State)
	}
	if len(cfg.Builders) > 0 {
		fmt.Printf("  following:    %d builders\n", len(cfg.Builders))
		if cfg.NixKey != "" {
			fmt.Printf("  nix cache:    http://%s  (substituters; trusted-public-keys = the key in %s)\n", addr, strings.TrimSuffix(cfg.NixKey, ".sec")+".pub")
		}
		if cfg.Dashboard {
			fmt.Printf("  dashboard:    http://%s/\n", addr)
		}
		if cfg.ServeWitness && n.Identity() != nil {
			if vkey, err := witness.CosignatureVerifierKey(n.Identity()); err == nil {
				fmt.Printf("  witness:      http://%s%s  (cosignature key %s)\n", addr, node.WitnessPath, vkey)
			}
		}
	}
	fmt.Println("Press Ctrl-C to stop.")
}
