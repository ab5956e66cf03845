package cli

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/podfim/podfim/internal/agent"
	"github.com/podfim/podfim/internal/drift"
	"github.com/podfim/podfim/internal/evidence"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/referrer"
	"github.com/podfim/podfim/internal/respond"
)

// agentFlags are the node agent's settings: where it runs, and the
// defaults of the containers it protects, which each pod's podfim.io/*
// annotations override. As the sidecar's, each can come from a flag,
// PODFIM_<FLAG> or the --config file.
type agentFlags struct {
	config       string
	nodeName     string
	stateDir     string
	listen       string
	policy       string
	pullAuth     string
	pullInsecure bool
	inotify      bool
	execDrift    bool
	execInterval time.Duration
	quick, full  time.Duration
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
	logLevel     string
}

func (f *agentFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML file of settings, keyed by flag name; flags and PODFIM_* variables win over it")
	fs.StringVar(&f.nodeName, "node-name", "", "the node the agent runs on; default: NODE_NAME (the DaemonSet sets it from spec.nodeName)")
	fs.StringVar(&f.stateDir, "state-dir", "/var/lib/podfim/agent", "the agent's directory on the node (a hostPath): first-sight baselines, restore originals and evidence per pod UID and container; it must survive agent restarts")
	fs.StringVar(&f.listen, "listen", ":9090", "address of /metrics, /healthz and /readyz (read-only); empty disables")
	fs.StringVar(&f.policy, "policy", "", "policy file (YAML) of pods without podfim.io/paths; default: the built-in policy for container images")
	fs.StringVar(&f.pullAuth, "registry-authfile", "", "registry credentials (.dockerconfigjson) for registry baselines; default: none")
	fs.BoolVar(&f.pullInsecure, "registry-insecure", false, "allow plain HTTP to registries (loopback registries get it anyway)")
	fs.BoolVar(&f.inotify, "inotify", true, "watch directories with inotify for changes within milliseconds")
	fs.BoolVar(&f.execDrift, "exec-drift", false, "execution drift for pods that do not set podfim.io/exec-drift: each protected container polls /proc (docs/agent.md, cost)")
	fs.DurationVar(&f.execInterval, "exec-interval", drift.DefaultInterval, "how often /proc is polled for new processes (execution drift)")
	fs.DurationVar(&f.quick, "quick-interval", 5*time.Minute, "interval of quick checks of pods without podfim.io/quick-interval; 0 disables")
	fs.DurationVar(&f.full, "full-interval", time.Hour, "interval of full checks of pods without podfim.io/full-interval; 0 disables")
	fs.StringSliceVar(&f.respond, "respond", []string{"log", "metric", "event", "unready"}, "actions of pods without podfim.io/respond: log, metric, event, unready (the podfim.io/integrity readiness gate condition), quarantine, restore, kill, delete, webhook")
	fs.StringSliceVar(&f.escalate, "escalate", []string{"unready"}, "actions instead of kill past the kill limit, of pods without podfim.io/escalate")
	fs.IntVar(&f.killLimit, "kill-limit", respond.DefaultKillLimit, "most kills of a container within --kill-window")
	fs.DurationVar(&f.killWindow, "kill-window", respond.DefaultKillWindow, "sliding window of --kill-limit")
	fs.DurationVar(&f.deleteMinAge, "delete-min-age", respond.DefaultDeleteMinAge, "youngest pod the delete action deletes")
	fs.Int64Var(&f.restoreMax, "restore-max-bytes", respond.DefaultRestoreMaxBytes, "largest file the restore action keeps and writes back")
	fs.Int64Var(&f.evidenceMax, "evidence-max-bytes", evidence.DefaultMaxBytes, "most bytes of evidence kept per container (podfim.io/evidence-max-bytes overrides)")
	fs.Int64Var(&f.evidenceFile, "evidence-max-file-bytes", evidence.DefaultMaxFileBytes, "most bytes of evidence kept of one file")
	fs.Int64Var(&f.evidenceDiff, "evidence-max-diff-bytes", evidence.DefaultMaxDiffBytes, "largest text file a unified diff is made of")
	fs.StringVar(&f.webhookURL, "webhook-url", "", "URL the webhook action POSTs each finding to, for pods without podfim.io/webhook-url")
	fs.DurationVar(&f.webhookTO, "webhook-timeout", respond.DefaultWebhookTimeout, "timeout of one webhook attempt")
	fs.StringVar(&f.webhookToken, "webhook-token-file", "", "file holding a bearer token for the webhook")
	fs.StringVar(&f.webhookCA, "webhook-ca-file", "", "PEM CA bundle for an https webhook")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
}

// build turns the resolved flags into the agent's configuration, with the
// in-cluster API client.
func (f *agentFlags) build(getenv func(string) string, node *kube.Node) (agent.Config, *slog.Logger, error) {
	var cfg agent.Config
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return cfg, nil, failf(ExitUsage, "--log-level: %v", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	p := policy.Default()
	if f.policy != "" {
		var err error
		if p, err = policy.Load(f.policy); err != nil {
			return cfg, nil, fail(ExitPolicy, err)
		}
	}
	if f.nodeName == "" {
		f.nodeName = getenv("NODE_NAME")
	}
	d := agent.Defaults{
		Policy: p, Respond: f.respond, Inotify: f.inotify, Quick: f.quick, Full: f.full,
		ExecDrift: f.execDrift, ExecInterval: f.execInterval,
		Evidence: evidence.Limits{MaxBytes: f.evidenceMax, MaxFileBytes: f.evidenceFile, MaxDiffBytes: f.evidenceDiff},
		Pull:     referrer.Options{Authfile: f.pullAuth, Insecure: f.pullInsecure},
		Plan: respond.Plan{
			Actions: respond.ParseActions(f.respond...), Escalate: respond.ParseActions(f.escalate...),
			KillLimit: f.killLimit, KillWindow: f.killWindow, RestoreMaxBytes: f.restoreMax, DeleteMinAge: f.deleteMinAge,
		},
	}
	if f.webhookURL != "" {
		d.Plan.Webhook = &respond.WebhookConfig{URL: f.webhookURL, Timeout: f.webhookTO, TokenFile: f.webhookToken, CAFile: f.webhookCA}
	}
	cfg = agent.Config{
		Self:     kube.Pod{Namespace: getenv(kube.EnvNamespace), Name: getenv(kube.EnvName)},
		NodeName: f.nodeName, StateDir: f.stateDir, Defaults: d, Listen: f.listen, Version: versionString(),
		Resync: 10 * time.Minute,
	}
	if node != nil {
		cfg.Pods, cfg.Namespaces = node.Pods(f.nodeName), node.Namespaces()
		cfg.API = func(p kube.Pod) agent.PodAPI { return node.ForPod(p) }
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, fail(ExitUsage, fmt.Errorf("invalid agent configuration: %w", err))
	}
	return cfg, log, nil
}

func newAgentCmd(_ *streams) *cobra.Command {
	var f agentFlags
	c := &cobra.Command{
		Use:   "agent",
		Short: "Protect every opted-in pod of this node (run as a DaemonSet)",
		Long: `agent runs once per node (a DaemonSet with hostPID) and protects every
container of the node's pods that opt in with the label podfim.io/protect:
enabled on the pod or its namespace ("disabled" on a pod opts it out). Each
pod is configured by the same podfim.io/* annotations the admission webhook
reads; the flags here are the defaults. Per container it does what the
sidecar does: follow it through /proc (restarts included), baseline it at
first sight (kept in --state-dir per pod UID and container, so an agent
restart never re-baselines a tampered container) or verify it against its
image's signed baseline (registry or ConfigMap; ConfigMaps and keys named
by annotations are read from the pod's namespace through the API), detect changes (inotify, quick and full
checks) and respond. The unready response sets the pod condition
podfim.io/integrity, which takes the pod out of its Services when its spec
has readinessGates: [{conditionType: podfim.io/integrity}].

It needs hostPID, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (and CAP_KILL,
CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE for kill and restore), NODE_NAME from
the downward API, and RBAC: get, list, watch on pods and namespaces, patch on
pods/status, create and patch on events (docs/agent.md).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := undumpable(); err != nil {
				return err
			}
			if err := resolveFlags(c.Flags(), f.config, os.Getenv); err != nil {
				return err
			}
			node, err := kube.NewNodeInCluster()
			if err != nil {
				return fail(ExitUsage, err)
			}
			cfg, log, err := f.build(os.Getenv, node)
			if err != nil {
				return err
			}
			// client-go's informers log through klog: into the agent's
			// JSON log, not klog's own text lines on stderr.
			klog.SetSlogLogger(log)
			if err := agent.Run(c.Context(), cfg, log); err != nil {
				return fail(ExitError, err)
			}
			return nil
		},
	}
	f.register(c.Flags())
	return c
}
