package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations returns the schema changes in order; the database's version
// is the number of them applied. Append only: never edit a released one.
//
// Time columns used for ordering and range queries are INTEGER Unix
// nanoseconds (see nanos); the records themselves, with full-precision
// times, are in the JSON doc columns.
func migrations() []string {
	return []string{
		// 1: initial schema.
		`
CREATE TABLE organisations (
	id         TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL,
	doc        TEXT NOT NULL
);

CREATE TABLE access_keys (
	key             TEXT PRIMARY KEY,
	organisation_id TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	doc             TEXT NOT NULL
);
CREATE INDEX access_keys_organisation ON access_keys (organisation_id, created_at);

CREATE TABLE refresh_tokens (
	hash TEXT PRIMARY KEY,
	key  TEXT NOT NULL,
	doc  TEXT NOT NULL
);
CREATE INDEX refresh_tokens_key ON refresh_tokens (key);

CREATE TABLE registrations (
	id           TEXT PRIMARY KEY,
	organisation TEXT NOT NULL,
	endpoint     TEXT NOT NULL,
	expires_at   INTEGER NOT NULL,
	doc          TEXT NOT NULL
);
CREATE UNIQUE INDEX registrations_organisation_endpoint ON registrations (organisation, endpoint);
CREATE INDEX registrations_endpoint ON registrations (endpoint, organisation, id);
CREATE INDEX registrations_expires_at ON registrations (expires_at);

CREATE TABLE object_definitions (
	organisation_id TEXT NOT NULL,
	object_id       INTEGER NOT NULL,
	doc             TEXT NOT NULL,
	PRIMARY KEY (organisation_id, object_id)
);

CREATE TABLE subscriptions (
	id              TEXT PRIMARY KEY,
	organisation_id TEXT NOT NULL,
	client_id       TEXT NOT NULL,
	type            TEXT NOT NULL,
	path            TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	doc             TEXT NOT NULL,
	delivered       INTEGER NOT NULL DEFAULT 0,
	dropped         INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT NOT NULL DEFAULT '',
	last_success    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX subscriptions_organisation ON subscriptions (organisation_id, client_id, created_at);
CREATE INDEX subscriptions_client ON subscriptions (client_id, created_at);

-- AUTOINCREMENT so that a sequence number is never handed out twice, even
-- after the highest entries were acknowledged and deleted.
CREATE TABLE outbox (
	seq             INTEGER PRIMARY KEY AUTOINCREMENT,
	subscription_id TEXT NOT NULL,
	delivery_id     TEXT NOT NULL,
	created_at      TEXT NOT NULL,
	body            BLOB NOT NULL
);
CREATE INDEX outbox_subscription ON outbox (subscription_id, seq);

CREATE TABLE observations (
	client_id TEXT NOT NULL,
	path      TEXT NOT NULL,
	token     BLOB NOT NULL,
	PRIMARY KEY (client_id, path)
);
`,
		// 2: device identities (DTLS PSKs, issued certificates) and
		// server-wide settings such as the CA.
		`
CREATE TABLE psk_identities (
	identity        TEXT PRIMARY KEY,
	organisation_id TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	doc             TEXT NOT NULL
);
CREATE INDEX psk_identities_organisation ON psk_identities (organisation_id, created_at);

CREATE TABLE certificates (
	id              TEXT PRIMARY KEY,
	organisation_id TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	doc             TEXT NOT NULL
);
CREATE INDEX certificates_organisation ON certificates (organisation_id, created_at);

CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
`,
		// 3: device groups, outbox batches and compatibility-API
		// subscriptions.
		`
-- The batch an entry was sent in (MarkBatch); '' until then.
ALTER TABLE outbox ADD COLUMN batch_id TEXT NOT NULL DEFAULT '';

-- Subscriptions made from one compatibility-API subscription share a
-- compat_id; '' for the others. The index holds only those that have one,
-- so the queries on it repeat its condition (compat_id <> '').
ALTER TABLE subscriptions ADD COLUMN compat_id TEXT NOT NULL DEFAULT '';
UPDATE subscriptions SET compat_id = json_extract(doc, '$.compatId')
	WHERE json_extract(doc, '$.compatId') IS NOT NULL;
CREATE INDEX subscriptions_compat ON subscriptions (compat_id, created_at) WHERE compat_id <> '';

-- "groups" is an SQL keyword, hence device_groups.
CREATE TABLE device_groups (
	id              TEXT PRIMARY KEY,
	organisation_id TEXT NOT NULL,
	name            TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	doc             TEXT NOT NULL
);
CREATE UNIQUE INDEX device_groups_organisation_name ON device_groups (organisation_id, name);
CREATE INDEX device_groups_organisation ON device_groups (organisation_id, created_at);

-- One row per member endpoint of a group, kept by Create/Update/DeleteGroup,
-- for the Group filter of ListRegistrations. A group's endpoints are also in
-- its doc, as given.
CREATE TABLE group_members (
	organisation_id TEXT NOT NULL,
	group_id        TEXT NOT NULL,
	endpoint        TEXT NOT NULL,
	PRIMARY KEY (group_id, endpoint)
);
`,
	}
}

// migrate brings the schema to the newest version in one transaction and
// returns the versions before and after. A database written by a newer
// server is refused rather than misread.
func migrate(ctx context.Context, db *sql.DB) (from, to int, err error) {
	return migrateTo(ctx, db, migrations())
}

// migrateTo is migrate with the list of migrations given: the tests use it
// to make databases of earlier versions.
func migrateTo(ctx context.Context, db *sql.DB, ms []string) (from, to int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	// After a successful Commit this is a no-op returning sql.ErrTxDone.
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&from); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return 0, 0, fmt.Errorf("migrate: %w", err)
		}
	case err != nil:
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	if from > len(ms) {
		return from, from, fmt.Errorf("migrate: database schema version %d is newer than this server's %d", from, len(ms))
	}
	for v := from; v < len(ms); v++ {
		if _, err := tx.ExecContext(ctx, ms[v]); err != nil {
			return from, v, fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(ms)); err != nil {
		return from, from, fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return from, from, fmt.Errorf("migrate: %w", err)
	}
	return from, len(ms), nil
}
