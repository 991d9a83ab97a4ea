package linker

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ParseDomain turns the value of AUTH0_DOMAIN into the tenant's base URL.
//
// A bare host such as "acme.eu.auth0.com" or "acme.eu.auth0.com:8443" means
// https. A full URL is accepted too: https with any host, and http only when
// the host is a loopback address (localhost, 127.0.0.0/8 or ::1), for local
// testing. Surrounding white space and a trailing "/" are removed; the result
// has no path.
//
// ParseDomain returns an error naming the value when it is empty, has another
// scheme, user info, a query, a fragment, a path, or an invalid host or port.
// A password in the value is masked in the error.
func ParseDomain(s string) (*url.URL, error) {
	raw := strings.TrimSpace(s)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("auth0 domain %q: %s", maskUserinfo(raw), fmt.Sprintf(format, args...))
	}
	if raw == "" {
		return nil, fmt.Errorf("auth0 domain is empty")
	}
	if strings.Contains(raw, "?") {
		return nil, bad("must not have a query")
	}
	if strings.Contains(raw, "#") {
		return nil, bad("must not have a fragment")
	}
	full := raw
	if !strings.Contains(raw, "://") {
		full = "https://" + raw
	}
	u, err := url.Parse(full)
	if err != nil {
		// The url package quotes the input in its message; keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, bad("%v", err)
	}
	switch {
	case u.User != nil:
		return nil, bad("must not contain user info")
	case u.Opaque != "":
		return nil, bad("is not a URL or host name")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, bad("scheme %q is not https", u.Scheme)
	case u.Path != "" && u.Path != "/":
		return nil, bad("must not have a path (got %q)", u.Path)
	}
	host := u.Hostname()
	if host == "" {
		return nil, bad("has no host")
	}
	if strings.HasSuffix(u.Host, ":") {
		return nil, bad("has an empty port")
	}
	if !validHost(host) {
		return nil, bad("host %q is not a valid host name or IP address", host)
	}
	if u.Scheme == "http" && !isLoopback(host) {
		return nil, bad("http is only allowed for a loopback host (localhost, 127.0.0.0/8, ::1); use https")
	}
	return &url.URL{Scheme: u.Scheme, Host: strings.ToLower(u.Host)}, nil
}

// isLoopback reports whether host (without port or brackets) is localhost or
// a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validHost reports whether host is an IP address or a DNS name made of
// letters, digits, '-' and '.' labels.
func validHost(host string) bool {
	if net.ParseIP(host) != nil {
		return true
	}
	if len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// maskUserinfo hides a password in s, if s parses as a URL with one.
func maskUserinfo(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	full := s
	if !strings.Contains(s, "://") {
		full = "https://" + s
	}
	u, err := url.Parse(full)
	if err != nil || u.User == nil {
		// Unparseable: drop everything up to the last '@' to be safe.
		return "…@" + s[strings.LastIndex(s, "@")+1:]
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	if strings.Contains(s, "://") {
		return u.String()
	}
	return strings.TrimPrefix(u.String(), "https://")
}
