package sqlite

import (
	"context"
	"fmt"

	"github.com/deviceserver/deviceserver/storage"
)

// Device identities and settings. These change only through the REST API
// and are read once per DTLS handshake, so plain (unprepared) statements
// on the writer and the read pool are enough.

// CreatePSKIdentity stores a new PSK identity; an existing identity is ErrConflict.
func (s *Store) CreatePSKIdentity(ctx context.Context, p storage.PSKIdentity) error {
	op := fmt.Sprintf("create psk identity %q", p.Identity)
	doc, err := encode(p)
	if err != nil {
		return wrap(op, err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO psk_identities (identity, organisation_id, created_at, doc) VALUES (?, ?, ?, ?)`,
		p.Identity, p.OrganisationID, nanos(p.CreatedAt), doc)
	return wrap(op, err)
}

// GetPSKIdentity returns the PSK identity.
func (s *Store) GetPSKIdentity(ctx context.Context, identity string) (storage.PSKIdentity, error) {
	return getRow[storage.PSKIdentity](ctx, s, fmt.Sprintf("get psk identity %q", identity),
		`SELECT doc FROM psk_identities WHERE identity = ?`, identity)
}

// ListPSKIdentities returns an organisation's identities ordered by CreatedAt.
func (s *Store) ListPSKIdentities(ctx context.Context, organisationID string) ([]storage.PSKIdentity, error) {
	out, err := scanDocs[storage.PSKIdentity](s.r.QueryContext(ctx,
		`SELECT doc FROM psk_identities WHERE organisation_id = ? ORDER BY created_at, identity`, organisationID))
	return out, wrap(fmt.Sprintf("list psk identities of %q", organisationID), err)
}

// DeletePSKIdentity deletes the PSK identity.
func (s *Store) DeletePSKIdentity(ctx context.Context, identity string) error {
	return s.execOne(ctx, fmt.Sprintf("delete psk identity %q", identity),
		`DELETE FROM psk_identities WHERE identity = ?`, identity)
}

// CreateCertificate stores a new certificate; an existing ID is ErrConflict.
func (s *Store) CreateCertificate(ctx context.Context, c storage.Certificate) error {
	op := fmt.Sprintf("create certificate %q", c.ID)
	doc, err := encode(c)
	if err != nil {
		return wrap(op, err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO certificates (id, organisation_id, created_at, doc) VALUES (?, ?, ?, ?)`,
		c.ID, c.OrganisationID, nanos(c.CreatedAt), doc)
	return wrap(op, err)
}

// GetCertificate returns the certificate with the ID.
func (s *Store) GetCertificate(ctx context.Context, id string) (storage.Certificate, error) {
	return getRow[storage.Certificate](ctx, s, fmt.Sprintf("get certificate %q", id),
		`SELECT doc FROM certificates WHERE id = ?`, id)
}

// ListCertificates returns an organisation's certificates ordered by CreatedAt.
func (s *Store) ListCertificates(ctx context.Context, organisationID string) ([]storage.Certificate, error) {
	out, err := scanDocs[storage.Certificate](s.r.QueryContext(ctx,
		`SELECT doc FROM certificates WHERE organisation_id = ? ORDER BY created_at, id`, organisationID))
	return out, wrap(fmt.Sprintf("list certificates of %q", organisationID), err)
}

// DeleteCertificate deletes the certificate with the ID.
func (s *Store) DeleteCertificate(ctx context.Context, id string) error {
	return s.execOne(ctx, fmt.Sprintf("delete certificate %q", id), `DELETE FROM certificates WHERE id = ?`, id)
}

// GetSetting returns the value stored under key; an unknown key is ErrNotFound.
func (s *Store) GetSetting(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if err != nil {
		return nil, wrap(fmt.Sprintf("get setting %q", key), err)
	}
	if v == nil {
		v = []byte{} // a stored empty value is still found
	}
	return v, nil
}

// PutSetting inserts or replaces the value stored under key.
func (s *Store) PutSetting(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{} // the column is NOT NULL
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return wrap(fmt.Sprintf("put setting %q", key), err)
}

// DeleteSetting removes the value stored under key; an unknown key is ErrNotFound.
func (s *Store) DeleteSetting(ctx context.Context, key string) error {
	return s.execOne(ctx, fmt.Sprintf("delete setting %q", key), `DELETE FROM settings WHERE key = ?`, key)
}

// getRow reads one JSON document with a plain query on the read pool; no
// row is ErrNotFound.
func getRow[T any](ctx context.Context, s *Store, op, query string, args ...any) (T, error) {
	var doc string
	if err := s.r.QueryRowContext(ctx, query, args...).Scan(&doc); err != nil {
		var zero T
		return zero, wrap(op, err)
	}
	v, err := decode[T](doc)
	return v, wrap(op, err)
}
