package auth

import (
	"context"
	"encoding/json"
	"time"
)

// DefaultKeyTokenLifetime is how long a token an API key is exchanged for lives, unless the API says otherwise.
const DefaultKeyTokenLifetime = 15 * time.Minute

// Org is an organization: a tenant that owns clients and API keys. A management token carrying its id (org_id)
// sees and changes only what the organization owns.
type Org struct {
	ID           string // "org_…"
	Name         string // unique
	Description  string
	APIKeyPrefix string // the prefix of its API keys; "" for the server's default
	// AllowedGrants are the most an organization's own administrators may grant its clients and API keys: per API,
	// the scopes. Global administrators are not bound by them.
	AllowedGrants []OrgGrant
	Version       int64 // bumped by every update
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// OrgGrant is an API and the scopes of it that an organization may hand out.
type OrgGrant struct {
	APIID  string   `json:"api_id"`
	Scopes []string `json:"scopes"`
}

// RateLimit is how many tokens a client may get: Count per Per. The zero value is no limit.
type RateLimit struct {
	Count int
	Per   time.Duration
}

// IsZero reports whether r is no limit.
func (r RateLimit) IsZero() bool { return r.Count == 0 }

// Page asks for one page of a list ordered by a unique key: the items after the key After ("" for the first
// page), at most Limit of them (0 for all).
type Page struct {
	After string
	Limit int
}

// ClientFilter selects clients.
type ClientFilter struct {
	OrgID string // only the organization's clients; "" for every client
	Page         // ordered by ID
}

// GrantFilter selects grants.
type GrantFilter struct {
	ClientID string
	APIID    string
	OrgID    string // only grants of the organization's clients
	Page            // ordered by ID
}

// AuditEvent is one entry of the audit log: a management change or a security event. It never holds a secret.
type AuditEvent struct {
	ID        string // "evt_…", increasing with Time: events sort by ID
	Time      time.Time
	Actor     string // who: the sub of a management token, a client_id, or "config" for the declarative file
	Action    string // what, as noun.verb: "client.create", "client.secret.add", "auth.failure", "token.rate_limited"
	Resource  string // what it was done to, as type/id: "client/abc", "api/api_…"; "" for none
	OrgID     string // the organization the resource belongs to; "" for none
	RequestID string
	Address   string          // the caller's network address, for security events
	Details   json.RawMessage // a JSON object: the fields changed, counts; nil for none
}

// AuditFilter selects audit events, newest first.
type AuditFilter struct {
	From, To time.Time // Time in [From, To); zero for unbounded
	Actor    string
	Action   string
	Resource string
	OrgID    string
	Before   string // only events with IDs before this one (the cursor of the next page); "" for the newest
	Limit    int    // at most this many; 0 for all
}

// OrgStore keeps organizations.
type OrgStore interface {
	// CreateOrg stores a new organization. ErrConflict if the ID or Name is taken.
	CreateOrg(ctx context.Context, o *Org) error
	// UpdateOrg replaces every field but ID and CreatedAt of the organization with the same ID, if its stored
	// Version is o.Version, and then increments o.Version. ErrNotFound if there is none; ErrStale if the
	// version differs; ErrConflict if the new Name is taken.
	UpdateOrg(ctx context.Context, o *Org) error
	// FindOrg returns the organization with the given ID, or ErrNotFound.
	FindOrg(ctx context.Context, id string) (*Org, error)
	// ListOrgs returns a page of organizations ordered by ID.
	ListOrgs(ctx context.Context, p Page) ([]*Org, error)
	// DeleteOrg removes an organization, if version is 0 or its stored Version is version, checking the version
	// and what it owns in the same transaction as the delete. ErrNotFound if there is none; ErrStale if the version
	// differs; ErrConflict if it still owns clients or API keys. On an error nothing is removed.
	DeleteOrg(ctx context.Context, id string, version int64) error
}

// AuditStore keeps the audit log.
type AuditStore interface {
	// AppendAuditEvents stores events. ErrConflict if an ID is taken (then none is stored).
	AppendAuditEvents(ctx context.Context, events []*AuditEvent) error
	// ListAuditEvents returns the events that f selects, newest (highest ID) first.
	ListAuditEvents(ctx context.Context, f AuditFilter) ([]*AuditEvent, error)
	// PruneAuditEvents removes events older than before and returns how many it removed.
	PruneAuditEvents(ctx context.Context, before time.Time) (int64, error)
}

// Rate limit bounds.
const (
	MaxRateLimitCount = 1_000_000
	MinRateLimitPer   = time.Second
	MaxRateLimitPer   = 24 * time.Hour
)

// Validate checks a rate limit: none, or 1–MaxRateLimitCount per 1s–24h in whole seconds.
func (r RateLimit) Validate(field string) error {
	if r.Count == 0 && r.Per == 0 {
		return nil
	}
	if r.Count < 1 || r.Count > MaxRateLimitCount {
		return invalid(field+".count", "must be from 1 to %d", MaxRateLimitCount)
	}
	if r.Per < MinRateLimitPer || r.Per > MaxRateLimitPer || r.Per%time.Second != 0 {
		return invalid(field+".per", "must be a whole number of seconds from 1 to 86400")
	}
	return nil
}

// Normalize validates an organization.
func (o *Org) Normalize() error {
	if err := ValidateName("name", o.Name); err != nil {
		return err
	}
	if err := ValidateDescription("description", o.Description); err != nil {
		return err
	}
	if o.APIKeyPrefix != "" {
		if err := ValidateKeyPrefix("api_key_prefix", o.APIKeyPrefix); err != nil {
			return err
		}
	}
	if len(o.AllowedGrants) > MaxScopes {
		return invalid("allowed_grants", "has more than %d entries", MaxScopes)
	}
	seen := make(map[string]bool, len(o.AllowedGrants))
	for i, g := range o.AllowedGrants {
		if seen[g.APIID] {
			return invalid(sprintf("allowed_grants[%d]", i), "names an API twice")
		}
		seen[g.APIID] = true
	}
	return nil
}

// API key prefix bounds.
const (
	MinKeyPrefixLen = 2
	MaxKeyPrefixLen = 12
)

// ValidKeyPrefix reports whether s is an API key prefix: MinKeyPrefixLen to MaxKeyPrefixLen lowercase letters and
// digits, starting with a letter (so it never holds the "_" that ends it, and secret scanners can match it).
func ValidKeyPrefix(s string) bool {
	if len(s) < MinKeyPrefixLen || len(s) > MaxKeyPrefixLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// ValidateKeyPrefix checks an API key prefix (ValidKeyPrefix).
func ValidateKeyPrefix(field, s string) error {
	if s == "" {
		return invalid(field, "is required")
	}
	if !ValidKeyPrefix(s) {
		return invalid(field, "%q: use %d to %d lowercase letters and digits, starting with a letter (e.g. gate)",
			s, MinKeyPrefixLen, MaxKeyPrefixLen)
	}
	return nil
}
