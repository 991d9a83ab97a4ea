package linker

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// MinSecretLen is the shortest token or client secret linkbatch accepts.
// Real Management API tokens are JWTs of several hundred characters and
// Auth0 client secrets have 64; a shorter value is a mistake, and masking
// it wherever it occurs in prose would mangle messages (a one-letter token
// would mask every occurrence of that letter). Values shorter than this are
// not searched for by the redaction of errors.
const MinSecretLen = 16

// withheld replaces the message of an answer whose body carried a
// credential.
const withheld = "(body withheld: it contained a credential)"

// credentialPattern matches text that carries a credential in a form a
// server might echo: a form-encoded or JSON-ish key=value of a secret field,
// or an Authorization header's bearer or basic credential.
var credentialPattern = regexp.MustCompile(`(?i)(client_secret|password|access_token|id_token|refresh_token|link_with|assertion|code_verifier)\\?["']?\s*[=:]|\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}`)

// holdsCredential reports whether s carries a credential. Text that is not
// JSON (strict is true) is held to a stricter rule: any mention of link_with
// counts, as a server echoing a request would include the JWT after it.
func holdsCredential(s string, strict bool) bool {
	if credentialPattern.MatchString(s) {
		return true
	}
	return strict && strings.Contains(strings.ToLower(s), "link_with")
}

// redactError masks each secret (of at least MinSecretLen bytes) in err and
// keeps its chain: errors built by this package (*APIError,
// *RateLimitError) are masked in place, so errors.As still finds them; any
// other error whose text still holds a secret is wrapped in one whose Error
// is the masked text and whose Unwrap returns err.
func redactError(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var ae *APIError
	if errors.As(err, &ae) {
		ae.Title = redact(ae.Title, secrets)
		ae.Code = redact(ae.Code, secrets)
		ae.Message = redact(ae.Message, secrets)
	}
	text := err.Error()
	if masked := redact(text, secrets); masked != text {
		return &redactedError{text: masked, cause: err}
	}
	return err
}

// redact masks in s every secret of at least MinSecretLen bytes, in its
// plain and its form-encoded spelling.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) < MinSecretLen {
			continue
		}
		s = strings.ReplaceAll(s, sec, "[REDACTED]")
		if q := url.QueryEscape(sec); q != sec {
			s = strings.ReplaceAll(s, q, "[REDACTED]")
		}
	}
	return s
}

// redactedError is an error whose text had a secret masked. It unwraps to
// the original error, so that errors.Is and errors.As see its chain (a
// context error, a transport error); its own text is the masked one.
type redactedError struct {
	text  string
	cause error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.cause }
