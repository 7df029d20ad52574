// Package oci gates OCI images on a quorum of independent builders: each
// builder signs what it built and attaches it to the image in the
// registry (Sign, Registry.Push) and logs the same fact as an oci claim; a
// verifier counts distinct builder keys and operators under the node's
// policy (Verifier.Verify); a promotion moves a tag only on a trusted
// verdict (Promote).
//
// # Attestation format
//
// An attestation is an in-toto Statement v1 in a DSSE envelope. The
// statement has exactly one subject, the image: its name is the repository
// without tag or digest, its digest the hex SHA-256 of the image manifest.
// The predicate type is PredicateType,
// "https://vouch.dev/attestation/oci-build/v1", and the predicate says
// which source the builder built, and who the builder is:
//
//	{
//	  "_type": "https://in-toto.io/Statement/v1",
//	  "subject": [{"name": "ghcr.io/example/hello",
//	               "digest": {"sha256": "70d200b8…f3a4"}}],
//	  "predicateType": "https://vouch.dev/attestation/oci-build/v1",
//	  "predicate": {
//	    "source": "https://github.com/example/hello",
//	    "commit": "0123456789abcdef0123456789abcdef01234567",
//	    "attribute": "packages.x86_64-linux.image",
//	    "system": "x86_64-linux",
//	    "narHash": "sha256:1b8m…",              (optional: Nix-built images)
//	    "builder": {"name": "alice",
//	                "verifierKey": "alice+1a2b3c4d+AQ…",
//	                "keyid": "3f9c…(32 hex)"},
//	    "time": "2026-01-02T03:04:05Z"
//	  }
//	}
//
// The envelope's payloadType is "application/vnd.in-toto+json"; it has one
// signature, a pure Ed25519 signature (no pre-hash) by the builder's key
// over DSSE's PAE(payloadType, payload), whose keyid is keys.KeyID of the
// public key. source, commit, attribute and system are the oci claim
// subject (claim.OCISubject); the digest and narHash are its output. The
// claim the builder logs for the same build is therefore
//
//	vouch-claim/v1
//	kind oci
//	subject https://github.com/example/hello@0123…4567#packages.x86_64-linux.image?system=x86_64-linux
//	digest sha256:70d200b8…f3a4
//	time 2026-01-02T03:04:05Z
//
// # Checking one attestation (Open)
//
// The signature is checked before the payload is read, against the keys
// of the policy only; the envelope's keyid is an unsigned hint and is not
// believed. Then the statement is parsed strictly (unknown fields, a second
// subject, another statement or predicate type are refused), its subject
// digest must be the digest being verified (an attestation copied from
// another image is refused), and the predicate's builder keyid must be the
// key that signed it. A signature that is truncated, forged, or made by a
// key the policy does not list counts for nothing, and the reason says
// which.
//
// # In the registry
//
// An attestation is an OCI 1.1 referrer of the image: an image manifest
// with artifactType ArtifactType ("application/vnd.vouch.attestation.v1+dsse"),
// a config of that media type whose content is "{}", one layer of
// media type "application/vnd.dsse.envelope.v1+json" holding the envelope,
// and subject = the image's descriptor. Registries with the referrers API
// list it at /v2/<repo>/referrers/<digest>. On registries without it the
// manifest is also added to the image index tagged "sha256-<hex>" (the
// referrers tag schema of the OCI distribution spec 1.1), which is where
// go-containerregistry, oras, regctl and crane look. The manifest carries
// no time, so pushing an attestation again is idempotent.
//
// Optionally (Registry.PushCosign) the envelope is also a layer of the
// image tagged "sha256-<hex>.att", cosign's own layout, which is where
// cosign v2 verify-attestation looks; see docs/oci.md.
//
// # Counting
//
// Verification applies the node's policy through package verdict, so an
// image is judged by the same rules as a Nix path: a builder is its key (one
// key under two names, or signing twice, is one vote), unlisted keys count
// for nothing, the denominator is the configured set, and the quorum needs
// both Min agreeing builders and MinOperators distinct operators. Agreement
// is equality of claim.Output (digest and narHash) for the same subject.
//
// The logs are the truth. With a follower index (ModeLogs), votes are the
// builders' logged oci claims; registry attestations are checked and
// reported, and a registry attestation that its builder did not log, or
// that contradicts the log, is reported and not counted. A registry can
// hide attestations; that costs nothing when the subject is given, and at
// worst makes the verdict fail. Registry attestations alone
// (ModeRegistryOnly) are only a diagnostic that must be asked for
// (Verifier.RegistryOnly): a registry lists attestations per digest, so a
// dissent or a builder's second digest for the same source sits on
// another digest and is not seen, and no policy can be enforced that way
// (ErrRegistryOnly says why). Promote never decides on them.
//
// # The gate
//
// Promote fails closed. It decides from the logs only; before deciding
// it brings them up to date (PromoteOptions.Freshen: SyncLogs, or a
// running node's view) and refuses a view in which a counted log was not
// synced within MaxAge; every registry request has a deadline
// (Registry.Timeout) that covers the whole answer; and each outcome,
// refusals and errors included, is one fsynced line of promotions.log.
//
// Attesting is idempotent: Registry.Attach pushes nothing when the image
// already carries an attestation by the same key for the same subject and
// output, and before it pushes it drops referrers-tag entries whose
// manifests were deleted, which distribution would otherwise refuse.
package oci
