package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/drift"
	"github.com/podfim/podfim/internal/evidence"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/referrer"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/sidecar"
	"github.com/podfim/podfim/internal/target"
)

// keyErr is the log key of an error.
const keyErr = "error"

// sidecarFlags are the sidecar's settings. Each can come from a flag, an
// environment variable PODFIM_<FLAG> (upper case, '-' as '_') or a key of
// the --config file named like the flag; flags win over the environment,
// which wins over the file.
type sidecarFlags struct {
	config       string
	policy       string
	policyYAML   string // inline policy (the admission webhook's podfim.io/paths)
	allowPolicy  bool   // compare under the given policy although the baseline's differs
	baseline     string
	source       string
	imageDigest  string
	pullAuth     string
	pullInsecure bool
	verifyKey    string
	subject      string
	stateDir     string
	targetName   string
	targetExe    string
	targetID     string
	inotify      bool
	execDrift    bool
	execInterval time.Duration
	quick        time.Duration
	full         time.Duration
	retarget     time.Duration
	respond      []string
	escalate     []string
	killLimit    int
	killWindow   time.Duration
	deleteMinAge time.Duration
	restoreMax   int64
	evidenceMax  int64
	evidenceFile int64
	evidenceDiff int64
	webhookURL   string
	webhookTO    time.Duration
	webhookToken string
	webhookCA    string
	listen       string
	logLevel     string

	// inCluster makes the Kubernetes API client of --target-name; nil is
	// kube.NewInCluster (tests replace it).
	inCluster func(kube.Pod) (*kube.Client, error)
}

func (f *sidecarFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML file of settings, keyed by flag name (e.g. \"quick-interval: 30s\"); flags and PODFIM_* variables win over it")
	fs.StringVar(&f.policy, "policy", "", "policy file (YAML); default: the built-in policy for container images")
	fs.BoolVar(&f.allowPolicy, "allow-policy-change", false, "compare under --policy (or --policy-yaml) although the baseline was made with another policy (paths one of them skips show as added or removed); without it such a baseline is refused, and without --policy a baseline's stored policy is used")
	fs.StringVar(&f.policyYAML, "policy-yaml", "", "the policy itself, as YAML or JSON (the admission webhook sets PODFIM_POLICY_YAML from the pod's annotations); excludes --policy")
	fs.StringVar(&f.baseline, "baseline", "", "trusted baseline file (e.g. from a ConfigMap or the sidecar image); with --baseline-source configmap, the mounted ConfigMap's directory of baselines; empty: baseline the container at first sight into --state-dir")
	fs.StringVar(&f.source, "baseline-source", "", "where the baseline comes from: registry (the running image's signed referrer), configmap (of the baselines in --baseline, the one for the running image), file, first-sight; default: file with --baseline, else first-sight. registry and configmap need --verify-key and fail closed (docs/image-baselines.md)")
	fs.StringVar(&f.imageDigest, "image-digest", "", "the image the app container runs, REPO@sha256:... (registry and configmap sources), when the sidecar cannot read the pod's status (no token); the webhook sets it from an image named by digest")
	fs.StringVar(&f.pullAuth, "registry-authfile", "", "registry credentials for --baseline-source registry (the pod's image pull secret, .dockerconfigjson); default: none")
	fs.BoolVar(&f.pullInsecure, "registry-insecure", false, "allow plain HTTP to the image's registry (--baseline-source registry; loopback registries get it anyway)")
	fs.StringVar(&f.verifyKey, "verify-key", "", "public key file: refuse a --baseline (or a registry or ConfigMap baseline) not signed by this key")
	fs.StringVar(&f.subject, "subject", "", "refuse a --baseline not made for this subject (baseline --subject; for an image, its digest): with --verify-key, a signed baseline of another tree is not trusted")
	fs.StringVar(&f.stateDir, "state-dir", "/var/lib/podfim", "directory only the sidecar mounts, for the first-sight baseline; it survives sidecar restarts so a tampered app is never re-baselined")
	fs.StringVar(&f.targetName, "target-name", "", "select the app container by its name in the pod, through the Kubernetes API: needs RBAC get on pods in the pod's namespace and POD_NAMESPACE, POD_NAME from the downward API; follows restarts")
	fs.StringVar(&f.targetExe, "target-exe", "", "select the app container by the path of its executable inside the container")
	fs.StringVar(&f.targetID, "target-container", "", "select the app container by container ID (at least 12 hex digits)")
	fs.BoolVar(&f.inotify, "inotify", true, "watch directories with inotify for changes within milliseconds")
	fs.BoolVar(&f.execDrift, "exec-drift", true, "report every process of the app container that runs what the baseline does not hold: an added or changed binary, a deleted one, one on a volume, a memfd, a script outside the baseline (docs/drift.md)")
	fs.DurationVar(&f.execInterval, "exec-interval", drift.DefaultInterval, "how often /proc is polled for new processes of the app (execution drift); a process that lives shorter may escape")
	fs.DurationVar(&f.quick, "quick-interval", 5*time.Minute, "interval of quick checks (metadata; hash only what changed): the safety net under inotify; 0 disables")
	fs.DurationVar(&f.full, "full-interval", time.Hour, "interval of full checks (every file hashed: the compliance evidence); 0 disables")
	fs.DurationVar(&f.retarget, "retarget-interval", target.DefaultInterval, "how often /proc is polled for the app container restarting")
	fs.StringSliceVar(&f.respond, "respond", []string{"log", "metric", "event", "unready"}, "actions for every finding, in order: log, metric, event, unready, quarantine, restore, kill, delete, webhook (event, quarantine and delete use the Kubernetes API: POD_NAMESPACE, POD_NAME from the downward API and RBAC; without it they are skipped and the rest goes on)")
	fs.StringSliceVar(&f.escalate, "escalate", []string{"unready"}, "actions instead of kill once --kill-limit kills happened within --kill-window, and instead of delete when its guard refuses")
	fs.IntVar(&f.killLimit, "kill-limit", respond.DefaultKillLimit, "most kills of the app container within --kill-window")
	fs.DurationVar(&f.killWindow, "kill-window", respond.DefaultKillWindow, "sliding window of --kill-limit")
	fs.DurationVar(&f.deleteMinAge, "delete-min-age", respond.DefaultDeleteMinAge, "youngest pod the delete action deletes (the guard against delete loops: a younger pod gets --escalate); only pods with a controller are ever deleted")
	fs.Int64Var(&f.restoreMax, "restore-max-bytes", respond.DefaultRestoreMaxBytes, "largest file the restore action keeps and writes back (original bytes are kept in --state-dir/objects)")
	fs.Int64Var(&f.evidenceMax, "evidence-max-bytes", evidence.DefaultMaxBytes, "most bytes of evidence (changed and added files' content and diffs, kept before the response in --state-dir/evidence); beyond, findings keep only hashes and type, counted in podfim_evidence_total")
	fs.Int64Var(&f.evidenceFile, "evidence-max-file-bytes", evidence.DefaultMaxFileBytes, "most bytes of evidence kept of one file; the rest is cut (the record says truncated)")
	fs.Int64Var(&f.evidenceDiff, "evidence-max-diff-bytes", evidence.DefaultMaxDiffBytes, "largest text file (either side) a unified diff against the original is made of; the original is known when restore is in the plan")
	fs.StringVar(&f.webhookURL, "webhook-url", "", "URL the webhook action POSTs each finding to (JSON)")
	fs.DurationVar(&f.webhookTO, "webhook-timeout", respond.DefaultWebhookTimeout, "timeout of one webhook attempt")
	fs.StringVar(&f.webhookToken, "webhook-token-file", "", "file holding a bearer token for the webhook")
	fs.StringVar(&f.webhookCA, "webhook-ca-file", "", "PEM CA bundle for an https webhook")
	fs.StringVar(&f.listen, "listen", ":9090", "address of /metrics, /healthz and /readyz (read-only); empty disables")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
}

// resolve fills the flags not given on the command line from the
// environment, then from the config file.
func (f *sidecarFlags) resolve(fs *pflag.FlagSet, getenv func(string) string) error {
	return resolveFlags(fs, f.config, getenv)
}

// resolveFlags fills the flags of fs not given on the command line from
// the environment (PODFIM_<FLAG>), then from the YAML file config (or
// PODFIM_CONFIG's), keyed by flag name: the sidecar's and the agent's.
func resolveFlags(fs *pflag.FlagSet, config string, getenv func(string) string) error {
	var file map[string]any
	path := config
	if !fs.Changed("config") {
		if v := getenv("PODFIM_CONFIG"); v != "" {
			path = v
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fail(ExitIO, fmt.Errorf("failed to read config %q: %w", path, err))
		}
		if err := yaml.Unmarshal(data, &file); err != nil {
			return fail(ExitUsage, fmt.Errorf("config %q: %w", path, err))
		}
		for k := range file {
			if k == "config" || fs.Lookup(k) == nil {
				return failf(ExitUsage, "config %q: unknown setting %q (settings are named like the sidecar's flags)", path, k)
			}
		}
	}
	var errs []error
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Changed || fl.Name == "config" {
			return
		}
		env := "PODFIM_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		val, from := getenv(env), env
		if val == "" {
			v, ok := file[fl.Name]
			if !ok {
				return
			}
			val, from = fileValue(v), "config "+path
		}
		if err := fs.Set(fl.Name, val); err != nil {
			errs = append(errs, fmt.Errorf("%s: invalid %s: %w", from, fl.Name, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fail(ExitUsage, err)
	}
	return nil
}

// fileValue turns a YAML value into flag syntax (lists become a,b,c).
func fileValue(v any) string {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, x := range list {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

// build turns the resolved flags into a validated sidecar configuration.
// getenv gives the downward API's variables (--target-name).
func (f *sidecarFlags) build(getenv func(string) string) (sidecar.Config, *slog.Logger, error) {
	var cfg sidecar.Config
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return cfg, nil, failf(ExitUsage, "--log-level: %v", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if f.policyYAML != "" && f.policy != "" {
		return cfg, nil, failf(ExitUsage, "--policy and --policy-yaml are mutually exclusive: give the policy one way")
	}
	p := policy.Default()
	if f.policy != "" {
		var err error
		if p, err = policy.Load(f.policy); err != nil {
			return cfg, nil, fail(ExitPolicy, err)
		}
	}
	if f.policyYAML != "" {
		var err error
		if p, err = policy.Parse([]byte(f.policyYAML)); err != nil {
			return cfg, nil, fail(ExitPolicy, fmt.Errorf("--policy-yaml: %w", err))
		}
	}
	cfg = sidecar.Config{
		Selector:          target.Selector{Exe: f.targetExe, ContainerID: f.targetID},
		Policy:            p,
		PolicyGiven:       f.policy != "" || f.policyYAML != "",
		AllowPolicyChange: f.allowPolicy,
		BaselineFile:      f.baseline,
		BaselineSource:    metrics.BaselineSource(f.source),
		ImageDigest:       f.imageDigest,
		Pull:              referrer.Options{Authfile: f.pullAuth, Insecure: f.pullInsecure},
		Subject:           f.subject,
		StateDir:          f.stateDir,
		Inotify:           f.inotify,
		ExecDrift:         f.execDrift,
		ExecInterval:      f.execInterval,
		Quick:             f.quick,
		Full:              f.full,
		Retarget:          f.retarget,
		Listen:            f.listen,
		Version:           versionString(),
		Evidence:          evidence.Limits{MaxBytes: f.evidenceMax, MaxFileBytes: f.evidenceFile, MaxDiffBytes: f.evidenceDiff},
		Plan: respond.Plan{
			Actions:         respond.ParseActions(f.respond...),
			Escalate:        respond.ParseActions(f.escalate...),
			KillLimit:       f.killLimit,
			KillWindow:      f.killWindow,
			RestoreMaxBytes: f.restoreMax,
			DeleteMinAge:    f.deleteMinAge,
		},
	}
	if f.webhookURL != "" {
		cfg.Plan.Webhook = &respond.WebhookConfig{URL: f.webhookURL, Timeout: f.webhookTO, TokenFile: f.webhookToken, CAFile: f.webhookCA}
	}
	if f.verifyKey != "" {
		pub, err := baseline.LoadPublicKey(f.verifyKey)
		if err != nil {
			return cfg, nil, fail(ExitIO, err)
		}
		cfg.VerifyKey = pub
	}
	reg := prometheus.NewRegistry()
	m, err := metrics.NewSidecar(reg, cfg.Version)
	if err != nil {
		return cfg, nil, fail(ExitError, err)
	}
	cfg.Metrics, cfg.Registry = m, reg
	// Creating the client sends no request. --target-name cannot work
	// without it; everything else can, so its absence is only a warning.
	var kubeErr error
	client, err := f.kubeClient(getenv)
	switch {
	case f.targetName != "":
		cfg.TargetName = f.targetName
		if err != nil {
			kubeErr = fmt.Errorf("--target-name: %w", err)
		} else {
			cfg.Names = client
		}
	case err != nil && cfg.Plan.NeedsAPI():
		log.Warn("no Kubernetes API access: the event, quarantine and delete responses are skipped; detection and the other responses work", keyErr, err.Error())
	}
	if err := errors.Join(cfg.Validate(), kubeErr); err != nil {
		return cfg, nil, fail(ExitUsage, fmt.Errorf("invalid sidecar configuration: %w", err))
	}
	if client != nil {
		client.CountRequests(m)
		cfg.Images = client
		cfg.Kube = kube.NewReporter(client, kube.ReporterConfig{Pod: client.Pod(), Events: cfg.Plan.Uses(respond.ActionEvent)}, log, m)
	}
	return cfg, log, nil
}

// kubeClient makes the client that resolves --target-name.
func (f *sidecarFlags) kubeClient(getenv func(string) string) (*kube.Client, error) {
	pod, err := kube.PodFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	newClient := f.inCluster
	if newClient == nil {
		newClient = kube.NewInCluster
	}
	return newClient(pod)
}

func newSidecarCmd(s *streams) *cobra.Command {
	var f sidecarFlags
	c := &cobra.Command{
		Use:   "sidecar",
		Short: "Watch the app container of this pod and respond when its files change",
		Long: `sidecar runs in a pod with shareProcessNamespace: true. It finds the app
container's processes in /proc (the only other container, or the one named by
--target-name through the Kubernetes API, --target-exe or --target-container;
it follows restarts), reads its files through /proc/<pid>/root
without ever following a symlink, compares them with a trusted baseline
(--baseline, or the container at first sight kept in --state-dir), and
responds to every change: log, metric, event (a Kubernetes Event on the
pod), unready (/readyz fails while a violation is open), quarantine (label
the pod podfim.io/quarantined=true while a violation is open), restore (write
back the original bytes, mode, owner and xattrs of files up to
--restore-max-bytes, never through a symlink), kill (SIGKILL the app's
processes so the kubelet starts a fresh container; bounded by --kill-limit,
then --escalate), delete (delete the pod so its controller replaces it;
guarded by --delete-min-age), webhook.

Every flag can also be set with PODFIM_<FLAG> (e.g. PODFIM_QUICK_INTERVAL=30s)
or in the --config file; flags win over the environment, which wins over the
file. It needs CAP_SYS_PTRACE (read another container's /proc/<pid>/root),
CAP_KILL (kill), CAP_DAC_READ_SEARCH for files unreadable even to root, and
for restore CAP_CHOWN, CAP_FOWNER and CAP_DAC_OVERRIDE; or, in restricted mode,
no capability but the app's uid and gid (docs/security.md). It makes itself
non-dumpable, so that an app of its uid cannot reach its files.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := undumpable(); err != nil {
				return err
			}
			if err := f.resolve(c.Flags(), os.Getenv); err != nil {
				return err
			}
			cfg, log, err := f.build(os.Getenv)
			if err != nil {
				return err
			}
			if err := sidecar.Run(c.Context(), cfg, log); err != nil {
				return fail(ExitError, err)
			}
			return nil
		},
	}
	f.register(c.Flags())
	return c
}
