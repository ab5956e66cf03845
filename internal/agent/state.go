package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"k8s.io/apimachinery/pkg/util/validation"
)

// stateDir is the agent's state on the node: pods/<pod UID>/<container>/
// holds what a sidecar keeps in its own state volume (the first-sight
// baseline, restore originals, evidence), and pods/<pod UID>/pod the pod's
// namespace/name for operators. A pod's directory lives as long as the pod:
// an agent restart finds the baselines again (a tampered container is
// never re-baselined), and the pods deleted meanwhile are collected once
// the informer has listed the node's pods.
type stateDir struct{ dir string }

// uidPattern is the form of a pod UID (the API server's UUIDs): nothing
// else becomes a directory name.
var uidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// podsDir is the directory of the pods' state.
func (s *stateDir) podsDir() string { return filepath.Join(s.dir, "pods") }

// init creates the state directory, private to the agent.
func (s *stateDir) init() error {
	if err := os.MkdirAll(s.podsDir(), 0o700); err != nil {
		return fmt.Errorf("failed to create the state directory: %w", err)
	}
	return nil
}

// container returns the state directory of a pod's container.
func (s *stateDir) container(uid, name string) (string, error) {
	if !uidPattern.MatchString(uid) {
		return "", fmt.Errorf("unexpected pod UID %q", uid)
	}
	if len(validation.IsDNS1123Label(name)) > 0 {
		return "", fmt.Errorf("unexpected container name %q", name)
	}
	return filepath.Join(s.podsDir(), uid, name), nil
}

// writePod records the pod's namespace/name beside its containers' state.
func (s *stateDir) writePod(uid, key string) error {
	if !uidPattern.MatchString(uid) {
		return fmt.Errorf("unexpected pod UID %q", uid)
	}
	dir := filepath.Join(s.podsDir(), uid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "pod"), []byte(key+"\n"), 0o600)
}

// uids lists the pods that have state.
func (s *stateDir) uids() ([]string, error) {
	ents, err := os.ReadDir(s.podsDir())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && uidPattern.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// remove deletes the state of the pod with uid.
func (s *stateDir) remove(uid string) error {
	if !uidPattern.MatchString(uid) {
		return errors.New("unexpected pod UID")
	}
	return os.RemoveAll(filepath.Join(s.podsDir(), uid))
}
