package inject

import (
	"reflect"
	"testing"
)

// FuzzParseAnnotations checks that the parser never panics and that a
// accepted annotation set survives writing it back in canonical form:
// ParseAnnotations(Annotations(s)) == s. The seeds are the annotations of the
// golden pods and the error table's values.
func FuzzParseAnnotations(f *testing.F) {
	f.Add("web", "/www:ReadOnly,/var/log:Growing", "**/*.swp", "log,metric,restore,kill", "unready", "configmap:b/www.pfb", "30s", "18190", "", "", "")
	f.Add("", "/", "", "log", "", "file:/b.pfb", "0", "9090", "file:/k.pub", "web/www", "")
	f.Add("App", "www:Readonly", "*.swp", "log,,log", "kill", "s3://x", "-1h", "70000", "", "a\x1b", "Bad_Name")
	f.Add("a", "/a,/a:Ignore", "/x/**", "webhook", "", "first-sight", "1m", "1", "", "", "")
	f.Add("", "", "", "", "", "configmap", "", "", "configmap:keys/ci.pub", "shop web", "web-baselines")
	f.Add("", "", "", "", "", "registry", "", "", "configmap:keys/ci.pub", "", "")
	f.Fuzz(func(t *testing.T, target, paths, exclude, respond, escalate, baseline, quick, port, verifyKey, subject, baselineMap string) {
		ann := map[string]string{}
		for k, v := range map[string]string{AnnTarget: target, AnnPaths: paths, AnnExclude: exclude, AnnRespond: respond,
			AnnEscalate: escalate, AnnBaseline: baseline, AnnQuick: quick, AnnPort: port,
			AnnVerifyKey: verifyKey, AnnSubject: subject, AnnBaselineMap: baselineMap} {
			if v != "" {
				ann[k] = v
			}
		}
		s, err := ParseAnnotations(ann, []string{"log"})
		if err != nil {
			return
		}
		again, err := ParseAnnotations(s.Annotations(), []string{"log"})
		if err != nil {
			t.Fatalf("canonical form %v of %v is rejected: %v", s.Annotations(), ann, err)
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("round trip changed the settings:\n%+v\n%+v", s, again)
		}
		if _, err := s.Policy(); err != nil {
			t.Fatalf("accepted settings make an invalid policy: %v", err)
		}
	})
}
