package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// stmtID names one of the statements prepared at Open. Statements below
// firstRead are prepared on the writer, the others on the read pool.
type stmtID int

const (
	stPutRegistration stmtID = iota
	stDeleteRegistration
	stEnqueue
	stAck
	stMarkBatch
	stAddDeliveryStats
	stPutObservation
	stDeleteObservation
	stPutRefreshToken
	stTakeRefreshToken

	stGetRegistration
	stGetRegistrationByEndpoint
	stExpiredRegistrations
	stGetOrganisation
	stGetAccessKey
	stGetSubscription
	stGetDeliveryStats
	stPending
	stPendingCount
	stListObservations

	numStmts

	firstRead = stGetRegistration
)

// statementSQL returns the text of every prepared statement, indexed by
// stmtID. These are the statements run per device request, per
// notification or per API call; rare ones (creating an organisation,
// listings with optional filters) are left as plain Exec/Query.
func statementSQL() [numStmts]string {
	return [numStmts]string{
		stPutRegistration: `INSERT INTO registrations (id, organisation, endpoint, expires_at, doc) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET organisation = excluded.organisation, endpoint = excluded.endpoint,
				expires_at = excluded.expires_at, doc = excluded.doc`,
		stDeleteRegistration: `DELETE FROM registrations WHERE id = ?`,
		stEnqueue:            `INSERT INTO outbox (subscription_id, delivery_id, batch_id, created_at, body) VALUES (?, ?, ?, ?, ?)`,
		stAck:                `DELETE FROM outbox WHERE subscription_id = ? AND seq <= ?`,
		stMarkBatch:          `UPDATE outbox SET batch_id = ? WHERE subscription_id = ? AND seq <= ? AND batch_id = ''`,
		stAddDeliveryStats: `UPDATE subscriptions SET
				delivered = delivered + ?, dropped = dropped + ?,
				last_error = CASE WHEN ? = '' THEN last_error ELSE ? END,
				last_success = CASE WHEN ? = '' THEN last_success ELSE ? END
			WHERE id = ?`,
		stPutObservation: `INSERT INTO observations (client_id, path, token) VALUES (?, ?, ?)
			ON CONFLICT (client_id, path) DO UPDATE SET token = excluded.token`,
		stDeleteObservation: `DELETE FROM observations WHERE client_id = ? AND path = ?`,
		stPutRefreshToken:   `INSERT INTO refresh_tokens (hash, key, doc) VALUES (?, ?, ?)`,
		stTakeRefreshToken:  `DELETE FROM refresh_tokens WHERE hash = ? RETURNING doc`,

		stGetRegistration:           `SELECT doc FROM registrations WHERE id = ?`,
		stGetRegistrationByEndpoint: `SELECT doc FROM registrations WHERE organisation = ? AND endpoint = ?`,
		stExpiredRegistrations:      `SELECT doc FROM registrations WHERE expires_at <= ? ORDER BY expires_at, id`,
		stGetOrganisation:           `SELECT doc FROM organisations WHERE id = ?`,
		stGetAccessKey:              `SELECT doc FROM access_keys WHERE key = ?`,
		stGetSubscription:           `SELECT doc FROM subscriptions WHERE id = ?`,
		stGetDeliveryStats:          `SELECT delivered, dropped, last_error, last_success FROM subscriptions WHERE id = ?`,
		stPending: `SELECT seq, delivery_id, batch_id, created_at, body FROM outbox
			WHERE subscription_id = ? ORDER BY seq LIMIT ?`,
		stPendingCount:     `SELECT count(*) FROM outbox WHERE subscription_id = ?`,
		stListObservations: `SELECT path, token FROM observations WHERE client_id = ? ORDER BY path`,
	}
}

// prepare prepares every statement once, after the schema is up to date
// (preparing checks the tables exist). database/sql prepares a statement
// again only on a connection that has not seen it yet, so the SQL text is
// parsed once per connection instead of once per call.
func (s *Store) prepare(ctx context.Context) error {
	for id, q := range statementSQL() {
		db := s.r
		if stmtID(id) < firstRead {
			db = s.w
		}
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q, err)
		}
		s.stmts[id] = st
	}
	return nil
}

// closeStmts closes the prepared statements; it is safe on a partly
// prepared set. The entries stay, so that a call after Close gets the
// closed statement's error rather than a nil statement.
func (s *Store) closeStmts() error {
	var err error
	for _, st := range s.stmts {
		if st != nil {
			err = errors.Join(err, st.Close())
		}
	}
	return err
}

// stmt returns a prepared statement.
func (s *Store) stmt(id stmtID) *sql.Stmt { return s.stmts[id] }
