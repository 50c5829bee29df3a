package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/deviceserver/deviceserver/storage"
)

// Groups. A group is a row of device_groups holding the document, and one
// row of group_members per member endpoint, which the Group filter of
// ListRegistrations joins on. Both change together in one transaction.
// Groups change only through the REST API, so plain statements on the
// writer are enough, as for the other records managed there.

// CreateGroup stores a new group. An existing ID, or another group of the
// organisation with the same Name, is ErrConflict.
func (s *Store) CreateGroup(ctx context.Context, g storage.Group) error {
	op := fmt.Sprintf("create group %q", g.ID)
	doc, err := encode(g)
	if err != nil {
		return wrap(op, err)
	}
	return s.inTxOp(ctx, op, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO device_groups (id, organisation_id, name, created_at, doc) VALUES (?, ?, ?, ?, ?)`,
			g.ID, g.OrganisationID, g.Name, nanos(g.CreatedAt), doc); err != nil {
			return err
		}
		return insertMembers(ctx, tx, g.OrganisationID, g.ID, g.Endpoints)
	})
}

// GetGroup returns the group with the ID.
func (s *Store) GetGroup(ctx context.Context, id string) (storage.Group, error) {
	return getRow[storage.Group](ctx, s, fmt.Sprintf("get group %q", id), `SELECT doc FROM device_groups WHERE id = ?`, id)
}

// UpdateGroup replaces the Name and Endpoints of the group with g.ID; its
// organisation and CreatedAt stay as stored. Another group of the
// organisation with the new Name is ErrConflict.
func (s *Store) UpdateGroup(ctx context.Context, g storage.Group) error {
	op := fmt.Sprintf("update group %q", g.ID)
	return s.inTxOp(ctx, op, func(tx *sql.Tx) error {
		var doc string
		if err := tx.QueryRowContext(ctx, `SELECT doc FROM device_groups WHERE id = ?`, g.ID).Scan(&doc); err != nil {
			return err
		}
		stored, err := decode[storage.Group](doc)
		if err != nil {
			return err
		}
		stored.Name, stored.Endpoints = g.Name, g.Endpoints
		if doc, err = encode(stored); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE device_groups SET name = ?, doc = ? WHERE id = ?`, stored.Name, doc, g.ID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM group_members WHERE group_id = ?`, g.ID); err != nil {
			return err
		}
		return insertMembers(ctx, tx, stored.OrganisationID, g.ID, stored.Endpoints)
	})
}

// insertMembers adds a group's member rows. An endpoint listed twice is
// one member.
func insertMembers(ctx context.Context, tx *sql.Tx, org, groupID string, endpoints []string) error {
	if len(endpoints) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO group_members (organisation_id, group_id, endpoint) VALUES (?, ?, ?)
		ON CONFLICT (group_id, endpoint) DO NOTHING`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, e := range endpoints {
		if _, err := st.ExecContext(ctx, org, groupID, e); err != nil {
			return err
		}
	}
	return nil
}

// ListGroups returns an organisation's groups ordered by CreatedAt, or
// every organisation's for "".
func (s *Store) ListGroups(ctx context.Context, organisationID string) ([]storage.Group, error) {
	q, args := `SELECT doc FROM device_groups ORDER BY created_at, id`, []any(nil)
	if organisationID != "" {
		q, args = `SELECT doc FROM device_groups WHERE organisation_id = ? ORDER BY created_at, id`, []any{organisationID}
	}
	out, err := scanDocs[storage.Group](s.r.QueryContext(ctx, q, args...))
	return out, wrap(fmt.Sprintf("list groups of %q", organisationID), err)
}

// DeleteGroup deletes the group and its membership.
func (s *Store) DeleteGroup(ctx context.Context, id string) error {
	return s.inTxOp(ctx, fmt.Sprintf("delete group %q", id), func(tx *sql.Tx) error {
		if err := oneRow(tx.ExecContext(ctx, `DELETE FROM device_groups WHERE id = ?`, id)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM group_members WHERE group_id = ?`, id)
		return err
	})
}

// groupCondition returns the condition on registrations of the Group
// filter: the registration's endpoint is a member of the group of that
// name of the registration's organisation. Both forms look the group up
// by name, its members by group ID, and then the registrations by
// (organisation, endpoint), all through indexes.
func groupCondition(f storage.RegistrationFilter) (string, []any) {
	if f.Organisation != "" {
		// Members listed in endpoint order, so that the page needs no sort.
		return `endpoint IN (SELECT endpoint FROM group_members WHERE group_id =
			(SELECT id FROM device_groups WHERE organisation_id = ? AND name = ?))`, []any{f.Organisation, f.Group}
	}
	// Every organisation's group of that name, each with its own devices.
	return `(organisation, endpoint) IN (SELECT organisation_id, endpoint FROM group_members WHERE group_id IN
		(SELECT id FROM device_groups WHERE name = ?))`, []any{f.Group}
}
