package sidecar

import (
	"errors"
	"fmt"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/policy"
)

// ErrPolicy: the baseline was made with another policy than the one the
// sidecar was given, and Config.AllowPolicyChange is off.
var ErrPolicy = errors.New("the baseline was made with another policy")

// Log keys of the two policies' digests.
const (
	keyPolicy         = "policy_digest"
	keyBaselinePolicy = "baseline_policy_digest"
)

// matcherFor returns the matcher to compare with b (issue 11 item 8), as
// `podfim check` chooses its policy: the policy stored in b unless the
// sidecar was given one (--policy, --policy-yaml: Config.PolicyGiven);
// a given policy, or the built-in one for a baseline that stores none,
// whose digest differs from b's is refused (ErrPolicy), unless
// Config.AllowPolicyChange: every path one policy skips and the other
// records would show as added or removed, and attributes one collects and
// the other does not would be compared against nothing.
func (s *sidecar) matcherFor(b *baseline.Baseline) (*policy.Matcher, error) {
	if b.Policy != nil && !s.cfg.PolicyGiven {
		p, err := policy.Parse(b.Policy)
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w: its stored policy is invalid: %w", baseline.ErrFormat, err)
		case p.Digest() != b.PolicyDigest:
			return nil, fmt.Errorf("%w: its stored policy has digest %s, the header says %s", baseline.ErrFormat, p.Digest(), b.PolicyDigest)
		}
		if p.Digest() == s.cfg.Policy.Digest() {
			return s.given, nil
		}
		return p.Compile()
	}
	what := "the built-in policy"
	if s.cfg.PolicyGiven {
		what = "the sidecar's policy (--policy, --policy-yaml or the webhook's podfim.io/paths)"
	}
	if d := s.cfg.Policy.Digest(); d != b.PolicyDigest {
		if !s.cfg.AllowPolicyChange {
			return nil, fmt.Errorf("%w: %s has digest %s, the baseline's %s; give the baseline's policy, none (the stored one is used), or --allow-policy-change",
				ErrPolicy, what, d, orNone(b.PolicyDigest))
		}
		s.log.Warn("comparing with another policy than the baseline's: paths one of them skips show as added or removed",
			keyPolicy, d, keyBaselinePolicy, orNone(b.PolicyDigest))
	}
	return s.given, nil
}

// orNone names an empty digest in a message.
func orNone(d string) string {
	if d == "" {
		return "none"
	}
	return d
}
