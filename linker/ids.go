package linker

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Providers is the identity provider enum of the Management API's
// UserIdentityProviderEnum schema, sorted.
var providers = []string{
	"ad", "adfs", "amazon", "apple", "auth0", "auth0-oidc", "baidu", "bitbucket",
	"bitly", "box", "custom", "daccount", "dropbox", "dwolla", "email", "evernote",
	"evernote-sandbox", "exact", "facebook", "fitbit", "github", "google-apps",
	"google-oauth2", "instagram", "ip", "line", "linkedin", "oauth1", "oauth2",
	"office365", "oidc", "okta", "paypal", "paypal-sandbox", "pingfederate",
	"planningcenter", "salesforce", "salesforce-community", "salesforce-sandbox",
	"samlp", "sharepoint", "shop", "shopify", "sms", "soundcloud",
	"thirtysevensignals", "twitter", "untappd", "vkontakte", "waad", "weibo",
	"windowslive", "wordpress", "yahoo", "yandex",
}

// Providers returns the identity providers the API accepts in a link
// request, sorted. The caller may modify the returned slice.
func Providers() []string { return slices.Clone(providers) }

// ValidProvider reports whether p is in the API's provider enum. A dry
// run checks the provider of every row: a switch does it in a few
// comparisons and reads no memory but its constants (a look-up in a map
// cost four times as much, more when the map was out of the cache).
// TestValidProvider checks it against the list.
func ValidProvider(p string) bool {
	switch p {
	case "ad", "adfs", "amazon", "apple", "auth0", "auth0-oidc", "baidu", "bitbucket", "bitly", "box",
		"custom", "daccount", "dropbox", "dwolla", "email", "evernote", "evernote-sandbox", "exact",
		"facebook", "fitbit", "github", "google-apps", "google-oauth2", "instagram", "ip", "line",
		"linkedin", "oauth1", "oauth2", "office365", "oidc", "okta", "paypal", "paypal-sandbox",
		"pingfederate", "planningcenter", "salesforce", "salesforce-community", "salesforce-sandbox",
		"samlp", "sharepoint", "shop", "shopify", "sms", "soundcloud", "thirtysevensignals", "twitter",
		"untappd", "vkontakte", "waad", "weibo", "windowslive", "wordpress", "yahoo", "yandex":
		return true
	}
	return false
}

var connectionIDPattern = regexp.MustCompile(`^con_[A-Za-z0-9]{16}$`)

// ValidConnectionID reports whether s matches the schema's pattern
// ^con_[A-Za-z0-9]{16}$.
func ValidConnectionID(s string) bool { return connectionIDPattern.MatchString(s) }

// Errors returned by ParseUserID.
var (
	ErrEmptyID      = errors.New("is empty")
	ErrNoProvider   = errors.New("has no provider prefix (want provider|id)")
	ErrEmptyIDPart  = errors.New("has nothing after the provider")
	ErrControlChars = errors.New("contains control characters")
	ErrIDTooLong    = fmt.Errorf("is longer than %d bytes", MaxIDLen)
)

// MaxIDLen is the longest user id, in bytes, that linkbatch sends. Auth0
// documents no maximum; real ids are tens of bytes (auth0|64b0…,
// google-oauth2|1077…) and enterprise ones carry at most an email address
// (320 bytes) after their prefixes, so 2,048 bytes is generous, and an id
// longer than that is a broken input, not a user.
const MaxIDLen = 2048

// ParseUserID splits a full user id such as "samlp|acme|bob@acme.com" into its
// provider ("samlp") and the identity's user_id ("acme|bob@acme.com"): the
// provider is the text before the first '|' and the rest is kept whole.
// It returns ErrEmptyID, ErrNoProvider, ErrEmptyIDPart or ErrControlChars;
// the provider is not checked against the enum (see ValidProvider).
func ParseUserID(id string) (provider, userID string, err error) {
	if err := CheckID(id); err != nil {
		return "", "", err
	}
	provider, userID, ok := strings.Cut(id, "|")
	if !ok || provider == "" {
		return "", "", ErrNoProvider
	}
	if userID == "" {
		return "", "", ErrEmptyIDPart
	}
	return provider, userID, nil
}

// CheckID returns ErrIDTooLong for an id longer than MaxIDLen bytes,
// ErrEmptyID for an empty or all-space id and ErrControlChars for one that
// contains control characters; nil otherwise.
func CheckID(id string) error {
	if len(id) > MaxIDLen {
		return ErrIDTooLong
	}
	if strings.TrimSpace(id) == "" {
		return ErrEmptyID
	}
	if strings.ContainsFunc(id, unicode.IsControl) {
		return ErrControlChars
	}
	return nil
}
