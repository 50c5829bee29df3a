package endpoint

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// errNotRegistered is returned by update and deregister for unknown IDs
// (answered 4.04).
var errNotRegistered = errors.New("not registered")

// register creates or replaces the registration of (org, p.Endpoint) and
// returns it with its client, once the event handler has had its event.
func (s *Server) register(ctx context.Context, org string, p regParams, pr peer) (*client, lwm2m.Registration, error) {
	key := endpointKey(org, p.Endpoint)
	for {
		s.mu.Lock()
		c := s.byEndpoint[key]
		created := c == nil
		if created {
			// A new endpoint: nothing stored to load, so observations are
			// known (none) from the start.
			c = &client{id: newID(), org: org, endpoint: p.Endpoint, obsLoaded: true, orgTraffic: s.orgCounters(org)}
			s.byEndpoint[key] = c
			s.byID[c.id] = c
		}
		s.mu.Unlock()

		c.mu.Lock()
		if c.removed {
			// Deregistered or expired between the map lookup and the lock.
			c.mu.Unlock()
			continue
		}
		reg, pe, err := s.registerLocked(ctx, c, created, p, pr)
		c.mu.Unlock()
		s.deliver(pe)
		return c, reg, err
	}
}

func (s *Server) registerLocked(ctx context.Context, c *client, created bool, p regParams, pr peer) (lwm2m.Registration, pendingEvent, error) {
	now := time.Now()
	addr := pr.addr.String()
	reg := lwm2m.Registration{
		ID:             c.id,
		Organisation:   c.org,
		Endpoint:       c.endpoint,
		Lifetime:       p.Lifetime,
		Version:        p.Version,
		Binding:        p.Binding,
		QueueMode:      p.Queue,
		SMS:            p.SMS,
		RootPath:       p.Links.RootPath,
		ContentFormats: p.Links.ContentFormats,
		Objects:        p.Links.Objects,
		Address:        addr,
		Transport:      pr.t.name,
		RegisteredAt:   now,
		LastUpdate:     now,
		ExpiresAt:      now.Add(time.Duration(p.Lifetime) * time.Second),
	}
	if err := s.store.PutRegistration(ctx, reg); err != nil {
		if created {
			c.removed = true
			s.mu.Lock()
			s.unindexLocked(c, nil)
			s.mu.Unlock()
		}
		return reg, pendingEvent{}, fmt.Errorf("store registration: %w", err)
	}
	old := c.state.Load()
	c.state.Store(&clientState{reg: reg, peer: pr})
	s.mu.Lock()
	if old != nil {
		s.unindexAddrLocked(c, old)
	}
	s.byAddr[addrStrKey(pr.t, addr)] = c
	s.mu.Unlock()

	if !created {
		// A Register from a known endpoint means the device started
		// afresh and forgot its observations.
		s.dropObservationsLocked(ctx, c)
	}
	return reg, s.queue(c, Event{Type: EventRegistered, Registration: reg, Time: now}), nil
}

// update applies an Update request from transport pr.t and returns the
// registration once the event handler has had its event.
func (s *Server) update(ctx context.Context, org, id string, p regParams, pr peer) (lwm2m.Registration, error) {
	c := s.lookup(id)
	if c == nil {
		return lwm2m.Registration{}, errNotRegistered
	}
	c.mu.Lock()
	reg, pe, err := s.updateLocked(ctx, c, org, p, pr)
	c.mu.Unlock()
	s.deliver(pe)
	return reg, err
}

func (s *Server) updateLocked(ctx context.Context, c *client, org string, p regParams, pr peer) (lwm2m.Registration, pendingEvent, error) {
	old := c.state.Load()
	// A registration belongs to the security context it was made in: an
	// Update over another transport or from another organisation is
	// treated as unknown rather than revealing the ID exists.
	if c.removed || old == nil || old.reg.Transport != pr.t.name || c.org != org {
		return lwm2m.Registration{}, pendingEvent{}, errNotRegistered
	}
	now := time.Now()
	reg := old.reg
	if p.HasLifetime {
		reg.Lifetime = p.Lifetime
	}
	if p.HasBinding {
		reg.Binding = p.Binding
		if reg.Version == "1.0" {
			reg.QueueMode = strings.IndexByte(p.Binding, 'Q') >= 0
		}
	}
	if p.Queue {
		reg.QueueMode = true
	}
	if p.HasSMS {
		reg.SMS = p.SMS
	}
	if p.Links != nil {
		reg.Objects = p.Links.Objects
		if p.Links.HasRoot {
			reg.RootPath = p.Links.RootPath
			reg.ContentFormats = p.Links.ContentFormats
		}
	}
	reg.Address = pr.addr.String()
	reg.LastUpdate = now
	reg.ExpiresAt = now.Add(time.Duration(reg.Lifetime) * time.Second)
	if err := s.store.PutRegistration(ctx, reg); err != nil {
		return reg, pendingEvent{}, fmt.Errorf("store registration: %w", err)
	}
	c.state.Store(&clientState{reg: reg, peer: pr})
	if old.peer.addr == nil || !old.peer.addr.IP.Equal(pr.addr.IP) || old.peer.addr.Port != pr.addr.Port {
		s.mu.Lock()
		s.unindexAddrLocked(c, old)
		s.byAddr[addrStrKey(pr.t, reg.Address)] = c
		s.mu.Unlock()
	}
	return reg, s.queue(c, Event{Type: EventUpdated, Registration: reg, Time: now}), nil
}

// deregister handles a De-register request; it returns once the event
// handler has had its event.
func (s *Server) deregister(ctx context.Context, org, id string, t *transport) (lwm2m.Registration, error) {
	c := s.lookup(id)
	if c == nil {
		return lwm2m.Registration{}, errNotRegistered
	}
	c.mu.Lock()
	st := c.state.Load()
	if c.removed || st == nil || st.reg.Transport != t.name || c.org != org {
		c.mu.Unlock()
		return lwm2m.Registration{}, errNotRegistered
	}
	pe, err := s.removeLocked(ctx, c, st, EventDeregistered, time.Now())
	c.mu.Unlock()
	s.deliver(pe)
	return st.reg, err
}

// Forget drops a registration without telling anyone (no event): an
// administrator removed the client, and the device must register again —
// its next Update gets 4.04, which makes LwM2M clients register.
func (s *Server) Forget(ctx context.Context, clientID string) error {
	c := s.lookup(clientID)
	if c == nil {
		return fmt.Errorf("endpoint: forget %s: %w", clientID, lwm2m.ErrClientNotFound)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state.Load()
	if c.removed || st == nil {
		return fmt.Errorf("endpoint: forget %s: %w", clientID, lwm2m.ErrClientNotFound)
	}
	// No event, so nothing to deliver.
	if _, err := s.removeLocked(ctx, c, st, 0, time.Now()); err != nil {
		return fmt.Errorf("endpoint: forget %s: %w", clientID, err)
	}
	return nil
}

// removeLocked deletes c's registration and observations and queues ev
// (none when ev is 0) for the caller to deliver. c.mu is held.
func (s *Server) removeLocked(ctx context.Context, c *client, st *clientState, ev EventType, now time.Time) (pendingEvent, error) {
	if err := s.store.DeleteRegistration(ctx, c.id); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return pendingEvent{}, fmt.Errorf("delete registration: %w", err)
	}
	c.removed = true
	s.dropObservationsLocked(ctx, c)
	s.mu.Lock()
	s.unindexLocked(c, st)
	s.mu.Unlock()
	if ev == 0 {
		return pendingEvent{}, nil
	}
	return s.queue(c, Event{Type: ev, Registration: st.reg, Time: now}), nil
}

// unindexLocked removes c from the maps (s.mu held).
func (s *Server) unindexLocked(c *client, st *clientState) {
	if s.byID[c.id] == c {
		delete(s.byID, c.id)
	}
	key := endpointKey(c.org, c.endpoint)
	if s.byEndpoint[key] == c {
		delete(s.byEndpoint, key)
	}
	if st != nil {
		s.unindexAddrLocked(c, st)
	}
}

func (s *Server) unindexAddrLocked(c *client, st *clientState) {
	if st.peer.t == nil || st.peer.addr == nil {
		return
	}
	k := addrKey(st.peer.t, st.peer.addr)
	if s.byAddr[k] == c {
		delete(s.byAddr, k)
	}
}

// loadObservationsLocked fills c.obs from the store once (clients loaded
// at Start). c.mu is held.
func (s *Server) loadObservationsLocked(ctx context.Context, c *client) error {
	if c.obsLoaded {
		return nil
	}
	stored, err := s.store.ListObservations(ctx, c.id)
	if err != nil {
		return fmt.Errorf("load observations: %w", err)
	}
	if c.obs == nil {
		c.obs = make(map[lwm2m.Path]*observation, len(stored))
	}
	s.mu.Lock()
	for _, so := range stored {
		p, err := lwm2m.ParsePath(so.Path)
		if err != nil || len(so.Token) == 0 {
			continue
		}
		if _, ok := c.obs[p]; ok {
			continue
		}
		o := newObservation(c, p, string(so.Token))
		o.settle(false)
		c.obs[p] = o
		s.tokens[o.token] = o
	}
	s.mu.Unlock()
	c.obsLoaded = true
	s.unloaded.Add(-1)
	return nil
}

// dropObservationsLocked forgets every observation of c, in memory and in
// the store. c.mu is held. Store errors are logged: a stale stored token
// only means a notification nobody routes.
func (s *Server) dropObservationsLocked(ctx context.Context, c *client) {
	if err := s.loadObservationsLocked(ctx, c); err != nil {
		s.log.Warn("drop observations", "client", c.id, "err", err)
	}
	if len(c.obs) == 0 {
		return
	}
	s.mu.Lock()
	for _, o := range c.obs {
		if s.tokens[o.token] == o {
			delete(s.tokens, o.token)
		}
	}
	s.mu.Unlock()
	for p := range c.obs {
		if err := s.store.DeleteObservation(ctx, c.id, p.String()); err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.log.Warn("delete observation", "client", c.id, "path", p.String(), "err", err)
		}
	}
	clear(c.obs)
}
