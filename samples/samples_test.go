//go:build unix

package samples_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// The ready-made set-ups under samples/ are checked here: their syntax,
// that they pass linkbatch only real flags, that the stop timeouts exceed
// --grace, and, for the cron wrapper, what it does for real against a fake
// tenant.

const samplesDir = "."

// sampleCredentials are the variables every set-up must supply.
var sampleCredentials = []string{envDomain, envClientID, envClientSecret}

func samplePath(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(samplesDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sampleRead(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(samplePath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sampleRunFlags returns the names of the flags of 'linkbatch run', as its
// --help lists them.
func sampleRunFlags(t *testing.T) map[string]bool {
	t.Helper()
	code, help := linkbatchOutput(t, nil, "run", "--help")
	if code != exitOK {
		t.Fatalf("run --help: exit %d\n%s", code, help)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z][a-z0-9-]*)`).FindAllStringSubmatch(help, -1) {
		names[m[1]] = true
	}
	if !names["in"] || !names["grace"] {
		t.Fatalf("could not read the flags from run --help:\n%s", help)
	}
	return names
}

// sampleParseLinkbatchFlags checks that 'linkbatch run' accepts extra,
// flags a set-up passes to it, as the wrapper would pass them (a dry run of
// a one-row input), and returns what the checks need of them.
func sampleParseLinkbatchFlags(t *testing.T, where string, extra []string) runFlags {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(in, []byte("primary_user_id,secondary_user_id\nauth0|a,google-oauth2|b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{envDomain + "=acme.eu.auth0.com", envClientID + "=id", envClientSecret + "=secret-0123456789abcdef"}
	args := append([]string{"run", "--in", in, "--out", filepath.Join(dir, "out.csv"), "--dry-run", "--no-progress"}, extra...)
	if code, out := linkbatchOutput(t, env, args...); code != exitOK {
		t.Fatalf("%s: linkbatch run rejects %q: exit %d\n%s", where, extra, code, out)
	}
	// The flag parsing linkbatch does, for the flags read here.
	fs := flag.NewFlagSet("linkbatch run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f runFlags
	fs.DurationVar(&f.Grace, "grace", batch.DefaultConfig().Grace, "")
	var known []string
	for i := 0; i < len(extra); i++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(extra[i], "-"), "=")
		if fs.Lookup(name) == nil {
			continue
		}
		known = append(known, extra[i])
		if !hasValue && i+1 < len(extra) {
			i++
			known = append(known, extra[i])
		}
	}
	if err := fs.Parse(known); err != nil {
		t.Fatalf("%s: %q: %v", where, extra, err)
	}
	return f
}

// wrapperArgs splits the arguments of linkbatch-cron.sh as it does.
type wrapperArgs struct {
	envFile, in, state string
	extra              []string
}

func parseWrapperArgs(t *testing.T, where string, argv []string) wrapperArgs {
	t.Helper()
	var w wrapperArgs
	if len(argv) >= 2 && argv[0] == "-e" {
		w.envFile, argv = argv[1], argv[2:]
	}
	if len(argv) < 2 {
		t.Fatalf("%s: the wrapper needs IN and STATE_DIR, got %q", where, argv)
	}
	w.in, w.state, w.extra = argv[0], argv[1], argv[2:]
	for _, a := range w.extra {
		name := strings.SplitN(strings.TrimLeft(a, "-"), "=", 2)[0]
		if strings.HasPrefix(a, "-") && slices.Contains([]string{"in", "out", "resume", "dry-run", "simulate", "retry-failed", "token", "client-secret"}, name) {
			t.Errorf("%s: passes %s, which the wrapper refuses", where, a)
		}
	}
	return w
}

func TestSampleFilesNameOnlyRealFlags(t *testing.T) {
	flags := sampleRunFlags(t)
	longFlag := regexp.MustCompile(`(?:^|[\s"'(\[,=])--([a-z][a-z0-9-]*)`)
	seen := map[string]bool{}
	err := filepath.WalkDir(samplesDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".go") { // the set-ups, not these tests
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range longFlag.FindAllStringSubmatch(line, -1) {
				seen[m[1]] = true
				if !flags[m[1]] {
					t.Errorf("%s:%d names --%s, which is not a flag of linkbatch run", path, i+1, m[1])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"grace", "resume", "in", "out"} {
		if !seen[want] {
			t.Errorf("no sample names --%s; the scan found %v", want, seen)
		}
	}
}

func TestSampleEnvExample(t *testing.T) {
	vars := map[string]string{}
	for i, line := range strings.Split(sampleRead(t, ".env.example"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(k, "export ") {
			t.Errorf("line %d: %q is not KEY=value", i+1, line)
			continue
		}
		vars[k] = v
	}
	for _, k := range sampleCredentials {
		v, ok := vars[k]
		switch {
		case !ok:
			t.Errorf("%s is missing", k)
		case !strings.Contains(v, "replace-with") && !strings.Contains(v, "your-tenant"):
			t.Errorf("%s=%q does not look like a placeholder", k, v)
		}
	}
	if _, ok := vars[envToken]; ok {
		t.Errorf("%s is set alongside the client credentials: linkbatch refuses both", envToken)
	}
}

// Kubernetes manifests, decoded strictly: a field the types below do not
// know (a misspelt key) fails the test.

type kubeMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type kubeCronJob struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   kubeMeta `yaml:"metadata"`
	Spec       struct {
		Schedule                   string `yaml:"schedule"`
		TimeZone                   string `yaml:"timeZone"`
		ConcurrencyPolicy          string `yaml:"concurrencyPolicy"`
		StartingDeadlineSeconds    *int   `yaml:"startingDeadlineSeconds"`
		SuccessfulJobsHistoryLimit *int   `yaml:"successfulJobsHistoryLimit"`
		FailedJobsHistoryLimit     *int   `yaml:"failedJobsHistoryLimit"`
		JobTemplate                struct {
			Metadata kubeMeta `yaml:"metadata"`
			Spec     struct {
				BackoffLimit     *int `yaml:"backoffLimit"`
				PodFailurePolicy *struct {
					Rules []struct {
						Action      string `yaml:"action"`
						OnExitCodes *struct {
							ContainerName string `yaml:"containerName"`
							Operator      string `yaml:"operator"`
							Values        []int  `yaml:"values"`
						} `yaml:"onExitCodes"`
						OnPodConditions []struct {
							Type string `yaml:"type"`
						} `yaml:"onPodConditions"`
					} `yaml:"rules"`
				} `yaml:"podFailurePolicy"`
				Template struct {
					Metadata kubeMeta    `yaml:"metadata"`
					Spec     kubePodSpec `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		} `yaml:"jobTemplate"`
	} `yaml:"spec"`
}

type kubePodSpec struct {
	RestartPolicy                 string `yaml:"restartPolicy"`
	TerminationGracePeriodSeconds *int64 `yaml:"terminationGracePeriodSeconds"`
	AutomountServiceAccountToken  *bool  `yaml:"automountServiceAccountToken"`
	SecurityContext               struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		RunAsGroup     *int64 `yaml:"runAsGroup"`
		FSGroup        *int64 `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []kubeContainer `yaml:"containers"`
	Volumes    []struct {
		Name                  string `yaml:"name"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
		EmptyDir *struct {
			SizeLimit string `yaml:"sizeLimit"`
		} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type kubeContainer struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	Env             []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type kubeSecret struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   kubeMeta          `yaml:"metadata"`
	Type       string            `yaml:"type"`
	StringData map[string]string `yaml:"stringData"`
}

type kubePVC struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   kubeMeta `yaml:"metadata"`
	Spec       struct {
		AccessModes      []string `yaml:"accessModes"`
		StorageClassName string   `yaml:"storageClassName"`
		Resources        struct {
			Requests map[string]string `yaml:"requests"`
		} `yaml:"resources"`
	} `yaml:"spec"`
}

// kubeDecode decodes the single document of a manifest into v, strictly.
func kubeDecode(t *testing.T, rel string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(sampleRead(t, rel)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		t.Fatalf("%s: more than one document", rel)
	}
}

func TestKubeManifestsParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(samplesDir, "k8s", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("k8s manifests: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for n := 0; ; n++ {
			var doc struct {
				APIVersion string   `yaml:"apiVersion"`
				Kind       string   `yaml:"kind"`
				Metadata   kubeMeta `yaml:"metadata"`
			}
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				if n == 0 {
					t.Errorf("%s: no document", f)
				}
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, n+1, err)
			}
			if doc.APIVersion == "" || doc.Kind == "" || doc.Metadata.Name == "" {
				t.Errorf("%s: document %d lacks apiVersion, kind or metadata.name: %+v", f, n+1, doc)
			}
		}
	}
}

func TestKubeCronJob(t *testing.T) {
	var cj kubeCronJob
	var secret kubeSecret
	var pvc kubePVC
	kubeDecode(t, "k8s/cronjob.yaml", &cj)
	kubeDecode(t, "k8s/secret.example.yaml", &secret)
	kubeDecode(t, "k8s/pvc.yaml", &pvc)

	if cj.APIVersion != "batch/v1" || cj.Kind != "CronJob" {
		t.Errorf("cronjob.yaml is %s %s, want batch/v1 CronJob", cj.APIVersion, cj.Kind)
	}
	if secret.APIVersion != "v1" || secret.Kind != "Secret" || pvc.APIVersion != "v1" || pvc.Kind != "PersistentVolumeClaim" {
		t.Errorf("secret.example.yaml is %s %s, pvc.yaml is %s %s", secret.APIVersion, secret.Kind, pvc.APIVersion, pvc.Kind)
	}
	spec := cj.Spec
	if spec.ConcurrencyPolicy != "Forbid" {
		t.Errorf("concurrencyPolicy %q, want Forbid: two runs would share one results file", spec.ConcurrencyPolicy)
	}
	if f := strings.Fields(spec.Schedule); len(f) != 5 {
		t.Errorf("schedule %q has %d fields, want 5", spec.Schedule, len(f))
	}
	job := spec.JobTemplate.Spec
	if job.BackoffLimit == nil || *job.BackoffLimit < 1 {
		t.Errorf("backoffLimit %v: an interrupted run should be retried (and resumed)", job.BackoffLimit)
	}
	pod := job.Template.Spec
	switch pod.RestartPolicy {
	case "Never":
	case "OnFailure":
		if job.PodFailurePolicy != nil {
			t.Errorf("podFailurePolicy needs restartPolicy Never")
		}
	default:
		t.Errorf("restartPolicy %q, want Never or OnFailure", pod.RestartPolicy)
	}
	if p := job.PodFailurePolicy; p != nil {
		var failJob []int
		for _, r := range p.Rules {
			if r.Action == "FailJob" && r.OnExitCodes != nil && r.OnExitCodes.Operator == "In" {
				failJob = append(failJob, r.OnExitCodes.Values...)
			}
		}
		// A finished run with problems and a configuration error are not
		// cured by a retry; an aborted run is, by resuming.
		if !slices.Contains(failJob, exitProblems) || !slices.Contains(failJob, exitUsage) || slices.Contains(failJob, exitAborted) {
			t.Errorf("podFailurePolicy fails the job at once on exit codes %v; want %d and %d but not %d", failJob, exitProblems, exitUsage, exitAborted)
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Command) != 1 || filepath.Base(c.Command[0]) != "linkbatch-cron.sh" {
		t.Errorf("command %q, want the wrapper", c.Command)
	}
	if c.Image == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("image %q, resources %+v: want an image and memory requests and limits", c.Image, c.Resources)
	}
	w := parseWrapperArgs(t, "cronjob.yaml args", c.Args)
	if w.envFile != "" {
		t.Errorf("args read an env file %q; in Kubernetes the credentials come from the Secret", w.envFile)
	}
	cfg := sampleParseLinkbatchFlags(t, "cronjob.yaml args", w.extra)
	if tg := pod.TerminationGracePeriodSeconds; tg == nil || time.Duration(*tg)*time.Second <= cfg.Grace {
		t.Errorf("terminationGracePeriodSeconds must exceed --grace %s, or SIGKILL cuts the rows in flight", cfg.Grace)
	}

	// Credentials: from the Secret, never literal.
	refs := map[string]string{}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "AUTH0_") && e.Value != "" {
			t.Errorf("env %s has a literal value; take it from the Secret", e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name != secret.Metadata.Name {
				t.Errorf("env %s refers to Secret %q; secret.example.yaml is %q", e.Name, ref.Name, secret.Metadata.Name)
			}
			if _, ok := secret.StringData[ref.Key]; !ok {
				t.Errorf("env %s refers to key %q, which secret.example.yaml lacks", e.Name, ref.Key)
			}
			refs[e.Name] = ref.Key
		}
	}
	for _, k := range sampleCredentials {
		if _, ok := refs[k]; !ok {
			t.Errorf("%s does not come from a secretKeyRef", k)
		}
		if v := secret.StringData[k]; !strings.Contains(v, "replace-with") && !strings.Contains(v, "your-tenant") {
			t.Errorf("secret.example.yaml %s=%q does not look like a placeholder", k, v)
		}
	}

	// Hardening.
	sc := c.SecurityContext
	if !boolIs(sc.ReadOnlyRootFilesystem, true) || !boolIs(sc.AllowPrivilegeEscalation, false) || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem, no privilege escalation, drop ALL", sc)
	}
	if !boolIs(pod.SecurityContext.RunAsNonRoot, true) && !boolIs(sc.RunAsNonRoot, true) {
		t.Errorf("runAsNonRoot is not set")
	}

	// The state lives on the claim of pvc.yaml, so that a later pod resumes.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var statePVC bool
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		if v.PersistentVolumeClaim.ClaimName != pvc.Metadata.Name {
			t.Errorf("volume %s claims %q; pvc.yaml is %q", v.Name, v.PersistentVolumeClaim.ClaimName, pvc.Metadata.Name)
		}
		mp := mounts[v.Name]
		if mp != "" && strings.HasPrefix(w.state, strings.TrimSuffix(mp, "/")+"/") {
			statePVC = true
		}
	}
	if !statePVC {
		t.Errorf("the state directory %s is not on the persistent volume claim", w.state)
	}
}

// boolIs reports whether p is set to want.
func boolIs(p *bool, want bool) bool { return p != nil && *p == want }

// systemdUnit is a unit file: section → key → values, in order.
type systemdUnit map[string]map[string][]string

func (u systemdUnit) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func parseSystemdUnit(t *testing.T, rel string) systemdUnit {
	t.Helper()
	u := systemdUnit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(sampleRead(t, rel)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", rel, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// systemdSeconds parses a systemd time span such as 60, 90s, 5min or 1h30min.
func systemdSeconds(t *testing.T, s string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second
	}
	r := strings.NewReplacer("min", "m", "sec", "s", " ", "")
	d, err := time.ParseDuration(r.Replace(s))
	if err != nil {
		t.Fatalf("time span %q: %v", s, err)
	}
	return d
}

func TestSystemdUnits(t *testing.T) {
	svc := parseSystemdUnit(t, "systemd/linkbatch.service")
	timer := parseSystemdUnit(t, "systemd/linkbatch.timer")

	want := map[string]string{
		"Type": "oneshot", "EnvironmentFile": "/etc/linkbatch/env", "KillSignal": "SIGTERM", "KillMode": "mixed",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
	}
	for k, v := range want {
		if got := svc.get("Service", k); got != v {
			t.Errorf("linkbatch.service %s=%q, want %q", k, got, v)
		}
	}
	if svc.get("Service", "DynamicUser") != "yes" && svc.get("Service", "User") == "" {
		t.Errorf("linkbatch.service runs as root: set DynamicUser=yes or User=")
	}
	for _, k := range []string{"TimeoutStartSec", "StateDirectory"} {
		if svc.get("Service", k) == "" {
			t.Errorf("linkbatch.service lacks %s", k)
		}
	}
	execStart := svc.get("Service", "ExecStart")
	if strings.ContainsAny(execStart, `"'$%`) {
		t.Fatalf("ExecStart %q: the check below splits at spaces only", execStart)
	}
	argv := strings.Fields(execStart)
	if len(argv) == 0 || filepath.Base(argv[0]) != "linkbatch-cron.sh" {
		t.Fatalf("ExecStart %q, want the wrapper", execStart)
	}
	w := parseWrapperArgs(t, "ExecStart", argv[1:])
	if w.envFile != "" {
		t.Errorf("ExecStart reads an env file; EnvironmentFile= already supplies the credentials")
	}
	cfg := sampleParseLinkbatchFlags(t, "ExecStart", w.extra)
	if stop := systemdSeconds(t, svc.get("Service", "TimeoutStopSec")); stop <= cfg.Grace {
		t.Errorf("TimeoutStopSec %s must exceed --grace %s", stop, cfg.Grace)
	}
	var inState bool
	for _, d := range strings.Fields(svc.get("Service", "StateDirectory")) {
		dir := "/var/lib/" + d
		if w.state == dir {
			inState = true
		}
	}
	if !inState {
		t.Errorf("the wrapper's state directory %s is not one of StateDirectory=%s", w.state, svc.get("Service", "StateDirectory"))
	}
	if cond := svc.get("Unit", "ConditionPathExists"); cond != "" && cond != w.in {
		t.Errorf("ConditionPathExists=%s, but the input is %s", cond, w.in)
	}

	cal := timer.get("Timer", "OnCalendar")
	if cal == "" || timer.get("Timer", "Persistent") != "true" {
		t.Errorf("linkbatch.timer: OnCalendar=%q Persistent=%q", cal, timer.get("Timer", "Persistent"))
	}
	if u := timer.get("Timer", "Unit"); u != "" && u != "linkbatch.service" {
		t.Errorf("linkbatch.timer starts %s", u)
	}
	if timer.get("Install", "WantedBy") != "timers.target" {
		t.Errorf("linkbatch.timer is not WantedBy=timers.target")
	}

	// Where systemd's own tools are at hand, let them judge too.
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not installed; skipping its checks")
		return
	}
	if out, err := exec.Command("systemd-analyze", "calendar", cal).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze calendar %q: %v\n%s", cal, err, out)
	}
	dir := t.TempDir()
	for _, name := range []string{"linkbatch.service", "linkbatch.timer"} {
		text := sampleRead(t, "systemd/"+name)
		text = strings.ReplaceAll(text, argv[0], samplePath(t, "cron/linkbatch-cron.sh"))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", filepath.Join(dir, "linkbatch.service"), filepath.Join(dir, "linkbatch.timer"))
	out, err := cmd.CombinedOutput()
	// Complaints about the units name their file; anything else is about
	// this machine (no systemd running, say).
	if bytes.Contains(out, []byte("linkbatch.")) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	} else if err != nil {
		t.Logf("systemd-analyze verify could not run here: %v\n%s", err, out)
	}
}

func TestCronExample(t *testing.T) {
	var jobs [][]string
	for _, line := range strings.Split(sampleRead(t, "cron/crontab.example"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(line) {
			continue
		}
		jobs = append(jobs, strings.Fields(line))
	}
	if len(jobs) != 1 {
		t.Fatalf("%d job lines, want 1", len(jobs))
	}
	job := jobs[0]
	field := regexp.MustCompile(`^[0-9*,/-]+$`)
	if len(job) < 6 || !field.MatchString(strings.Join(job[:5], ",")) {
		t.Fatalf("job line %q: want five time fields and a command", job)
	}
	if filepath.Base(job[5]) != "linkbatch-cron.sh" {
		t.Errorf("the job runs %s, want the wrapper", job[5])
	}
	w := parseWrapperArgs(t, "crontab.example", job[6:])
	if w.envFile == "" {
		t.Errorf("the job gives no env file (-e): cron has no credentials of its own")
	}
	sampleParseLinkbatchFlags(t, "crontab.example", w.extra)
}

func TestCronWrapperSyntax(t *testing.T) {
	script := samplePath(t, "cron/linkbatch-cron.sh")
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Skip("shellcheck not installed (apt-get install shellcheck)")
	}
	if out, err := exec.Command("shellcheck", script).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// cronNeeds skips the test when the wrapper's tools are missing.
func cronNeeds(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bash", "flock", "setsid", "cmp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
}

// cronResult is what one run of the wrapper did.
type cronResult struct {
	code           int
	stdout, stderr string
}

// cronCommand prepares a run of the wrapper with LINKBATCH_BIN set to bin;
// it is killed if it is still running after two minutes or at the end of
// the test.
func cronCommand(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "bash", append([]string{samplePath(t, "cron/linkbatch-cron.sh")}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LINKBATCH_BIN=" + bin}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

func cronWait(t *testing.T, cmd *exec.Cmd, stdout, stderr *bytes.Buffer) cronResult {
	t.Helper()
	err := cmd.Wait()
	r := cronResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run the wrapper: %v", err)
	}
	return r
}

func cronRun(t *testing.T, bin string, env []string, args ...string) cronResult {
	t.Helper()
	cmd, stdout, stderr := cronCommand(t, bin, env, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cronWait(t, cmd, stdout, stderr)
}

func writeFileMode(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestCronWrapperReadsEnvFile(t *testing.T) {
	cronNeeds(t)
	dir := t.TempDir()
	// A stand-in for linkbatch that records its environment and arguments.
	shim := filepath.Join(dir, "linkbatch-shim")
	writeFileMode(t, shim, "#!/bin/sh\nenv > \"$SHIM_OUT\"\necho \"$@\" > \"$SHIM_OUT.args\"\n", 0o700)
	in := filepath.Join(dir, "pairs.csv")
	writeFileMode(t, in, "primary_user_id,secondary_user_id\nauth0|a,github|b\n", 0o600)
	secret := "s3cr$t`id`$(id)\"q\"'x'"
	envFile := filepath.Join(dir, "env")
	content := "# comment\n; another\n\n  AUTH0_DOMAIN = \"acme.eu.auth0.com\"\nAUTH0_CLIENT_ID='id with spaces'\r\nAUTH0_CLIENT_SECRET=" + secret + "\nAUTH0_AUDIENCE=https://acme.eu.auth0.com/api/v2/"

	tests := []struct {
		name     string
		content  string
		mode     os.FileMode
		extra    []string
		want     int
		wantEnv  map[string]string
		inStderr string
	}{
		{"tricky values", content, 0o600, []string{"--grace", "5s"}, 0, map[string]string{
			envDomain: "acme.eu.auth0.com", envClientID: "id with spaces", envClientSecret: secret,
			envAudience: "https://acme.eu.auth0.com/api/v2/", envToken: "",
		}, ""},
		{"the sample", sampleRead(t, ".env.example"), 0o600, nil, 0, map[string]string{
			envDomain: "your-tenant.eu.auth0.com", envClientID: "replace-with-the-client-id", envClientSecret: "replace-with-the-client-secret", envToken: "",
		}, ""},
		{"readable by others", content, 0o644, nil, 64, nil, "mode 644"},
		{"readable by the group", content, 0o640, nil, 64, nil, "mode 640"},
		{"unknown variable", "AUTH0_CLIENT_SECRT=" + secret + "\n", 0o600, nil, 64, nil, "AUTH0_CLIENT_SECRT"},
		{"not key=value", "export AUTH0_DOMAIN\n", 0o600, nil, 64, nil, "line 1"},
		{"secret as a flag", content, 0o600, []string{"--client-secret", secret}, 64, nil, "env file"},
		{"--out set by the caller", content, 0o600, []string{"--out", "x.csv"}, 64, nil, "itself"},
		{"dry run", content, 0o600, []string{"--dry-run"}, 64, nil, "directly"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			out := filepath.Join(t.TempDir(), "env.out")
			writeFileMode(t, envFile, tt.content, tt.mode)
			r := cronRun(t, shim, []string{"SHIM_OUT=" + out, "AUTH0_TOKEN=from-the-callers-environment"},
				append([]string{"-e", envFile, in, state}, tt.extra...)...)
			if r.code != tt.want {
				t.Fatalf("exit %d, want %d\n%s", r.code, tt.want, r.stderr)
			}
			logText, _ := os.ReadFile(filepath.Join(state, "linkbatch.log"))
			if strings.Contains(r.stderr+r.stdout+string(logText), "s3cr") {
				t.Errorf("the secret was printed:\n%s\n%s", r.stderr, logText)
			}
			if !strings.Contains(r.stderr, tt.inStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.inStderr, r.stderr)
			}
			got, err := os.ReadFile(out)
			if tt.wantEnv == nil {
				if err == nil {
					t.Errorf("linkbatch ran although the wrapper refused")
				}
				return
			}
			if err != nil {
				t.Fatalf("linkbatch did not run: %v\n%s", err, r.stderr)
			}
			vars := map[string]string{}
			for line := range strings.Lines(string(got)) {
				k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
				vars[k] = v
			}
			for k, v := range tt.wantEnv {
				if vars[k] != v {
					t.Errorf("linkbatch saw %s=%q, want %q", k, vars[k], v)
				}
			}
			args, _ := os.ReadFile(out + ".args")
			wantArgs := strings.Join(append([]string{"run", "--in", filepath.Join(state, "input.csv"), "--out", filepath.Join(state, "results.csv")}, tt.extra...), " ")
			if strings.TrimSpace(string(args)) != wantArgs {
				t.Errorf("linkbatch got arguments %q, want %q", strings.TrimSpace(string(args)), wantArgs)
			}
		})
	}
}

// cronGate is a proxy in front of the fake tenant that can hold requests,
// to catch a run in the middle.
type cronGate struct {
	mu      sync.Mutex
	release chan struct{} // nil: requests pass
	arrived chan struct{} // closed when a held request arrives
	once    *sync.Once
	URL     string
}

func newCronGate(t *testing.T, target string) *cronGate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &cronGate{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		release, arrived, once := g.release, g.arrived, g.once
		g.mu.Unlock()
		if release != nil {
			once.Do(func() { close(arrived) })
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(g.open)
	g.URL = srv.URL
	return g
}

// hold makes requests wait until open; the returned channel is closed when
// the first one arrives.
func (g *cronGate) hold() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.release, g.arrived, g.once = make(chan struct{}), make(chan struct{}), &sync.Once{}
	return g.arrived
}

func (g *cronGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release != nil {
		close(g.release)
		g.release = nil
	}
}

// cronAwait waits for ch, or fails the test after a minute.
func cronAwait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// cronAwaitLog waits until the state's log contains s. The log is the only
// sign that linkbatch has taken a signal, so it is polled.
func cronAwaitLog(t *testing.T, state, s string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(state, "linkbatch.log"))
		if bytes.Contains(b, []byte(s)) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the log never said %q", s)
}

// cronCheckLinked asserts that every pair is linked in the tenant and has a
// final linked row in the results file at path.
func cronCheckLinked(t *testing.T, srv *linkertest.Server, pairs []pair, path string) {
	t.Helper()
	results, _ := clitest.ReadResultFile(t, path)
	for i, p := range pairs {
		if got, ok := srv.LinkedTo(p.Secondary); !ok || got != p.Primary {
			t.Errorf("%s linked to %q (%v), want %s", p.Secondary, got, ok, p.Primary)
		}
		if r, ok := results[i+2]; !ok || (r.Status != batch.StatusLinked && r.Status != batch.StatusAlreadyLinked) {
			t.Errorf("%s line %d: %+v, want linked", filepath.Base(path), i+2, r)
		}
	}
	if len(results) != len(pairs) {
		t.Errorf("%s has %d rows for %d pairs", filepath.Base(path), len(results), len(pairs))
	}
}

func cronStatus(t *testing.T, state string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "status"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// cronRotated returns the suffixes of the rotated results files.
func cronRotated(t *testing.T, state string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(state, "results.csv.*"))
	if err != nil {
		t.Fatal(err)
	}
	stamp := regexp.MustCompile(`^results\.csv\.(\d{8}T\d{6}Z(?:-\d+)?)$`)
	var out []string
	for _, n := range names {
		base := filepath.Base(n)
		if base == "results.csv.run.json" || strings.HasSuffix(base, ".run.json") {
			continue
		}
		m := stamp.FindStringSubmatch(base)
		if m == nil {
			t.Errorf("unexpected file %s", base)
			continue
		}
		out = append(out, m[1])
	}
	slices.Sort(out)
	return out
}

// replaceInput puts pairs at path the way a producer should: written
// aside, then renamed into place.
func replaceInput(t *testing.T, path string, pairs []pair) []byte {
	t.Helper()
	var b strings.Builder
	b.WriteString("primary_user_id,secondary_user_id\n")
	for _, p := range pairs {
		fmt.Fprintf(&b, "%s,%s\n", clitest.CSVQuote(p.Primary), clitest.CSVQuote(p.Secondary))
	}
	writeFileMode(t, path+".tmp", b.String(), 0o600)
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCronWrapperEndToEnd runs the wrapper with the real binary against a
// fake tenant through a series of nights: a first run (during which a second
// start finds the lock taken), a re-run of the same input, a new input, a
// run stopped by SIGTERM and then resumed although the input changed, and a
// wrapper killed outright.
func TestCronWrapperEndToEnd(t *testing.T) {
	cronNeeds(t)
	batches := map[string][]pair{}
	var all []pair
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		batches[name] = clitest.GenPairs("cron"+name, 30)
		all = append(all, batches[name]...)
	}
	srv, tok := clitest.NewTenant(t, linkertest.Config{Seed: 7, RateLimit: linkertest.RateLimit{Burst: 100, Rate: 1000}}, all)
	gate := newCronGate(t, srv.URL)
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	writeFileMode(t, envFile, fmt.Sprintf("AUTH0_DOMAIN=%s\nAUTH0_TOKEN=%s\n", gate.URL, tok), 0o600)
	in := filepath.Join(dir, "inbox", "pairs.csv")
	if err := os.MkdirAll(filepath.Dir(in), 0o700); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	results := filepath.Join(state, "results.csv")
	args := []string{"-e", envFile, in, state, "--rate", "1000", "--burst", "100", "--workers", "4", "--grace", "20s"}
	run := func() cronResult { return cronRun(t, binPath, nil, args...) }
	start := func() (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
		cmd, stdout, stderr := cronCommand(t, binPath, nil, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, stdout, stderr
	}

	// Night 1: a first run; a second start while it runs finds the lock.
	inputA := replaceInput(t, in, batches["a"])
	arrived := gate.hold()
	cmd, stdout, stderr := start()
	cronAwait(t, arrived, "the first run's first request")
	if r := run(); r.code != 75 || !strings.Contains(r.stderr, "another run holds") {
		t.Fatalf("overlapping start: exit %d, want 75\n%s", r.code, r.stderr)
	}
	gate.open()
	if r := cronWait(t, cmd, stdout, stderr); r.code != exitOK {
		t.Fatalf("first run: exit %d\n%s\n%s", r.code, r.stderr, mustRead(t, filepath.Join(state, "linkbatch.log")))
	}
	cronCheckLinked(t, srv, batches["a"], results)
	if s := cronStatus(t, state); s != "exit 0" {
		t.Errorf("status %q after the first run", s)
	}
	for line := range strings.Lines(string(mustRead(t, filepath.Join(state, "linkbatch.log")))) {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
	if st := srv.Stats(); st.Posts != len(batches["a"]) {
		t.Errorf("the tenant saw %d link requests for %d pairs", st.Posts, len(batches["a"]))
	}

	// Night 2: the same input again: resumed, nothing left, nothing sent.
	before := mustRead(t, results)
	posts := srv.Stats().Posts
	if r := run(); r.code != exitOK || r.stderr != "" {
		t.Fatalf("same input: exit %d\n%s", r.code, r.stderr)
	}
	if st := srv.Stats(); st.Posts != posts {
		t.Errorf("re-running the same input sent %d link requests", st.Posts-posts)
	}
	if !bytes.Equal(mustRead(t, results), before) {
		t.Errorf("re-running the same input changed the results")
	}
	if rot := cronRotated(t, state); len(rot) != 0 {
		t.Errorf("re-running the same input rotated the results: %v", rot)
	}
	cronAwaitLog(t, state, `"msg":"resuming"`)

	// Night 3: a new input: the finished run is kept aside, B is linked.
	replaceInput(t, in, batches["b"])
	if r := run(); r.code != exitOK {
		t.Fatalf("new input: exit %d\n%s", r.code, r.stderr)
	}
	rot := cronRotated(t, state)
	if len(rot) != 1 {
		t.Fatalf("rotated results: %v, want one", rot)
	}
	if !bytes.Equal(mustRead(t, results+"."+rot[0]), before) || !bytes.Equal(mustRead(t, filepath.Join(state, "input.csv."+rot[0])), inputA) {
		t.Errorf("the rotated results or input differ from the first run's")
	}
	if _, err := batch.ReadRunInfo(batch.SidecarPath(results + "." + rot[0])); err != nil {
		t.Errorf("the rotated results lost their run record: %v", err)
	}
	cronCheckLinked(t, srv, batches["b"], results)

	// Night 4: input C, stopped while rows are in flight by a SIGTERM to the
	// wrapper's whole process group, as systemd's default KillMode or a
	// terminal's ^C would send it: linkbatch must still see one signal.
	replaceInput(t, in, batches["c"])
	arrived = gate.hold()
	cmd, stdout, stderr = start()
	cronAwait(t, arrived, "run C's first request")
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cronAwaitLog(t, state, "signal received")
	gate.open()
	r := cronWait(t, cmd, stdout, stderr)
	if r.code != exitAborted {
		t.Fatalf("stopped run: exit %d, want %d\n%s", r.code, exitAborted, r.stderr)
	}
	logText := string(mustRead(t, filepath.Join(state, "linkbatch.log")))
	if strings.Contains(logText, "second signal") {
		t.Errorf("one signal to the wrapper reached linkbatch twice")
	}
	if s := cronStatus(t, state); s != "exit 3" {
		t.Errorf("status %q after the stopped run", s)
	}
	partial, _ := clitest.ReadResultFile(t, results)
	if len(partial) == 0 || len(partial) >= len(batches["c"]) {
		t.Errorf("the stopped run wrote %d of %d rows; want the rows in flight only", len(partial), len(batches["c"]))
	}

	// Night 5: input D arrives, but C is incomplete: C is resumed, D waits.
	replaceInput(t, in, batches["d"])
	if r := run(); r.code != exitOK || !strings.Contains(r.stderr, "incomplete") {
		t.Fatalf("resume of the stopped run: exit %d\n%s", r.code, r.stderr)
	}
	cronCheckLinked(t, srv, batches["c"], results)
	for _, p := range batches["d"] {
		if _, ok := srv.LinkedTo(p.Secondary); ok {
			t.Fatalf("%s linked before the incomplete run was finished", p.Secondary)
		}
	}
	if rot := cronRotated(t, state); len(rot) != 2 { // A and B
		t.Errorf("the incomplete run was rotated: %v", rot)
	}

	// Night 6: C is finished, so D runs now.
	if r := run(); r.code != exitOK {
		t.Fatalf("input D: exit %d\n%s", r.code, r.stderr)
	}
	cronCheckLinked(t, srv, batches["d"], results)
	if rot := cronRotated(t, state); len(rot) != 3 {
		t.Errorf("rotated results %v, want three (A, B, C)", rot)
	}

	// Night 7: input E; the wrapper is killed outright mid-run. linkbatch
	// keeps the lock until it ends, and the next start resumes.
	replaceInput(t, in, batches["e"])
	arrived = gate.hold()
	cmd, stdout, stderr = start()
	cronAwait(t, arrived, "run E's first request")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cronWait(t, cmd, stdout, stderr)
	if r := run(); r.code != 75 {
		t.Errorf("start while the orphaned linkbatch runs: exit %d, want 75\n%s", r.code, r.stderr)
	}
	gate.open()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	waitLock := exec.CommandContext(ctx, "flock", filepath.Join(state, "linkbatch.lock"), "true")
	if out, err := waitLock.CombinedOutput(); err != nil {
		t.Fatalf("wait for the lock: %v\n%s", err, out)
	}
	if s := cronStatus(t, state); s != "running" {
		t.Errorf("status %q after the wrapper was killed, want running", s)
	}
	if r := run(); r.code != exitOK {
		t.Fatalf("after the kill: exit %d\n%s", r.code, r.stderr)
	}
	cronCheckLinked(t, srv, batches["e"], results)
	if rot := cronRotated(t, state); len(rot) != 4 {
		t.Errorf("rotated results %v, want four (A to D)", rot)
	}

	st := srv.Stats()
	if st.LinksApplied != len(all) || st.DoubleLinks != 0 {
		t.Errorf("the tenant applied %d links (%d double) for %d pairs", st.LinksApplied, st.DoubleLinks, len(all))
	}
}
