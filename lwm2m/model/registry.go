package model

import (
	"cmp"
	"slices"
	"sync"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// Registry holds the built-in object definitions and each organisation's
// own definitions, which shadow built-ins of the same ID for that
// organisation only. It is safe for concurrent use. Objects it returns are
// shared and must not be modified.
type Registry struct {
	mu       sync.RWMutex
	builtins map[uint16]*Object
	orgs     map[string]map[uint16]*Object
}

// NewRegistry returns a registry with the given built-ins; of two built-ins
// with the same ID the later wins.
func NewRegistry(builtins []*Object) *Registry {
	r := &Registry{
		builtins: make(map[uint16]*Object, len(builtins)),
		orgs:     make(map[string]map[uint16]*Object),
	}
	for _, o := range builtins {
		if o != nil {
			r.builtins[o.ID] = o.clone()
		}
	}
	return r
}

// Lookup returns org's own definition of object id, else the built-in one.
func (r *Registry) Lookup(org string, id uint16) (*Object, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if o, ok := r.orgs[org][id]; ok {
		return o, true
	}
	o, ok := r.builtins[id]
	return o, ok
}

// List returns the definitions org sees (its own plus the built-ins it does
// not override), sorted by object ID.
func (r *Registry) List(org string) []*Object {
	r.mu.RLock()
	own := r.orgs[org]
	list := make([]*Object, 0, len(r.builtins)+len(own))
	for _, o := range own {
		list = append(list, o)
	}
	for id, o := range r.builtins {
		if _, shadowed := own[id]; !shadowed {
			list = append(list, o)
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(list, func(a, b *Object) int { return cmp.Compare(a.ID, b.ID) })
	return list
}

// Put stores o as org's own definition of object o.ID, replacing any
// previous one. The registry keeps a copy, so o may be reused afterwards.
func (r *Registry) Put(org string, o *Object) {
	if o == nil {
		return
	}
	c := o.clone()
	r.mu.Lock()
	defer r.mu.Unlock()
	own := r.orgs[org]
	if own == nil {
		own = make(map[uint16]*Object)
		r.orgs[org] = own
	}
	own[c.ID] = c
}

// Delete removes org's own definition of object id, so that the built-in (if
// any) applies again. It reports false when org had no definition of id;
// built-ins themselves cannot be deleted.
func (r *Registry) Delete(org string, id uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	own := r.orgs[org]
	if _, ok := own[id]; !ok {
		return false
	}
	delete(own, id)
	// Drop empty maps so that organisations that come and go do not leak.
	if len(own) == 0 {
		delete(r.orgs, org)
	}
	return true
}

// IsBuiltin reports whether object id has a built-in definition.
func (r *Registry) IsBuiltin(id uint16) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.builtins[id]
	return ok
}

// Custom reports whether org has its own definition of object id.
func (r *Registry) Custom(org string, id uint16) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.orgs[org][id]
	return ok
}

// Resolver returns a resolver typing resources by org's view of the
// registry. It consults the registry on every call, so later Put and Delete
// calls take effect at once.
func (r *Registry) Resolver(org string) lwm2m.Resolver {
	return lwm2m.ResolverFunc(func(object, resource uint16) (lwm2m.DataType, bool, bool) {
		o, ok := r.Lookup(org, object)
		if !ok {
			return lwm2m.TypeNone, false, false
		}
		res, ok := o.Resource(resource)
		if !ok {
			return lwm2m.TypeNone, false, false
		}
		return res.Type, res.Multiple, true
	})
}
