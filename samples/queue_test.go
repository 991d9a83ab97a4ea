//go:build unix

package samples_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/linkbatch/linkbatch/batch"
	"github.com/linkbatch/linkbatch/internal/clitest"
	"github.com/linkbatch/linkbatch/internal/queue/queuetest"
	"github.com/linkbatch/linkbatch/linker/linkertest"
)

// kubeDeployment is what the queue sample's Deployment holds, decoded
// strictly.
type kubeDeployment struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   kubeMeta `yaml:"metadata"`
	Spec       struct {
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata kubeMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds *int64 `yaml:"terminationGracePeriodSeconds"`
				AutomountServiceAccountToken  *bool  `yaml:"automountServiceAccountToken"`
				SecurityContext               any    `yaml:"securityContext"`
				Containers                    []struct {
					Name            string   `yaml:"name"`
					Image           string   `yaml:"image"`
					ImagePullPolicy string   `yaml:"imagePullPolicy"`
					Command         []string `yaml:"command"`
					Args            []string `yaml:"args"`
					Ports           []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					EnvFrom []struct {
						SecretRef struct {
							Name string `yaml:"name"`
						} `yaml:"secretRef"`
					} `yaml:"envFrom"`
					Env []struct {
						Name      string `yaml:"name"`
						ValueFrom struct {
							SecretKeyRef struct {
								Name string `yaml:"name"`
								Key  string `yaml:"key"`
							} `yaml:"secretKeyRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					Resources       any `yaml:"resources"`
					SecurityContext any `yaml:"securityContext"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// TestKubeQueueDeployment: the queue Deployment's replicas stop within the
// pod's grace period, take their credentials from Secrets, and its
// linkbatch arguments, pointed at a real redis-server, drain a stream and
// publish one result per request to the results stream.
func TestKubeQueueDeployment(t *testing.T) {
	dec := yaml.NewDecoder(bytes.NewReader([]byte(sampleRead(t, "k8s/queue-deployment.yaml"))))
	dec.KnownFields(true)
	var dep kubeDeployment
	if err := dec.Decode(&dep); err != nil {
		t.Fatal(err)
	}
	var secret kubeSecret
	if err := dec.Decode(&secret); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		t.Fatalf("more than two documents: %v", err)
	}
	if dep.Kind != "Deployment" || dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 || len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want a Deployment of several replicas, one container: %+v", dep)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef.Name != "linkbatch-auth0" {
		t.Errorf("the Auth0 credentials do not come from the linkbatch-auth0 Secret: %+v", c.EnvFrom)
	}
	if len(c.Env) != 1 || c.Env[0].Name != "LINKBATCH_REDIS_PASSWORD" || c.Env[0].ValueFrom.SecretKeyRef.Name != secret.Metadata.Name || secret.StringData[c.Env[0].ValueFrom.SecretKeyRef.Key] == "" {
		t.Errorf("the Redis password does not come from the Secret of the file: %+v", c.Env)
	}
	if len(c.Command) != 1 || c.Command[0] != "/usr/local/bin/linkbatch" || len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("command %v %v, want linkbatch run", c.Command, c.Args)
	}
	grace := time.Duration(0)
	for i, a := range c.Args {
		if a == "--grace" && i+1 < len(c.Args) {
			grace, _ = time.ParseDuration(c.Args[i+1])
		}
	}
	if tg := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; grace == 0 || tg == nil || time.Duration(*tg)*time.Second <= grace {
		t.Errorf("--grace %v must be set and shorter than terminationGracePeriodSeconds %v", grace, tg)
	}

	// The arguments, against this machine's Redis and the simulated tenant.
	addr, rc := queuetest.StartRedis(t)
	for _, p := range [][2]string{{"auth0|q1", "github|1"}, {"auth0|q2", "github|2"}, {"auth0|q3", "github|3"}} {
		if err := rc.XAdd(t.Context(), &redis.XAddArgs{Stream: "links", Values: []any{"primary_user_id", p[0], "secondary_user_id", p[1]}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{}
	for _, a := range c.Args {
		a = strings.ReplaceAll(a, "redis:6379", addr)
		if a == ":9090" {
			a = "127.0.0.1:0"
		}
		args = append(args, a)
	}
	args = append(args, "--drain", "--simulate")
	if code, out := linkbatchOutput(t, nil, args...); code != exitOK {
		t.Fatalf("linkbatch %v: exit %d\n%s", args, code, out)
	}
	res, err := rc.XRange(t.Context(), "links:results", "-", "+").Result()
	if err != nil || len(res) != 3 {
		t.Fatalf("results stream: %d entries (%v), want 3", len(res), err)
	}
	for _, m := range res {
		if m.Values["status"] != "linked" || m.Values["message_id"] == "" {
			t.Errorf("result %v, want linked with its message id", m.Values)
		}
	}
}

// TestCronWrapperDrainsQueue: given a queue URL, the cron wrapper drains
// it with the Redis password from its env file: each start ends once the
// stream is empty, results are appended one row per request, a request
// already done is not linked twice, and a password in the URL or a --drain
// of the caller's is refused before anything runs.
func TestCronWrapperDrainsQueue(t *testing.T) {
	cronNeeds(t)
	addr, rc := queuetest.StartRedis(t)
	const password = "queue-pass-0123456789"
	if err := rc.ConfigSet(t.Context(), "requirepass", password).Err(); err != nil {
		t.Fatal(err)
	}
	rc = redis.NewClient(&redis.Options{Addr: addr, Password: password})
	t.Cleanup(func() { rc.Close() })
	pairs := clitest.GenPairs("cronq", 25)
	srv, tok := clitest.NewTenant(t, linkertest.Config{RateLimit: linkertest.RateLimit{Burst: 100, Rate: 1000}}, pairs)
	add := func(ps []pair) {
		for _, p := range ps {
			if err := rc.XAdd(t.Context(), &redis.XAddArgs{Stream: "links", Values: []any{"primary_user_id", p.Primary, "secondary_user_id", p.Secondary}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	writeFileMode(t, envFile, fmt.Sprintf("AUTH0_DOMAIN=%s\nAUTH0_TOKEN=%s\nLINKBATCH_REDIS_PASSWORD=%s\n", srv.URL, tok, password), 0o600)
	state := filepath.Join(dir, "state")
	in := fmt.Sprintf("redis://%s/0?stream=links&group=linkbatch", addr)
	args := []string{"-e", envFile, in, state, "--rate", "1000", "--burst", "100", "--workers", "4"}
	results := func() map[string][]batch.Result { return queuetest.Results(t, filepath.Join(state, "results.csv")) }

	add(pairs[:20])
	if r := cronRun(t, binPath, nil, args...); r.code != exitOK {
		t.Fatalf("first drain: exit %d\n%s\n%s", r.code, r.stderr, mustRead(t, filepath.Join(state, "linkbatch.log")))
	}
	if got := results(); len(got) != 20 {
		t.Errorf("first drain: results for %d requests, want 20", len(got))
	}
	add(pairs[20:])
	add(pairs[:1]) // a request for a pair the first drain linked
	if r := cronRun(t, binPath, nil, args...); r.code != exitOK {
		t.Fatalf("second drain: exit %d\n%s", r.code, r.stderr)
	}
	got := results()
	if len(got) != 26 {
		t.Errorf("after two drains: results for %d requests, want 26", len(got))
	}
	linked := 0
	for id, rs := range got {
		switch {
		case len(rs) != 1:
			t.Errorf("request %s: %d results, want 1", id, len(rs))
		case rs[0].Status == batch.StatusLinked:
			linked++
		case rs[0].Status != batch.StatusAlreadyLinked:
			t.Errorf("request %s: %s (%s)", id, rs[0].Status, rs[0].Error)
		}
	}
	if linked != 25 {
		t.Errorf("%d requests linked, want 25 (one per pair)", linked)
	}
	for _, p := range pairs {
		if got, ok := srv.LinkedTo(p.Secondary); !ok || got != p.Primary {
			t.Errorf("%s linked to %q (%v), want %s", p.Secondary, got, ok, p.Primary)
		}
	}
	if s := cronStatus(t, state); s != "exit 0" {
		t.Errorf("status %q, want exit 0", s)
	}
	if log := string(mustRead(t, filepath.Join(state, "linkbatch.log"))); strings.Contains(log, password) || strings.Contains(log, tok) {
		t.Error("the log holds the Redis password or the token")
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"-e", envFile, fmt.Sprintf("redis://:%s@%s/0?stream=links", password, addr), state}, "LINKBATCH_REDIS_PASSWORD"},
		{append(slices.Clone(args), "--drain"), "--drain"},
	} {
		r := cronRun(t, binPath, nil, bad.args...)
		if r.code != 64 || !strings.Contains(r.stderr, bad.want) || strings.Contains(r.stderr, password) {
			t.Errorf("wrapper %q: exit %d, stderr %q; want 64 naming %s, without the password", bad.args[2:], r.code, r.stderr, bad.want)
		}
	}
}
