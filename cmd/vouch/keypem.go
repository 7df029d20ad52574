package main

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"

	"github.com/vouch-dev/vouch/keys"
)

func init() {
	register(command{name: "key pem", summary: "print a builder's public key as PEM (PKIX), for cosign and other tools", run: runKeyPEM})
}

// runKeyPEM prints the Ed25519 public key of a builder key file or of a
// verifier key ("name+hash+base64", as in a config's vkey) as a PKIX
// "PUBLIC KEY" PEM block: what cosign's --key and openssl read.
func runKeyPEM(args []string) int {
	fs := newFlags("key pem", "KEYFILE|VERIFIERKEY")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	var pub ed25519.PublicKey
	arg := fs.Arg(0)
	if _, err := os.Stat(arg); err == nil {
		id, err := keys.LoadIdentity(arg)
		if err != nil {
			return fail("key pem: %v", err)
		}
		pub = id.Public()
	} else if strings.Count(arg, "+") >= 2 {
		if pub, err = keys.VerifierPublicKey(arg); err != nil {
			return fail("key pem: %v", err)
		}
	} else {
		return fail("key pem: %s is neither a key file nor a verifier key (name+hash+key)", arg)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fail("key pem: %v", err)
	}
	os.Stdout.Write(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return 0
}
