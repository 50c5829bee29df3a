package subscriptions

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/deviceserver/deviceserver/storage"
)

// groupIndex keeps every group's membership in memory, so that matching a
// lifecycle event against Criteria.Group reads nothing from the store. Like
// lifecycleIndex it is written through: changed only after the store write
// succeeded, under Engine.groupMu.
type groupIndex struct {
	mu     sync.RWMutex
	byID   map[string]storage.Group
	member map[memberKey]map[string]bool // (org, endpoint) → group names
}

type memberKey struct{ org, endpoint string }

func newGroupIndex() *groupIndex {
	return &groupIndex{byID: make(map[string]storage.Group), member: make(map[memberKey]map[string]bool)}
}

func (x *groupIndex) put(g storage.Group) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.byID[g.ID]; ok {
		x.removeLocked(old)
	}
	x.byID[g.ID] = g
	for _, ep := range g.Endpoints {
		k := memberKey{g.OrganisationID, ep}
		if x.member[k] == nil {
			x.member[k] = make(map[string]bool)
		}
		x.member[k][g.Name] = true
	}
}

func (x *groupIndex) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.byID[id]; ok {
		x.removeLocked(old)
	}
}

func (x *groupIndex) removeLocked(g storage.Group) {
	delete(x.byID, g.ID)
	for _, ep := range g.Endpoints {
		k := memberKey{g.OrganisationID, ep}
		delete(x.member[k], g.Name)
		if len(x.member[k]) == 0 {
			delete(x.member, k)
		}
	}
}

// in reports whether endpoint is a member of org's group name.
func (x *groupIndex) in(org, endpoint, name string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.member[memberKey{org, endpoint}][name]
}

func (x *groupIndex) of(org, endpoint string) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []string
	for n := range x.member[memberKey{org, endpoint}] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// validateGroup checks a group and normalises its members (trimmed, no
// duplicates, in the order given).
func validateGroup(g *storage.Group) error {
	var p problems
	g.Name = strings.TrimSpace(g.Name)
	switch {
	case g.Name == "":
		p.add("Name", "a group needs a name")
	case len(g.Name) > 200 || strings.IndexFunc(g.Name, unicode.IsControl) >= 0:
		p.add("Name", "must be at most 200 characters without control characters")
	}
	seen := make(map[string]bool, len(g.Endpoints))
	eps := make([]string, 0, len(g.Endpoints))
	for _, ep := range g.Endpoints {
		ep = strings.TrimSpace(ep)
		if ep == "" || strings.IndexFunc(ep, unicode.IsControl) >= 0 {
			p.add("Endpoints", "endpoint names must not be empty or contain control characters")
			continue
		}
		if !seen[ep] {
			seen[ep] = true
			eps = append(eps, ep)
		}
	}
	g.Endpoints = eps
	return p.err()
}

// CreateGroup validates and stores a new group, assigning its ID and
// CreatedAt. Validation failures are *ValidationError; a name already used
// in the organisation is storage.ErrConflict. Lifecycle subscriptions match
// the new membership from the next event on; Observation pre-subscriptions
// are applied to the new members that are online, in the background.
func (e *Engine) CreateGroup(ctx context.Context, g storage.Group) (storage.Group, error) {
	if err := validateGroup(&g); err != nil {
		return storage.Group{}, fmt.Errorf("subscriptions: create group: %w", err)
	}
	g.ID = newID()
	g.CreatedAt = e.now().UTC()
	e.groupMu.Lock()
	defer e.groupMu.Unlock()
	if err := e.store.CreateGroup(ctx, g); err != nil {
		return storage.Group{}, fmt.Errorf("subscriptions: create group: %w", err)
	}
	e.groups.put(g)
	e.membersChanged(g.OrganisationID, g.Endpoints)
	return g, nil
}

// UpdateGroup replaces a group's name and members (ID, organisation and
// CreatedAt are kept from the stored group).
func (e *Engine) UpdateGroup(ctx context.Context, g storage.Group) error {
	if err := validateGroup(&g); err != nil {
		return fmt.Errorf("subscriptions: update group: %w", err)
	}
	e.groupMu.Lock()
	defer e.groupMu.Unlock()
	old, err := e.store.GetGroup(ctx, g.ID)
	if err != nil {
		return fmt.Errorf("subscriptions: update group: %w", err)
	}
	g.OrganisationID, g.CreatedAt = old.OrganisationID, old.CreatedAt
	if err := e.store.UpdateGroup(ctx, g); err != nil {
		return fmt.Errorf("subscriptions: update group: %w", err)
	}
	e.groups.put(g)
	e.membersChanged(g.OrganisationID, append(slices.Clone(old.Endpoints), g.Endpoints...))
	return nil
}

// DeleteGroup deletes a group; its members leave the subscriptions that
// selected them by it.
func (e *Engine) DeleteGroup(ctx context.Context, id string) error {
	e.groupMu.Lock()
	defer e.groupMu.Unlock()
	old, err := e.store.GetGroup(ctx, id)
	if err != nil {
		return fmt.Errorf("subscriptions: delete group: %w", err)
	}
	if err := e.store.DeleteGroup(ctx, id); err != nil {
		return fmt.Errorf("subscriptions: delete group: %w", err)
	}
	e.groups.remove(id)
	e.membersChanged(old.OrganisationID, old.Endpoints)
	return nil
}

// GroupsOf returns the names of the groups of org that endpoint belongs to, sorted.
func (e *Engine) GroupsOf(org, endpoint string) []string { return e.groups.of(org, endpoint) }

// CheckURL reports whether raw is acceptable as a webhook destination: an
// absolute http(s) URL allowed by Config.AllowedDestinations. The error is
// a *ValidationError naming field.
func (e *Engine) CheckURL(ctx context.Context, field, raw string) error {
	if err := e.dest.checkURL(ctx, raw); err != nil {
		var p problems
		p.add(field, "%v", err)
		return p.err()
	}
	return nil
}
