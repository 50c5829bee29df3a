package sqlite

import (
	"context"
	"errors"

	"github.com/deviceserver/deviceserver/storage"
)

// Stubs, replaced by the real implementation.

var errTODO = errors.ErrUnsupported

// CreateGroup stores a new group.
func (s *Store) CreateGroup(ctx context.Context, g storage.Group) error { return errTODO }

// GetGroup returns a group.
func (s *Store) GetGroup(ctx context.Context, id string) (storage.Group, error) {
	return storage.Group{}, errTODO
}

// UpdateGroup replaces a group.
func (s *Store) UpdateGroup(ctx context.Context, g storage.Group) error { return errTODO }

// ListGroups lists groups.
func (s *Store) ListGroups(ctx context.Context, organisationID string) ([]storage.Group, error) {
	return nil, errTODO
}

// DeleteGroup deletes a group.
func (s *Store) DeleteGroup(ctx context.Context, id string) error { return errTODO }

// MarkBatch marks outbox entries.
func (s *Store) MarkBatch(ctx context.Context, subscriptionID string, upTo int64, batchID string) error {
	return errTODO
}

// DeleteSetting removes a setting.
func (s *Store) DeleteSetting(ctx context.Context, key string) error { return errTODO }
