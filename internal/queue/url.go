package queue

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Kinds of broker a Config names.
const (
	Redis = "redis" // Redis Streams: redis:// or rediss:// (TLS)
	NATS  = "nats"  // NATS JetStream: nats:// or tls://
)

// Environment variables holding a broker's password when its URL has none.
const (
	EnvRedisPassword = "LINKBATCH_REDIS_PASSWORD"
	EnvNATSPassword  = "LINKBATCH_NATS_PASSWORD"
)

// Defaults of the optional query keys.
const (
	// DefaultGroup is the Redis consumer group, and the JetStream durable
	// consumer, when the URL names none.
	DefaultGroup = "linkbatch"
	// DefaultClaimIdle is how long a Redis entry may sit unacknowledged
	// before another consumer claims it, and JetStream's AckWait. A
	// consumer's own entries are kept fresh while it works on them, so this
	// bounds only how long the entries of a consumer that died wait.
	DefaultClaimIdle = time.Minute
	// DefaultMaxDeliveries is how many deliveries a message gets before it
	// goes to the dead letters.
	DefaultMaxDeliveries = 5
)

// Config is where a queue is and how linkbatch consumes it, parsed from a
// URL by Parse. String masks the password.
type Config struct {
	Kind     string // Redis or NATS
	Addr     string // host:port
	TLS      bool
	Username string
	Password string // never printed
	DB       int    // Redis database number (the URL's path)
	Stream   string // the stream of requests (required)
	// Group is the Redis consumer group, or the JetStream durable consumer
	// (the NATS URL's consumer key).
	Group string
	// Consumer is this process's name within a Redis group: default the
	// host name and the pid, "host-1234".
	Consumer string
	// Dead is the Redis dead-letter stream: default Stream + ":dead".
	Dead          string
	ClaimIdle     time.Duration // claim-idle; JetStream's AckWait
	MaxDeliveries int           // max-deliveries
	// SharedLimit says whether the processes reading a Redis stream pace
	// their requests to the tenant by one limit held in that Redis
	// (shared-limit=on; off, the default: each paces on its own, sharing
	// the tenant's bucket through its rate-limit headers).
	SharedLimit bool
}

// IsURL reports whether s names a queue (redis://, rediss://, nats://)
// rather than a file.
func IsURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return false
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss", "nats":
		return true
	}
	return false
}

// Parse reads a queue URL:
//
//	redis://[user:pass@]HOST[:PORT][/DB]?stream=NAME[&group=NAME][&consumer=NAME][&dead=NAME][&claim-idle=DUR][&max-deliveries=N][&shared-limit=on|off]
//	rediss://...   (TLS)
//	nats://[user:pass@]HOST[:PORT]?stream=NAME[&consumer=NAME][&claim-idle=DUR][&max-deliveries=N]
//
// Ports default to 6379 and 4222. A password missing from the URL is taken
// from env (LINKBATCH_REDIS_PASSWORD, LINKBATCH_NATS_PASSWORD); env may be
// nil. Errors never contain the password: they name the URL as String
// prints it.
func Parse(raw string, env func(string) string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("queue URL %s: not a URL", Redact(raw))
	}
	bad := func(err error) (Config, error) {
		return Config{}, fmt.Errorf("queue URL %s: %w", Redact(raw), err)
	}
	c, err := parseBase(u, env)
	if err != nil {
		return bad(err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad(errors.New("bad query"))
	}
	for key, vals := range q {
		if err := c.setKey(key, vals[len(vals)-1]); err != nil {
			return bad(err)
		}
	}
	if c.Kind == Redis {
		if c.Consumer == "" {
			host, _ := os.Hostname()
			c.Consumer = fmt.Sprintf("%s-%d", host, os.Getpid())
		}
		if c.Dead == "" {
			c.Dead = c.Stream + ":dead"
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("queue URL %s: %w", c, err)
	}
	return c, nil
}

// parseBase reads what a queue URL says before its query: the broker, its
// address, the credentials (the password from env when the URL has none)
// and a Redis database.
func parseBase(u *url.URL, env func(string) string) (Config, error) {
	c := Config{ClaimIdle: DefaultClaimIdle, MaxDeliveries: DefaultMaxDeliveries, Group: DefaultGroup}
	port := ""
	switch strings.ToLower(u.Scheme) {
	case "redis":
		c.Kind, port = Redis, "6379"
	case "rediss":
		c.Kind, c.TLS, port = Redis, true, "6379"
	case "nats":
		c.Kind, port = NATS, "4222"
	default:
		return Config{}, errors.New("scheme must be redis, rediss or nats")
	}
	if u.Hostname() == "" {
		return Config{}, errors.New("no host")
	}
	if p := u.Port(); p != "" {
		port = p
	}
	c.Addr = net.JoinHostPort(u.Hostname(), port)
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	if c.Password == "" && env != nil {
		name := EnvRedisPassword
		if c.Kind == NATS {
			name = EnvNATSPassword
		}
		c.Password = env(name)
	}
	if path := strings.Trim(u.Path, "/"); path != "" {
		if c.Kind != Redis {
			return Config{}, errors.New("a NATS URL has no path")
		}
		db, err := strconv.Atoi(path)
		if err != nil || db < 0 {
			return Config{}, fmt.Errorf("the path must be a database number, not %q", path)
		}
		c.DB = db
	}
	return c, nil
}

// setKey applies one query key of a queue URL to c.
func (c *Config) setKey(key, v string) error {
	switch key {
	case "stream":
		c.Stream = v
	case "group":
		if c.Kind != Redis {
			return errors.New("group is a Redis key; a NATS URL names its durable consumer with consumer")
		}
		c.Group = v
	case "consumer":
		if c.Kind == NATS {
			c.Group = v
		} else {
			c.Consumer = v
		}
	case "dead":
		if c.Kind != Redis {
			return errors.New("dead is a Redis key (JetStream terminates poison messages)")
		}
		c.Dead = v
	case "claim-idle":
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("claim-idle: %w", err)
		}
		c.ClaimIdle = d
	case "max-deliveries":
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("max-deliveries: %q is not a number", v)
		}
		c.MaxDeliveries = n
	case "shared-limit":
		if c.Kind != Redis {
			return errors.New("shared-limit is a Redis key")
		}
		switch v {
		case "on":
			c.SharedLimit = true
		case "off":
			c.SharedLimit = false
		default:
			return fmt.Errorf("shared-limit: %q is not on or off", v)
		}
	default:
		return fmt.Errorf("unknown key %q (want stream, group, consumer, dead, claim-idle, max-deliveries, shared-limit)", key)
	}
	return nil
}

// Validate reports the first setting out of range.
func (c Config) Validate() error {
	switch {
	case c.Kind != Redis && c.Kind != NATS:
		return fmt.Errorf("unknown broker %q", c.Kind)
	case c.Addr == "":
		return errors.New("no address")
	case c.Stream == "":
		return errors.New("stream is required")
	case c.Group == "":
		return errors.New("the group (consumer, for NATS) must not be empty")
	case c.Kind == Redis && c.Consumer == "":
		return errors.New("consumer must not be empty")
	case c.Kind == Redis && (c.Dead == c.Stream || c.Dead == ""):
		return errors.New("dead must name another stream")
	case c.ClaimIdle < 100*time.Millisecond:
		return fmt.Errorf("claim-idle must be at least 100ms, not %s", c.ClaimIdle)
	case c.MaxDeliveries < 1 || c.MaxDeliveries > 1000:
		return fmt.Errorf("max-deliveries must be between 1 and 1000, not %d", c.MaxDeliveries)
	}
	return nil
}

// String returns the queue's URL with the password masked ("xxxxx").
func (c Config) String() string {
	scheme := c.Kind
	if c.TLS && c.Kind == Redis {
		scheme = "rediss"
	}
	u := url.URL{Scheme: scheme, Host: c.Addr}
	switch {
	case c.Password != "":
		u.User = url.UserPassword(c.Username, "xxxxx")
	case c.Username != "":
		u.User = url.User(c.Username)
	}
	if c.Kind == Redis && c.DB != 0 {
		u.Path = "/" + strconv.Itoa(c.DB)
	}
	q := url.Values{"stream": {c.Stream}}
	if c.Kind == Redis {
		q.Set("group", c.Group)
		q.Set("consumer", c.Consumer)
		q.Set("dead", c.Dead)
		if c.SharedLimit {
			q.Set("shared-limit", "on")
		}
	} else {
		q.Set("consumer", c.Group)
	}
	q.Set("claim-idle", c.ClaimIdle.String())
	q.Set("max-deliveries", strconv.Itoa(c.MaxDeliveries))
	u.RawQuery = q.Encode()
	return u.String()
}

// Redact masks whatever stands between "://" and the last '@' of the
// authority of raw (the user information) so that a URL that does not
// parse can still be named in an error.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		if strings.Contains(raw, "@") {
			return "(a URL with credentials)"
		}
		return raw
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		rest = "xxxxx@" + rest[at+1:]
	}
	return scheme + "://" + rest
}
