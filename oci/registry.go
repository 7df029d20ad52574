package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// MaxReferrers bounds how many attestation manifests are read for one
// image. A registry (or whoever can push to it) could attach millions of
// artifacts to slow a verifier down; past this many, the rest are reported
// as not read, which can only lose votes, never add them.
const MaxReferrers = 256

// maxManifestSize bounds an attestation manifest (about 700 bytes).
const maxManifestSize = 64 << 10

// emptyConfig is the config blob of an attestation manifest. Its media
// type is ArtifactType, which is how registries that predate the
// artifactType field (and go-containerregistry's own registry) report the
// type of a referrer.
var emptyConfig = []byte("{}")

// DefaultTimeout bounds each HTTP request to a registry when
// Registry.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Registry talks to OCI registries with go-containerregistry's remote
// package. The zero value uses the credentials of the Docker config
// (~/.docker/config.json, credential helpers), as docker and crane do.
type Registry struct {
	// Options are passed to every remote call, after the defaults.
	Options []remote.Option
	// NameOptions are used to parse references (name.Insecure for a
	// plain-HTTP registry that is not on localhost).
	NameOptions []name.Option
	// Timeout bounds every HTTP request to the registry, from dialling to
	// the last byte of the answer (DefaultTimeout if zero). A registry
	// that accepts the connection and never answers must not hold a gate,
	// and the index lock it holds, forever. A transport given in Options
	// (remote.WithTransport) replaces the one that enforces this.
	Timeout time.Duration

	transportOnce sync.Once
	transport     http.RoundTripper
}

func (r *Registry) opts(ctx context.Context) []remote.Option {
	r.transportOnce.Do(func() {
		t := r.Timeout
		if t <= 0 {
			t = DefaultTimeout
		}
		base := remote.DefaultTransport.(*http.Transport).Clone()
		base.ResponseHeaderTimeout = t
		r.transport = &timeoutTransport{base: base, timeout: t}
	})
	return append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithTransport(r.transport)}, r.Options...)
}

// timeoutTransport gives each request its own deadline, which covers the
// answer's body too: the deadline is released only when the body is
// closed. A context deadline alone would bound a whole operation, which
// for a referrers listing is many requests.
type timeoutTransport struct {
	base    http.RoundTripper
	timeout time.Duration
}

func (t *timeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && req.Context().Err() == nil {
			return nil, &TimeoutError{Method: req.Method, URL: req.URL.Redacted(), After: t.timeout}
		}
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel, ctx: ctx, timeout: t}
	return resp, nil
}

// TimeoutError is a registry request that got no complete answer in time.
type TimeoutError struct {
	Method, URL string
	After       time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s %s: the registry did not answer within %s (raise --registry-timeout if it is only slow)", e.Method, e.URL, e.After)
}

type cancelOnClose struct {
	io.ReadCloser
	cancel  context.CancelFunc
	ctx     context.Context
	timeout *timeoutTransport
}

func (c *cancelOnClose) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err != nil && err != io.EOF && errors.Is(c.ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("reading the registry's answer: no complete answer within %s (raise --registry-timeout if it is only slow): %w", c.timeout.timeout, err)
	}
	return n, err
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// ParseReference parses "repo[:tag]" or "repo@sha256:…".
func (r *Registry) ParseReference(ref string) (name.Reference, error) {
	n, err := name.ParseReference(ref, append([]name.Option{name.StrictValidation}, r.NameOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w (want registry/repo:tag or registry/repo@sha256:<hex>)", ref, err)
	}
	return n, nil
}

// Resolve returns the manifest digest an image reference names. A digest
// reference is returned as is, without asking the registry: what is
// verified is the digest, never the registry's word for it. A tag is
// resolved with a HEAD request.
func (r *Registry) Resolve(ctx context.Context, ref name.Reference) (name.Digest, error) {
	if d, ok := ref.(name.Digest); ok {
		return d, nil
	}
	desc, err := remote.Head(ref, r.opts(ctx)...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("resolving %s: %w", ref, err)
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}

// Push attaches an attestation envelope to the image as an OCI 1.1
// referrer: an image manifest with subject = the image's descriptor,
// artifactType = ArtifactType, an empty config of that media type and one
// layer, the envelope. It returns the digest of that manifest.
//
// On a registry without the referrers API, go-containerregistry's write
// path also adds the manifest to the image index tagged
// "sha256-<hex of the image digest>" (the referrers tag schema of the OCI
// distribution spec), which is where remote.Referrers and other clients
// look on such registries. Pushing the same envelope twice changes nothing.
func (r *Registry) Push(ctx context.Context, image name.Digest, env *dsse.Envelope) (name.Digest, error) {
	body, err := json.Marshal(env)
	if err != nil {
		return name.Digest{}, err
	}
	subject, err := remote.Head(image, r.opts(ctx)...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("attest %s: the image must be in the registry before it is attested: %w", image, err)
	}
	if subject.Digest.String() != image.DigestStr() {
		return name.Digest{}, fmt.Errorf("attest %s: registry answered with digest %s", image, subject.Digest)
	}
	repo := image.Context()
	cfg := static.NewLayer(emptyConfig, types.MediaType(ArtifactType))
	layer := static.NewLayer(body, types.MediaType(EnvelopeMediaType))
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, r.opts(ctx)...); err != nil {
			return name.Digest{}, fmt.Errorf("attest %s: uploading blob: %w", image, err)
		}
	}
	m := artifactManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        descriptorOf(cfg, emptyConfig),
		Layers:        []v1.Descriptor{descriptorOf(layer, body)},
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		// No creation time: pushing the same envelope again must produce
		// the same manifest, not a second referrer.
		Annotations: map[string]string{"dev.vouch.predicate-type": PredicateType},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return name.Digest{}, err
	}
	h := sha256.Sum256(raw)
	ref := repo.Digest("sha256:" + hex.EncodeToString(h[:]))
	if err := remote.Put(ref, rawManifest{raw: raw, mediaType: types.OCIManifestSchema1}, r.opts(ctx)...); err != nil {
		return name.Digest{}, fmt.Errorf("attest %s: pushing the attestation manifest: %w", image, err)
	}
	return ref, nil
}

// Attach attaches a builder's attestation to the image unless the image
// already carries one, by the same key, for the same subject and output:
// an attestation carries its signing time, so signing again gives another
// envelope, and pushing it would add a second referrer for one build.
// It returns the attestation manifest and the envelope the image carries
// (the earlier one when there was one), and whether it was already there.
//
// Before pushing, entries of the referrers tag ("sha256-<hex>") whose
// manifests are gone from the registry are dropped (see pruneFallback).
func (r *Registry) Attach(ctx context.Context, image name.Digest, env *dsse.Envelope, signer TrustedKey) (name.Digest, *dsse.Envelope, bool, error) {
	body, err := json.Marshal(env)
	if err != nil {
		return name.Digest{}, nil, false, err
	}
	mine, err := Open(body, image.DigestStr(), []TrustedKey{signer})
	if err != nil {
		return name.Digest{}, nil, false, fmt.Errorf("attest %s: the new attestation does not open under its own key: %w", image, err)
	}
	fetched, err := r.List(ctx, image)
	if err != nil {
		return name.Digest{}, nil, false, fmt.Errorf("attest %s: looking for an earlier attestation: %w", image, err)
	}
	for _, f := range fetched {
		if f.Err != nil {
			continue
		}
		a, err := Open(f.Envelope, image.DigestStr(), []TrustedKey{signer})
		if err != nil || a.Claim.Subject != mine.Claim.Subject || a.Claim.Output() != mine.Claim.Output() {
			continue
		}
		var earlier dsse.Envelope
		if err := json.Unmarshal(f.Envelope, &earlier); err != nil {
			continue
		}
		return image.Context().Digest(f.Manifest), &earlier, true, nil
	}
	if err := r.pruneFallback(ctx, image); err != nil {
		return name.Digest{}, nil, false, fmt.Errorf("attest %s: %w", image, err)
	}
	att, err := r.Push(ctx, image, env)
	return att, env, false, err
}

// pruneFallback drops, from the image's referrers tag ("sha256-<hex>",
// written on registries without the referrers API), the entries whose
// manifest the registry no longer has. Registries such as distribution
// 2.8 refuse an index that names a missing manifest, so one attestation
// deleted from the registry would otherwise make every later push of an
// attestation of this image fail when the index is rewritten. Only
// entries the registry answers 404 for are dropped; any other failure is
// an error, so that nothing is dropped on a guess.
func (r *Registry) pruneFallback(ctx context.Context, image name.Digest) error {
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return err
	}
	tag := image.Context().Tag(h.Algorithm + "-" + h.Hex)
	desc, err := remote.Get(tag, r.opts(ctx)...)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading the referrers tag %s: %w", tag, err)
	}
	if desc.MediaType != types.OCIImageIndex {
		return nil // not a referrers index: leave it alone
	}
	var im v1.IndexManifest
	if err := json.Unmarshal(desc.Manifest, &im); err != nil {
		return fmt.Errorf("reading the referrers tag %s: %w", tag, err)
	}
	keep := im.Manifests[:0:0]
	var dropped []string
	for _, d := range im.Manifests {
		_, err := remote.Head(image.Context().Digest(d.Digest.String()), r.opts(ctx)...)
		switch {
		case err == nil:
			keep = append(keep, d)
		case isNotFound(err):
			dropped = append(dropped, d.Digest.String())
		default:
			return fmt.Errorf("checking the referrers tag %s entry %s: %w", tag, d.Digest, err)
		}
	}
	if len(dropped) == 0 {
		return nil
	}
	im.Manifests = keep
	raw, err := json.Marshal(im)
	if err != nil {
		return err
	}
	if err := remote.Put(tag, rawManifest{raw: raw, mediaType: types.OCIImageIndex}, r.opts(ctx)...); err != nil {
		return fmt.Errorf("dropping %d deleted attestations (%s) from the referrers tag %s: %w", len(dropped), strings.Join(dropped, ", "), tag, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// PushCosign also attaches the envelope in cosign's own layout, which is
// where cosign v2 verify-attestation looks (it does not read OCI 1.1
// referrers): the image tagged "sha256-<hex of the image digest>.att" in
// the image's repository, one layer per attestation, each layer a DSSE
// envelope of media type EnvelopeMediaType annotated with its
// "predicateType" and an empty "dev.cosignproject.cosign/signature". The layer is appended to what the tag holds (read,
// append, write: two builders pushing in the same instant can lose one
// layer, as with cosign itself); an envelope already there is not added
// twice. It returns the tag.
func (r *Registry) PushCosign(ctx context.Context, image name.Digest, env *dsse.Envelope) (name.Tag, error) {
	body, err := json.Marshal(env)
	if err != nil {
		return name.Tag{}, err
	}
	h, err := v1.NewHash(image.DigestStr())
	if err != nil {
		return name.Tag{}, err
	}
	tag := image.Context().Tag(h.Algorithm + "-" + h.Hex + ".att")
	base, err := remote.Image(tag, r.opts(ctx)...)
	if err != nil {
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
			return name.Tag{}, fmt.Errorf("reading %s: %w", tag, err)
		}
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	layer := static.NewLayer(body, types.MediaType(EnvelopeMediaType))
	want, _ := layer.Digest()
	m, err := base.Manifest()
	if err != nil {
		return name.Tag{}, fmt.Errorf("reading %s: %w", tag, err)
	}
	for _, l := range m.Layers {
		if l.Digest == want {
			return tag, nil
		}
	}
	// cosign reads every layer as a signature and requires its signature
	// annotation; for a DSSE envelope the signature is inside, so cosign
	// itself leaves the annotation empty.
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, Annotations: map[string]string{
		"predicateType": PredicateType, "dev.cosignproject.cosign/signature": ""}})
	if err != nil {
		return name.Tag{}, err
	}
	if err := remote.Write(tag, img, r.opts(ctx)...); err != nil {
		return name.Tag{}, fmt.Errorf("attest %s: pushing %s: %w", image, tag, err)
	}
	return tag, nil
}

func descriptorOf(l v1.Layer, body []byte) v1.Descriptor {
	d, _ := l.Digest()
	mt, _ := l.MediaType()
	return v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(body))}
}

// artifactManifest is an OCI image manifest used for an artifact (image
// spec 1.1). go-containerregistry's v1.Manifest has no artifactType field.
type artifactManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// rawManifest is a manifest ready to PUT (remote.Taggable).
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// Fetched is one referrer of an image that claims to be a vouch
// attestation, as read from the registry, before any signature check.
type Fetched struct {
	Manifest string // digest of the attestation manifest
	Envelope []byte // the DSSE envelope, nil if Err is set
	Err      error  // why the envelope could not be read
}

// List reads the vouch attestations attached to image: the referrers API
// where the registry has it, else the referrers tag schema
// (remote.Referrers does both). Referrers of another artifact type (cosign
// signatures, SBOMs) are skipped. Each manifest is re-checked here: its
// subject must be the image and it must have exactly one envelope layer;
// the registry's listing is not trusted for either. Blob contents are
// checked against their digests.
func (r *Registry) List(ctx context.Context, image name.Digest) ([]Fetched, error) {
	idx, err := remote.Referrers(image, r.opts(ctx)...)
	if err != nil {
		var terr *transport.Error
		if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
			return nil, nil // no such repository: nothing attached
		}
		return nil, fmt.Errorf("listing the referrers of %s: %w", image, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s: %w", image, err)
	}
	var descs []v1.Descriptor
	for _, d := range im.Manifests {
		// Registries report artifactType from the manifest's artifactType
		// or, older ones, from its config media type: Push sets both.
		if d.ArtifactType == ArtifactType {
			descs = append(descs, d)
		}
	}
	sort.Slice(descs, func(i, j int) bool { return descs[i].Digest.String() < descs[j].Digest.String() })
	var out []Fetched
	for i, d := range descs {
		if i == MaxReferrers {
			out = append(out, Fetched{Manifest: "(more)", Err: fmt.Errorf("%d more attestation manifests not read (limit %d)", len(descs)-i, MaxReferrers)})
			break
		}
		env, err := r.fetchEnvelope(ctx, image, d)
		out = append(out, Fetched{Manifest: d.Digest.String(), Envelope: env, Err: err})
	}
	return out, nil
}

func (r *Registry) fetchEnvelope(ctx context.Context, image name.Digest, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxManifestSize {
		return nil, fmt.Errorf("manifest of %d bytes is too large for an attestation", d.Size)
	}
	desc, err := remote.Get(image.Context().Digest(d.Digest.String()), r.opts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("fetching the attestation manifest: %w", err)
	}
	if h := sha256.Sum256(desc.Manifest); "sha256:"+hex.EncodeToString(h[:]) != d.Digest.String() {
		return nil, errors.New("manifest does not match its digest")
	}
	var m artifactManifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("manifest is not JSON: %w", err)
	}
	if m.Subject == nil || m.Subject.Digest.String() != image.DigestStr() {
		return nil, fmt.Errorf("manifest's subject is not %s", image.DigestStr())
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != EnvelopeMediaType {
		return nil, fmt.Errorf("manifest must have exactly one layer of type %s", EnvelopeMediaType)
	}
	l := m.Layers[0]
	if l.Size > MaxEnvelopeSize {
		return nil, fmt.Errorf("envelope of %d bytes exceeds the %d-byte limit", l.Size, MaxEnvelopeSize)
	}
	blob, err := remote.Layer(image.Context().Digest(l.Digest.String()), r.opts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("fetching the envelope: %w", err)
	}
	rc, err := blob.Compressed()
	if err != nil {
		return nil, fmt.Errorf("fetching the envelope: %w", err)
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, MaxEnvelopeSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the envelope: %w", err)
	}
	if h := sha256.Sum256(body); "sha256:"+hex.EncodeToString(h[:]) != l.Digest.String() || int64(len(body)) != l.Size {
		return nil, errors.New("envelope blob does not match its digest and size")
	}
	return body, nil
}

// Tag points tag at the image digest. It copies the manifest the registry
// holds for the digest, so the tag names exactly the verified bytes.
func (r *Registry) Tag(ctx context.Context, image name.Digest, tag name.Tag) error {
	desc, err := remote.Get(image, r.opts(ctx)...)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", image, err)
	}
	if desc.Digest.String() != image.DigestStr() {
		return fmt.Errorf("registry returned %s for %s", desc.Digest, image)
	}
	if err := remote.Tag(tag, desc, r.opts(ctx)...); err != nil {
		return fmt.Errorf("tagging %s as %s: %w", image, tag, err)
	}
	return nil
}

// TagDigest returns the digest tag currently names, or "" if the tag does
// not exist.
func (r *Registry) TagDigest(ctx context.Context, tag name.Tag) (string, error) {
	desc, err := remote.Head(tag, r.opts(ctx)...)
	if err != nil {
		var terr *transport.Error
		if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
			return "", nil
		}
		return "", fmt.Errorf("looking up %s: %w", tag, err)
	}
	return desc.Digest.String(), nil
}
