package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

const auditColumns = `id, occurred_at, actor, action, resource, org_id, request_id, address, details`

func scanAuditEvent(row scanner) (*auth.AuditEvent, error) {
	var (
		e       auth.AuditEvent
		at      int64
		details sql.NullString
	)
	err := row.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Resource, &e.OrgID, &e.RequestID, &e.Address, &details)
	if err != nil {
		return nil, err
	}
	e.Time = fromMillis(at)
	if details.Valid {
		e.Details = json.RawMessage(details.String)
	}
	return &e, nil
}

// AppendAuditEvents stores events, all or none, in one transaction. It returns auth.ErrConflict if an ID is
// taken.
func (db *DB) AppendAuditEvents(ctx context.Context, events []*auth.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		for _, e := range events {
			details := sql.NullString{String: string(e.Details), Valid: len(e.Details) > 0}
			err := db.exec(ctx, tx, `INSERT INTO audit_events (`+auditColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				e.ID, millis(e.Time), e.Actor, e.Action, e.Resource, e.OrgID, e.RequestID, e.Address, details)
			if err != nil {
				return fmt.Errorf("event %q: %w", e.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d audit events: %w", len(events), err)
	}
	return nil
}

// ListAuditEvents returns the events that f selects, newest (highest ID) first.
func (db *DB) ListAuditEvents(ctx context.Context, f auth.AuditFilter) ([]*auth.AuditEvent, error) {
	var q filter
	if !f.From.IsZero() {
		q.where("occurred_at >= %s", millis(f.From))
	}
	if !f.To.IsZero() {
		q.where("occurred_at < %s", millis(f.To))
	}
	for _, c := range []struct{ column, value string }{
		{"actor", f.Actor}, {"action", f.Action}, {"resource", f.Resource}, {"org_id", f.OrgID},
	} {
		if c.value != "" {
			q.where(c.column+" = %s", c.value)
		}
	}
	if f.Before != "" {
		q.where("id < %s", f.Before)
	}
	query := `SELECT ` + auditColumns + ` FROM audit_events ` + q.clause() + ` ORDER BY id DESC ` + q.limit(f.Limit)
	events, err := queryList(ctx, db, scanAuditEvent, query, q.args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	return events, nil
}

// pruneBatch is how many events PruneAuditEvents removes per statement, so that it never holds the write lock
// for long.
const pruneBatch = 1000

// PruneAuditEvents removes events older than before and returns how many it removed. It removes them in batches,
// each in its own transaction: if it fails, the events of the batches before are gone, and it says how many.
func (db *DB) PruneAuditEvents(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		n, err := db.execCount(ctx, db.db, `DELETE FROM audit_events
WHERE id IN (SELECT id FROM audit_events WHERE occurred_at < $1 LIMIT $2)`, millis(before), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune audit events before %v: %w", before, err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
