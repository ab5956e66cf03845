package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/inject"
	"github.com/podfim/podfim/internal/metrics"
)

// refs are the files a pod's annotations name, where the agent reads
// them: a sidecar gets them mounted; the agent reads the ConfigMaps of the
// pod's namespace through the API (a file: reference is a path in the
// agent's own image, as it is in the sidecar's) and keeps a copy in the
// container's state directory, out of the app's reach, for the instance.
type refs struct {
	source       metrics.BaselineSource
	baselineFile string // source file: the file; source configmap: the directory
	verifyKey    ed25519.PublicKey
}

// resolveRefs fetches what s names into dir (the container's state).
func resolveRefs(ctx context.Context, api PodAPI, s inject.Settings, dir string) (refs, error) {
	var r refs
	if s.VerifyKey != nil {
		p, err := fetchRef(ctx, api, *s.VerifyKey, filepath.Join(dir, "refs"), "verify-key")
		if err != nil {
			return r, fmt.Errorf("annotation %q: %w", inject.AnnVerifyKey, err)
		}
		if r.verifyKey, err = baseline.LoadPublicKey(p); err != nil {
			return r, fmt.Errorf("annotation %q: %w", inject.AnnVerifyKey, err)
		}
	}
	switch {
	case s.Registry:
		r.source = metrics.BaselineRegistry
	case s.MapSource:
		r.source = metrics.BaselineConfigMap
		d, err := fetchMap(ctx, api, s.BaselineMap, filepath.Join(dir, "refs", "baselines"))
		if err != nil {
			return r, fmt.Errorf("annotation %q: %w", inject.AnnBaselineMap, err)
		}
		r.baselineFile = d
	case s.Baseline != nil:
		r.source = metrics.BaselineFile
		p, err := fetchRef(ctx, api, *s.Baseline, filepath.Join(dir, "refs"), "baseline")
		if err != nil {
			return r, fmt.Errorf("annotation %q: %w", inject.AnnBaseline, err)
		}
		r.baselineFile = p
	default:
		r.source = metrics.BaselineFirstSight
	}
	return r, nil
}

// fetchRef returns the path of the file ref names: a file of the agent's
// image as it is, a ConfigMap's key copied to dir/name.
func fetchRef(ctx context.Context, api PodAPI, ref inject.Ref, dir, name string) (string, error) {
	if ref.Source == inject.SourceFile {
		return ref.Path, nil
	}
	cm, err := api.GetConfigMap(ctx, ref.ConfigMap)
	if err != nil {
		return "", err
	}
	data, ok := cm.BinaryData[ref.Key]
	if !ok {
		s, ok := cm.Data[ref.Key]
		if !ok {
			return "", fmt.Errorf("ConfigMap %s has no key %q", ref.ConfigMap, ref.Key)
		}
		data = []byte(s)
	}
	return writeRef(dir, name, data)
}

// fetchMap copies every key of a ConfigMap of baselines into dir, which it
// empties first, and returns dir.
func fetchMap(ctx context.Context, api PodAPI, name, dir string) (string, error) {
	cm, err := api.GetConfigMap(ctx, name)
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	for k, v := range cm.BinaryData {
		if _, err := writeRef(dir, k, v); err != nil {
			return "", err
		}
	}
	for k, v := range cm.Data {
		if _, err := writeRef(dir, k, []byte(v)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// writeRef writes data to dir/name, name being a ConfigMap key (the API
// server allows letters, digits, '-', '_' and '.'; anything that could
// leave dir is refused again here).
func writeRef(dir, name string, data []byte) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return "", errors.New("invalid ConfigMap key")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}
