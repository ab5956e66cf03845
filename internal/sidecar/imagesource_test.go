package sidecar

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/referrer"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/server"
	"github.com/podfim/podfim/internal/target"
)

// imageBaselineFile writes a baseline recording the image digest, signed
// by key, and returns its path.
func imageBaselineFile(t *testing.T, dir, file, digest string, serial uint64, key ed25519.PrivateKey) string {
	t.Helper()
	return policyBaselineFile(t, dir, file, digest, serial, key, policy.Default())
}

// policyBaselineFile is imageBaselineFile made with, and storing, the
// policy p (as `podfim baseline --image --policy` does).
func policyBaselineFile(t *testing.T, dir, file, digest string, serial uint64, key ed25519.PrivateKey, p *policy.Policy) string {
	t.Helper()
	doc, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	b := &baseline.Baseline{
		Header: baseline.Header{Subject: digest, Serial: serial, Compared: attr.ImageStable, PolicyDigest: p.Digest(), Policy: doc,
			Image: &baseline.Image{Manifest: digest, Config: "sha256:" + strings.Repeat("c", 64), Platform: "linux/amd64"}},
		Entries: []attr.Entry{{Path: "/www", Attrs: attr.Type | attr.Mode, Type: attr.TypeDir, Mode: 0o755}},
	}
	path := filepath.Join(dir, file)
	if err := baseline.WriteFile(path, b, key); err != nil {
		t.Fatal(err)
	}
	return path
}

// registryImages pushes n random images to an in-process registry with the
// referrers API and returns their digest references.
func registryImages(t *testing.T, n int) []name.Digest {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	var refs []name.Digest
	for range n {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.NewDigest(strings.TrimPrefix(srv.URL, "http://") + "/app@" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	return refs
}

func newImageSidecar(t *testing.T, cfg Config) (*sidecar, *fakeReporter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.NewSidecar(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	rep := &fakeReporter{}
	cfg.Policy, cfg.Kube, cfg.Inotify = policy.Default(), rep, true
	cfg.Selector = target.Selector{Exe: "/app"}
	cfg.Plan = respond.Plan{Actions: []respond.Action{respond.ActionLog, respond.ActionEvent}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	given, err := cfg.Policy.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return &sidecar{cfg: cfg, log: slog.New(slog.DiscardHandler), given: given, metrics: m, refused: make(chan struct{})}, rep, reg
}

// refusals reads podfim_baseline_refusals_total{source, reason}.
func refusals(t *testing.T, reg *prometheus.Registry, source metrics.BaselineSource, reason metrics.RefusalReason) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "podfim_baseline_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["source"] == string(source) && labels["reason"] == string(reason) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no podfim_baseline_refusals_total{source=%q,reason=%q}", source, reason)
	return 0
}

// The registry source uses only the referrer signed by the key that
// records the digest the kubelet reports; everything else is refused
// with its reason, an Event and the metric.
func TestRegistrySource(t *testing.T) {
	const cid = "0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779"
	refs := registryImages(t, 3)
	pub, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	ctx := context.Background()
	push := func(ref name.Digest, file string, serial uint64, k ed25519.PrivateKey) {
		t.Helper()
		if _, err := referrer.Push(ctx, ref, imageBaselineFile(t, dir, file, ref.DigestStr(), serial, k), nil, referrer.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	push(refs[0], "a1.pfb", 1, key)
	push(refs[0], "a2.pfb", 2, key)
	push(refs[1], "b.pfb", 1, other)
	images := &fakeImages{ids: map[string]string{cid: refs[0].String()}}
	s, rep, m := newImageSidecar(t, Config{BaselineSource: metrics.BaselineRegistry, VerifyKey: pub, StateDir: t.TempDir(), Images: images})
	c := &target.Container{PID: 42, ContainerID: cid}

	b, err := s.loadImageBaseline(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if b.Serial != 2 || !b.Image.Matches(refs[0].DigestStr()) || s.base != b {
		t.Fatalf("loaded serial %d for %s", b.Serial, b.Image.Manifest)
	}
	// The same image again: the baseline in use stays.
	if again, err := s.loadImageBaseline(ctx, c); err != nil || again != b {
		t.Errorf("the same image reloaded: %v", err)
	}
	for _, tc := range []struct {
		image string
		want  metrics.RefusalReason
	}{
		{refs[1].String(), metrics.RefusedSignature},  // signed by another key
		{refs[2].String(), metrics.RefusedNotFound},   // no referrer at all
		{refs[2].DigestStr(), metrics.RefusedNoImage}, // no repository to pull from
	} {
		images.ids[cid] = tc.image
		_, err := s.loadImageBaseline(ctx, c)
		if got := refusalReason(err); got != tc.want {
			t.Errorf("image %s: %v (%s), want %s", tc.image, err, got, tc.want)
			continue
		}
		s.refuse(err, time.Second)
		if n := refusals(t, m, metrics.BaselineRegistry, tc.want); n != 1 {
			t.Errorf("image %s: podfim_baseline_refusals_total{reason=%q} = %v", tc.image, tc.want, n)
		}
	}
	// A refusal opens the port at once (serve waits for s.refused or a
	// first full check): /readyz must say unready, not refuse connections.
	select {
	case <-s.refused:
	default:
		t.Error("a refusal did not signal serve")
	}
	if got := rep.reasons(); len(got) != 3 || slices.IndexFunc(got, func(r string) bool { return r != kube.ReasonBaselineRefused }) >= 0 {
		t.Errorf("events %v, want 3 BaselineRefused", got)
	}
	// Still refused: imageBaseline waits and retries until ctx ends; it
	// never falls back to what runs.
	ctx2, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := s.imageBaseline(ctx2, c); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("imageBaseline of a refused image: %v", err)
	}
}

// A ConfigMap may hold the baselines of several images: the one for the
// running digest is used, one for another image is refused.
func TestConfigMapSource(t *testing.T) {
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	pub, key, _ := ed25519.GenerateKey(nil)
	cm := t.TempDir()
	imageBaselineFile(t, cm, "web-1.pfb", a, 1, key)
	imageBaselineFile(t, cm, "web-2.pfb", b, 1, key)
	// A mounted ConfigMap's own entries are not baselines.
	if err := os.Symlink("..2026_12_03", filepath.Join(cm, "..data")); err != nil {
		t.Fatal(err)
	}
	s, _, _ := newImageSidecar(t, Config{BaselineSource: metrics.BaselineConfigMap, BaselineFile: cm, VerifyKey: pub, ImageDigest: "example.com/web@" + b})
	c := &target.Container{PID: 42}
	got, err := s.loadImageBaseline(context.Background(), c)
	if err != nil || got.Image.Manifest != b {
		t.Fatalf("picked %v, %v; want the baseline of %s", got, err, b)
	}
	s.cfg.ImageDigest = "example.com/web@sha256:" + strings.Repeat("d", 64)
	_, err = s.loadImageBaseline(context.Background(), c)
	if refusalReason(err) != metrics.RefusedImage || !strings.Contains(err.Error(), "none of the 2 baselines") {
		t.Errorf("another image: %v", err)
	}
	// Someone else's baseline beside it (another key, a leftover in a
	// shared registry or ConfigMap) does not hide that ours is for another
	// image: the refusal that got furthest names the reason.
	_, stranger, _ := ed25519.GenerateKey(nil)
	imageBaselineFile(t, cm, "web-3.pfb", strings.TrimPrefix(s.cfg.ImageDigest, "example.com/web@"), 1, stranger)
	_, err = s.loadImageBaseline(context.Background(), c)
	if refusalReason(err) != metrics.RefusedImage || !errors.Is(err, baseline.ErrSignature) {
		t.Errorf("ours for another image, a stranger's for this one: %v (%s), want %s", err, refusalReason(err), metrics.RefusedImage)
	}
	if err := os.Remove(filepath.Join(cm, "web-3.pfb")); err != nil {
		t.Fatal(err)
	}
	// The kubelet may name a multi-platform image by its index: only the
	// baseline of this node's platform fits it.
	idx := "sha256:" + strings.Repeat("e", 64)
	other := map[string]string{"amd64": "arm64"}[runtime.GOARCH]
	if other == "" {
		other = "amd64"
	}
	for i, arch := range []string{other, runtime.GOARCH} {
		bl := &baseline.Baseline{
			Header: baseline.Header{Subject: idx, Serial: uint64(9 - i), Compared: attr.ImageStable, PolicyDigest: policy.Default().Digest(),
				Image: &baseline.Image{Manifest: "sha256:" + strings.Repeat(fmt.Sprint(i), 64), Config: "sha256:" + strings.Repeat("c", 64),
					Index: idx, Platform: runtime.GOOS + "/" + arch}},
			Entries: []attr.Entry{{Path: "/www", Attrs: attr.Type | attr.Mode, Type: attr.TypeDir, Mode: 0o755}},
		}
		if err := baseline.WriteFile(filepath.Join(cm, "index-"+arch+".pfb"), bl, key); err != nil {
			t.Fatal(err)
		}
	}
	s.cfg.ImageDigest = "example.com/web@" + idx
	got, err = s.loadImageBaseline(context.Background(), c)
	if err != nil || got.Image.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("by index: picked %v, %v; want the baseline for %s/%s, not the newer one for %s", got, err, runtime.GOOS, runtime.GOARCH, other)
	}
}

func TestImageSourceValidate(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{BaselineSource: metrics.BaselineRegistry, StateDir: "/s"}, "needs --verify-key"},
		{Config{BaselineSource: metrics.BaselineConfigMap, VerifyKey: pub}, "needs --baseline"},
		{Config{BaselineSource: metrics.BaselineRegistry, VerifyKey: pub, StateDir: "/s", BaselineFile: "/b"}, "takes no --baseline"},
		{Config{BaselineSource: "s3", StateDir: "/s"}, "unknown --baseline-source"},
		{Config{BaselineSource: metrics.BaselineRegistry, VerifyKey: pub, StateDir: "/s", ImageDigest: "web:v1"}, "invalid --image-digest"},
	} {
		tc.cfg.Policy, tc.cfg.Inotify, tc.cfg.Selector = policy.Default(), true, target.Selector{Exe: "/app"}
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg.BaselineSource, err, tc.want)
		}
	}
}

// The refusal Event's message is bounded without splitting a character:
// a reason of multi-byte characters (a repository or registry message in
// another script) cut at maxRefusalEvent bytes stays valid UTF-8. Before
// the fix the cut fell inside a "€", and the Event showed a broken byte.
func TestRefusalEventCutOnRune(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	s, rep, _ := newImageSidecar(t, Config{BaselineSource: metrics.BaselineRegistry, VerifyKey: pub, StateDir: t.TempDir()})
	for pad := range 3 {
		rep.mu.Lock()
		rep.messages = nil
		rep.mu.Unlock()
		s.refuse(fmt.Errorf("%w: %s%s", referrer.ErrNotFound, strings.Repeat("x", pad), strings.Repeat("€", 400)), time.Second)
		rep.mu.Lock()
		msgs := slices.Clone(rep.messages)
		rep.mu.Unlock()
		if len(msgs) != 1 {
			t.Fatalf("%d events, want 1", len(msgs))
		}
		if m := msgs[0]; len(m) > maxRefusalEvent || !utf8.ValidString(m) || !strings.HasSuffix(m, "...") {
			t.Errorf("pad %d: event message of %d bytes, valid UTF-8 %v: %q", pad, len(m), utf8.ValidString(m), m[max(len(m)-12, 0):])
		}
	}
}

// /readyz names a refusal: the source, the reason and what it means, the
// image and the key; and says "not started" again once a baseline is in
// use. Before, it said only "not started" while every baseline was
// refused, which sent operators looking for a slow first check.
func TestReadyzNamesRefusal(t *testing.T) {
	const cid = "0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779"
	refs := registryImages(t, 2)
	pub, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	dir := t.TempDir()
	ctx := context.Background()
	for i, k := range []ed25519.PrivateKey{key, other} {
		if _, err := referrer.Push(ctx, refs[i], imageBaselineFile(t, dir, fmt.Sprint(i, ".pfb"), refs[i].DigestStr(), 1, k), nil, referrer.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	images := &fakeImages{ids: map[string]string{cid: refs[1].String()}}
	s, rep, _ := newImageSidecar(t, Config{BaselineSource: metrics.BaselineRegistry, VerifyKey: pub, StateDir: t.TempDir(), Images: images})
	s.resp = respond.New(s.cfg.Plan, s.log, s.metrics, s, rep, nil)
	c := &target.Container{PID: 42, ContainerID: cid}
	ready := readiness{s.resp, s}

	_, err := s.loadImageBaseline(ctx, c)
	if err == nil {
		t.Fatal("a baseline signed by another key was used")
	}
	s.refuse(err, time.Second)
	ok, reasons := server.Ready(ready)
	want := "not verified: baseline refused (source registry, reason signature: unsigned, or signed by another key) for image " +
		refs[1].String() + ", key " + baseline.KeyID(pub)
	if ok || len(reasons) != 1 || reasons[0] != want {
		t.Errorf("/readyz after a refusal: ready %v, reasons %q, want %q", ok, reasons, want)
	}
	if strings.Contains(reasons[0], err.Error()) {
		t.Errorf("/readyz repeats the error: %q", reasons[0])
	}

	images.ids[cid] = refs[0].String()
	if _, err := s.loadImageBaseline(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, reasons := server.Ready(ready); len(reasons) != 1 || !strings.HasPrefix(reasons[0], "not started:") {
		t.Errorf("/readyz once a baseline is in use: %q", reasons)
	}
}

// The refusal /readyz names is bounded, whatever the image reference.
func TestRefusalLineBounded(t *testing.T) {
	line := refusalLine(metrics.BaselineRegistry, metrics.RefusedNotFound, strings.Repeat("é", 2000), "k")
	if len(line) > maxRefusalReady || !utf8.ValidString(line) {
		t.Errorf("refusal line of %d bytes (valid UTF-8 %v)", len(line), utf8.ValidString(line))
	}
	if got := refusalLine(metrics.BaselineConfigMap, metrics.RefusedNoImage, "", "k"); !strings.Contains(got, "for image unknown") {
		t.Errorf("no image: %q", got)
	}
}

// Issue 11 item 8 for the sidecar: a baseline is compared under the policy
// stored in it unless the sidecar is given one; a given policy with another
// digest is refused (reason "policy", fail closed) unless
// AllowPolicyChange. Before, the sidecar always used its own --policy (the
// built-in one by default), so a baseline made with a custom policy gave
// false "removed" and "added" findings.
func TestBaselinePolicy(t *testing.T) {
	a := "sha256:" + strings.Repeat("a", 64)
	pub, key, _ := ed25519.GenerateKey(nil)
	custom, err := policy.Parse([]byte("version: 1\nrules:\n- path: /www\n  preset: ReadOnly\n"))
	if err != nil {
		t.Fatal(err)
	}
	cm := t.TempDir()
	policyBaselineFile(t, cm, "web.pfb", a, 1, key, custom)
	c := &target.Container{PID: 42, ContainerID: "c1"}
	images := &fakeImages{ids: map[string]string{"c1": a}}
	for _, tc := range []struct {
		what         string
		given        *policy.Policy // nil: none given (the built-in one)
		allow        bool
		want         error
		etcProtected bool // the matcher in use protects /etc/passwd
	}{
		{"none given: the stored policy", nil, false, nil, false},
		{"the same one given", custom, false, nil, false},
		{"another one given", policy.Default(), false, ErrPolicy, false},
		{"another one given, allowed", policy.Default(), true, nil, true},
	} {
		t.Run(tc.what, func(t *testing.T) {
			cfg := Config{BaselineSource: metrics.BaselineConfigMap, BaselineFile: cm, VerifyKey: pub, StateDir: t.TempDir(), Images: images,
				AllowPolicyChange: tc.allow}
			s, _, reg := newImageSidecar(t, cfg)
			if tc.given != nil {
				m, err := tc.given.Compile()
				if err != nil {
					t.Fatal(err)
				}
				s.cfg.Policy, s.cfg.PolicyGiven, s.given = tc.given, true, m
			}
			_, err := s.loadImageBaseline(context.Background(), c)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil {
				if got := refusalReason(err); got != metrics.RefusedPolicy {
					t.Errorf("reason %s, want policy", got)
				}
				if !strings.Contains(err.Error(), custom.Digest()) || !strings.Contains(err.Error(), policy.Default().Digest()) {
					t.Errorf("the error does not name both digests: %v", err)
				}
				s.refuse(err, time.Second)
				if n := refusals(t, reg, metrics.BaselineConfigMap, metrics.RefusedPolicy); n != 1 {
					t.Errorf("refusals{reason=policy} = %v", n)
				}
				return
			}
			_, skip := s.currentMatcher().Match("/etc/passwd")
			if !skip != tc.etcProtected {
				t.Errorf("/etc/passwd protected: %v, want %v", !skip, tc.etcProtected)
			}
			if _, skip := s.currentMatcher().Match("/www/index.html"); skip {
				t.Error("/www/index.html is not protected")
			}
		})
	}
}
