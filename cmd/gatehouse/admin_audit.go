package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// auditJSON is an audit event as the management API shows it.
type auditJSON struct {
	ID        string          `json:"id"`
	Time      *time.Time      `json:"time"`
	Actor     string          `json:"actor"`
	Action    string          `json:"action"`
	Resource  string          `json:"resource"`
	OrgID     string          `json:"org_id"`
	RequestID string          `json:"request_id"`
	Address   string          `json:"address"`
	Details   json.RawMessage `json:"details"`
}

// auditListing shows events as the server orders them: newest first.
var auditListing = listing[auditJSON]{
	header: []string{"TIME", "ACTOR", "ACTION", "RESOURCE", "ORG", "DETAILS"},
	row: func(e auditJSON) []string {
		return []string{timeCell(e.Time), e.Actor, e.Action, e.Resource, e.OrgID, string(e.Details)}
	},
}

// defaultAuditLimit is how many events audit list shows without --limit: the newest.
const defaultAuditLimit = 100

func newAuditCmd(a *adminFlags) *cobra.Command {
	var from, to, actor, action, resource, org string
	list := newListCmd("List audit events, newest first", defaultAuditLimit, func(cmd *cobra.Command, limit int) error {
		now := time.Now()
		q := map[string]string{"actor": actor, "action": action, "resource": resource}
		for _, t := range []struct{ flag, value string }{{"from", from}, {"to", to}} {
			if t.value == "" {
				continue
			}
			at, err := parseTimeFlag(t.value, now)
			if err != nil {
				return usageError{fmt.Errorf("--%s %q: give an RFC 3339 time (2026-11-21T09:00:00Z) or a duration ago (24h)", t.flag, t.value)}
			}
			q[t.flag] = at.UTC().Format(time.RFC3339)
		}
		orgID, err := resolveOrg(cmd.Context(), a, org)
		if err != nil {
			return err
		}
		q["org_id"] = orgID
		return listResources(cmd.Context(), a, "/api/v1/audit-events", q, limit, auditListing)
	})
	fl := list.Flags()
	fl.StringVar(&from, "from", "", "only events at or after this time: RFC 3339, or a duration ago (24h)")
	fl.StringVar(&to, "to", "", "only events before this time: RFC 3339, or a duration ago")
	fl.StringVar(&actor, "actor", "", "only events by this actor (a client_id)")
	fl.StringVar(&action, "action", "", "only this action, e.g. client.create")
	fl.StringVar(&resource, "resource", "", "only events about this resource, e.g. client/billing")
	fl.StringVar(&org, "org", "", "only events of this organization (id or name)")
	return newNoun("audit", "Read the audit log of management changes: list",
		`Read the audit log: who changed what through the management API, newest first. Without --limit, list shows
the newest 100 events; --limit 0 shows all that match.`, list)
}

// parseTimeFlag reads an RFC 3339 time, or a duration meaning that long before now.
func parseTimeFlag(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("not a time")
	}
	return now.Add(-d), nil
}
