package queue

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	env := func(name string) string {
		return map[string]string{EnvRedisPassword: "from-env-r", EnvNATSPassword: "from-env-n"}[name]
	}
	tests := []struct {
		name, raw string
		want      Config
		wantErr   string
	}{
		{name: "redis defaults", raw: "redis://localhost?stream=links",
			want: Config{Kind: Redis, Addr: "localhost:6379", Password: "from-env-r", Stream: "links", Group: "linkbatch", Dead: "links:dead", ClaimIdle: time.Minute, MaxDeliveries: 5}},
		{name: "redis all keys", raw: "rediss://bob:s3cret@redis.example:6380/2?stream=s&group=g&consumer=c&dead=d&claim-idle=30s&max-deliveries=9&shared-limit=off",
			want: Config{Kind: Redis, Addr: "redis.example:6380", TLS: true, Username: "bob", Password: "s3cret", DB: 2, Stream: "s", Group: "g", Consumer: "c", Dead: "d", ClaimIdle: 30 * time.Second, MaxDeliveries: 9}},
		{name: "shared-limit on", raw: "redis://h?stream=s&consumer=c&shared-limit=on",
			want: Config{Kind: Redis, Addr: "h:6379", Password: "from-env-r", Stream: "s", Group: "linkbatch", Consumer: "c", Dead: "s:dead", ClaimIdle: time.Minute, MaxDeliveries: 5, SharedLimit: true}},
		{name: "shared-limit neither on nor off", raw: "redis://h?stream=s&shared-limit=no", wantErr: "not on or off"},
		{name: "shared-limit on nats", raw: "nats://h?stream=s&shared-limit=off", wantErr: "shared-limit is a Redis key"},
		{name: "nats", raw: "nats://127.0.0.1?stream=LINKS&consumer=workers",
			want: Config{Kind: NATS, Addr: "127.0.0.1:4222", Password: "from-env-n", Stream: "LINKS", Group: "workers", ClaimIdle: time.Minute, MaxDeliveries: 5}},
		{name: "no stream", raw: "redis://:pw@h", wantErr: "stream is required"},
		{name: "unknown key", raw: "redis://h?stream=s&bogus=1", wantErr: `unknown key "bogus"`},
		{name: "bad duration", raw: "redis://h?stream=s&claim-idle=soon", wantErr: "claim-idle"},
		{name: "claim-idle too short", raw: "redis://h?stream=s&claim-idle=1ms", wantErr: "at least 100ms"},
		{name: "max-deliveries 0", raw: "nats://h?stream=s&max-deliveries=0", wantErr: "between 1 and 1000"},
		{name: "group on nats", raw: "nats://h?stream=s&group=g", wantErr: "group is a Redis key"},
		{name: "dead on nats", raw: "nats://h?stream=s&dead=d", wantErr: "dead is a Redis key"},
		{name: "dead is the stream", raw: "redis://h?stream=s&dead=s", wantErr: "another stream"},
		{name: "db not a number", raw: "redis://h/x?stream=s", wantErr: "database number"},
		{name: "scheme", raw: "amqp://h?stream=s", wantErr: "scheme must be"},
		{name: "no host", raw: "redis://?stream=s", wantErr: "no host"},
		{name: "unparsable, with a password", raw: "redis://u:hunter2@h:99999999999?stream=s%zz", wantErr: "queue URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.raw, env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want %q", tt.raw, err, tt.wantErr)
				}
				for _, secret := range []string{"hunter2", "from-env", "pw@"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q shows the password", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.raw, err)
			}
			if tt.want.Kind == Redis && tt.want.Consumer == "" {
				if !strings.Contains(got.Consumer, "-") {
					t.Errorf("default consumer %q, want host-pid", got.Consumer)
				}
				got.Consumer = ""
			}
			if got != tt.want {
				t.Errorf("Parse(%q) =\n %+v, want\n %+v", tt.raw, got, tt.want)
			}
			if s := got.String(); strings.Contains(s, got.Password) {
				t.Errorf("String() = %q shows the password", s)
			}
		})
	}
}

func TestStringMasksPassword(t *testing.T) {
	c, err := Parse("redis://u:hunter2@h/1?stream=s&consumer=c", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.String(), "redis://u:xxxxx@h:6379/1?claim-idle=1m0s&consumer=c&dead=s%3Adead&group=linkbatch&max-deliveries=5&stream=s"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := Redact("redis://u:hunter2@h:x:y/?stream=s"); strings.Contains(got, "hunter2") {
		t.Errorf("Redact() = %q shows the password", got)
	}
}

func TestIsURL(t *testing.T) {
	for s, want := range map[string]bool{
		"redis://h?stream=s": true, "REDISS://h": true, "nats://h": true,
		"pairs.csv": false, "-": false, "http://h": false, "./redis://x": false,
	} {
		if got := IsURL(s); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", s, got, want)
		}
	}
}
