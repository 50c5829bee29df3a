package subscriptions

import (
	"context"

	"github.com/deviceserver/deviceserver/storage"
)

// CreateGroup validates and stores a new group, assigning its ID and
// CreatedAt. Validation failures are *ValidationError; a name already used
// in the organisation is storage.ErrConflict.
func (e *Engine) CreateGroup(ctx context.Context, g storage.Group) (storage.Group, error) {
	return g, nil
}

// UpdateGroup replaces a group's name and members.
func (e *Engine) UpdateGroup(ctx context.Context, g storage.Group) error { return nil }

// DeleteGroup deletes a group.
func (e *Engine) DeleteGroup(ctx context.Context, id string) error { return nil }

// GroupsOf returns the names of the groups of org that endpoint belongs to, sorted.
func (e *Engine) GroupsOf(org, endpoint string) []string { return nil }

// CheckURL reports whether raw is acceptable as a webhook destination: an
// absolute http(s) URL allowed by Config.AllowedDestinations. The error is
// a *ValidationError naming field.
func (e *Engine) CheckURL(field, raw string) error { return nil }
