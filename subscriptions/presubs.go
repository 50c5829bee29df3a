package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// Pre-subscriptions are organisation-level subscriptions that select
// clients: by Criteria, or every client of the organisation without them.
// Lifecycle ones are matched against the client at each event (see
// lifecycle). Observation ones are applied to each matching client: they
// join the client's device observation of their path like a client-level
// subscription, with their own filter state per client.

// preIndex holds the organisation-level Observation subscriptions by
// organisation, written through like lifecycleIndex (under Engine.subMu).
type preIndex struct {
	mu    sync.RWMutex
	byOrg map[string][]storage.Subscription
}

func newPreIndex() *preIndex { return &preIndex{byOrg: make(map[string][]storage.Subscription)} }

func (x *preIndex) put(s storage.Subscription) {
	x.mu.Lock()
	defer x.mu.Unlock()
	cur := x.byOrg[s.OrganisationID]
	next := make([]storage.Subscription, 0, len(cur)+1)
	replaced := false
	for _, c := range cur {
		if c.ID == s.ID {
			c, replaced = s, true
		}
		next = append(next, c)
	}
	if !replaced {
		next = append(next, s)
	}
	x.byOrg[s.OrganisationID] = next
}

func (x *preIndex) remove(org, id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	next := slices.DeleteFunc(slices.Clone(x.byOrg[org]), func(c storage.Subscription) bool { return c.ID == id })
	if len(next) == 0 {
		delete(x.byOrg, org)
		return
	}
	x.byOrg[org] = next
}

// list returns org's pre-subscriptions; the caller must not modify them.
func (x *preIndex) list(org string) []storage.Subscription {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byOrg[org]
}

func (x *preIndex) orgs() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]string, 0, len(x.byOrg))
	for org := range x.byOrg {
		out = append(out, org)
	}
	return out
}

// matchResult says whether a subscription applies to a client.
type matchResult int

const (
	noMatch   matchResult = iota
	matches               // applies
	needsInfo             // depends on object 3, which has not been read
)

// match decides whether s applies to the client of reg.
func (e *Engine) match(s storage.Subscription, reg lwm2m.Registration) matchResult {
	if s.OrganisationID != reg.Organisation {
		return noMatch
	}
	if s.ClientID != "" {
		if s.ClientID == reg.ID {
			return matches
		}
		return noMatch
	}
	c := s.Criteria
	if c == nil {
		return matches
	}
	if c.Group != "" && !e.groups.in(reg.Organisation, reg.Endpoint, c.Group) {
		return noMatch
	}
	if len(c.Endpoints) > 0 && !slices.Contains(c.Endpoints, reg.Endpoint) {
		// An endpoint list also names devices by serial number.
		switch {
		case reg.Device != nil:
			if reg.Device.SerialNumber == "" || !slices.Contains(c.Endpoints, reg.Device.SerialNumber) {
				return noMatch
			}
		case e.skipInfo:
			return noMatch
		default:
			return needsInfo
		}
	}
	if c.Make == "" {
		return matches
	}
	if reg.Device == nil {
		if e.skipInfo {
			return noMatch
		}
		return needsInfo
	}
	d := reg.Device
	if d.Manufacturer != c.Make || (c.Model != "" && d.ModelNumber != c.Model) ||
		(c.FirmwareVersion != "" && d.FirmwareVersion != c.FirmwareVersion) {
		return noMatch
	}
	return matches
}

// usesFirmware reports whether a subscription of org selects clients by
// firmware version, so that an Update must look at the firmware again.
func (e *Engine) usesFirmware(org string) bool {
	for _, s := range e.pre.list(org) {
		if s.Criteria != nil && s.Criteria.FirmwareVersion != "" {
			return true
		}
	}
	for _, typ := range lifecycleTypes {
		orgLevel, _ := e.index.match(org, "", typ)
		for _, s := range orgLevel {
			if s.Criteria != nil && s.Criteria.FirmwareVersion != "" {
				return true
			}
		}
	}
	return false
}

// Object 3 resources the server reads after a registration.
var (
	devicePath   = lwm2m.InstancePath(3, 0)
	firmwarePath = lwm2m.ResourcePath(3, 0, 3)
)

// deviceInfo picks the identity resources out of a Read of /3/0 (or of
// /3/0/3 alone, on top of old).
func deviceInfo(old lwm2m.DeviceInfo, recs []lwm2m.Record) lwm2m.DeviceInfo {
	info := old
	for _, r := range recs {
		if r.Path.Depth != lwm2m.DepthResource || r.Path.Object != 3 || r.Path.Instance != 0 {
			continue
		}
		v := text(r.Value)
		switch r.Path.Resource {
		case 0:
			info.Manufacturer = v
		case 1:
			info.ModelNumber = v
		case 2:
			info.SerialNumber = v
		case 3:
			info.FirmwareVersion = v
		}
	}
	return info
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// follow does what a registration or update needs from the device, in the
// background so that the device is answered at once: read object 3 (after
// a registration, or when unknown) or only the firmware version (when a
// subscription selects by it), deliver the lifecycle notifications that
// waited for that, apply the Observation pre-subscriptions that match the
// client now (and remove those that stopped matching), and establish the
// client's device observations.
func (e *Engine) follow(reg lwm2m.Registration, registered bool, deferred []delivery, typ string) {
	readAll := !e.skipInfo && (registered || reg.Device == nil)
	readFirmware := !readAll && !e.skipInfo && e.usesFirmware(reg.Organisation)
	pre := len(e.pre.list(reg.Organisation)) > 0
	if !readAll && !readFirmware && !pre && len(deferred) == 0 && !e.needsEstablish(reg.ID) {
		return
	}
	e.inBackground(func(ctx context.Context) {
		switch {
		case readAll:
			reg = e.readInfo(ctx, reg, devicePath)
		case readFirmware:
			reg = e.readInfo(ctx, reg, firmwarePath)
		}
		if len(deferred) > 0 {
			var ds []delivery
			for _, d := range deferred {
				if e.match(d.sub, reg) != matches {
					continue
				}
				if d, ok := e.lifecycleDelivery(d.sub, reg, typ, d.at); ok {
					ds = append(ds, d)
				}
			}
			e.dispatch(ctx, ds)
		}
		e.reconcile(ctx, reg)
		e.establishAll(ctx, reg.ID)
	})
}

// readInfo reads p (object 3 or its firmware version) and records the
// identity on the registration. On failure the registration is returned
// unchanged: criteria that need the identity do not match.
func (e *Engine) readInfo(ctx context.Context, reg lwm2m.Registration, p lwm2m.Path) lwm2m.Registration {
	recs, err := e.dev.Read(ctx, reg.ID, p)
	if err != nil {
		e.log.Warn("subscriptions: reading device identity", "client", reg.ID, "path", p.String(), "error", err)
		return reg
	}
	var old lwm2m.DeviceInfo
	if reg.Device != nil {
		old = *reg.Device
	}
	info := deviceInfo(old, recs)
	if reg.Device != nil && info == *reg.Device {
		return reg
	}
	updated, err := e.dev.SetDeviceInfo(ctx, reg.ID, info)
	if err != nil {
		e.log.Warn("subscriptions: recording device identity", "client", reg.ID, "error", err)
		reg.Device = &info
		return reg
	}
	return updated
}

// reconcile makes the client's share of the Observation pre-subscriptions
// what their criteria say now: it attaches the matching ones it lacks and
// detaches those that no longer match. Device work is left to the caller
// (establishAll) for attachments; detachments are synced here.
func (e *Engine) reconcile(ctx context.Context, reg lwm2m.Registration) {
	subs := e.pre.list(reg.Organisation)
	cl := e.existingClient(reg.ID)
	if len(subs) == 0 && cl == nil {
		return
	}
	want := make(map[string]storage.Subscription)
	for _, s := range subs {
		if e.match(s, reg) == matches {
			want[s.ID] = s
		}
	}
	if cl == nil {
		if len(want) == 0 {
			return
		}
		cl = e.client(reg.ID)
	}
	var stale []*observation
	cl.mu.Lock()
	for _, o := range cl.obs {
		for id, st := range o.subs {
			if st.sub.ClientID != "" {
				continue
			}
			if _, ok := want[id]; ok {
				delete(want, id) // already attached
				continue
			}
			st.stopTimer()
			delete(o.subs, id)
			o.pins++
			stale = append(stale, o)
		}
	}
	for _, s := range subs {
		if _, ok := want[s.ID]; !ok {
			continue
		}
		p, err := lwm2m.ParsePath(s.Path)
		if err != nil {
			continue
		}
		o := cl.observation(p)
		st := newSubState(s, p)
		if o.observed {
			st.f.baseline(o.known(p), e.now())
		}
		o.subs[s.ID] = st
	}
	cl.mu.Unlock()
	for _, o := range stale {
		e.sync(ctx, cl, o)
		e.unpin(cl, o)
	}
}

// needsEstablish reports whether the client has subscriptions whose device
// observation is not in place.
func (e *Engine) needsEstablish(clientID string) bool {
	cl := e.existingClient(clientID)
	if cl == nil {
		return false
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, o := range cl.obs {
		if len(o.subs) > 0 && !o.observed {
			return true
		}
	}
	return false
}

// establishAll syncs every observation of the client with the device.
func (e *Engine) establishAll(ctx context.Context, clientID string) {
	cl := e.existingClient(clientID)
	if cl == nil {
		return
	}
	cl.mu.Lock()
	var todo []*observation
	for _, o := range cl.obs {
		if len(o.subs) > 0 && !o.observed {
			o.pins++
			todo = append(todo, o)
		}
	}
	cl.mu.Unlock()
	for _, o := range todo {
		e.sync(ctx, cl, o)
		e.unpin(cl, o)
	}
}

// sync brings the device in line with the subscriptions on o: attributes
// written, observed while any subscription needs it, cancelled when none
// does. Device errors are logged: the subscriptions stay, and the next
// registration or update tries again.
func (e *Engine) sync(ctx context.Context, cl *clientState, o *observation) {
	o.op.Lock()
	defer o.op.Unlock()
	cl.mu.Lock()
	attrs := o.attributes("")
	observed, written := o.observed, o.written
	if len(attrs) == 0 {
		o.observed = false
		clear(o.last)
	}
	cl.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if len(attrs) == 0 {
		if observed {
			e.cancelObserve(ctx, cl.id, o.path)
		}
		return
	}
	// A device that refuses the attributes is still observed: the server
	// filters on its own.
	if err := e.writeAttributes(ctx, cl, o, combine(attrs), written); err != nil {
		e.log.Warn("subscriptions: writing attributes", "client", cl.id, "path", o.path.String(), "error", err)
	}
	if observed {
		return
	}
	recs, err := e.dev.Observe(ctx, cl.id, o.path)
	if err != nil {
		e.log.Warn("subscriptions: observing", "client", cl.id, "path", o.path.String(), "error", err)
		return
	}
	now := e.now()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	o.observed = true
	in := under(recs, o.path)
	o.remember(in)
	var ds []delivery
	for _, st := range o.subs {
		if st.f.lastAt.IsZero() {
			st.f.baseline(under(in, st.path), now)
			continue
		}
		ds = append(ds, e.evaluate(cl, o, st, in, now, now)...)
	}
	e.dispatch(ctx, ds)
}

// createPre stores an organisation-level Observation subscription and,
// unless later, applies it in the background to the organisation's online
// clients that match.
func (e *Engine) createPre(ctx context.Context, s storage.Subscription, later bool) error {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	if err := e.store.CreateSubscription(ctx, s); err != nil {
		return err
	}
	e.pre.put(s)
	e.subs.put(s)
	if !later {
		e.applyOnline(s.OrganisationID, func(reg lwm2m.Registration) bool { return e.match(s, reg) != noMatch })
	}
	return nil
}

// applyOnline reconciles, in the background, the online clients of org
// for which pick is true.
func (e *Engine) applyOnline(org string, pick func(lwm2m.Registration) bool) {
	e.inBackground(func(ctx context.Context) {
		online := true
		for offset := 0; ctx.Err() == nil; offset += preloadPage {
			regs, _, err := e.store.ListRegistrations(ctx, storage.RegistrationFilter{Organisation: org, Online: &online, Now: e.now()}, offset, preloadPage)
			if err != nil {
				e.log.Error("subscriptions: listing clients for a pre-subscription", "organisation", org, "error", err)
				return
			}
			for _, reg := range regs {
				if pick(reg) {
					e.apply(ctx, reg)
				}
			}
			if len(regs) < preloadPage {
				return
			}
		}
	})
}

// apply brings one online client in line with the pre-subscriptions,
// reading its identity first when a criterion needs it.
func (e *Engine) apply(ctx context.Context, reg lwm2m.Registration) {
	if reg.Device == nil && !e.skipInfo {
		reg = e.readInfo(ctx, reg, devicePath)
	}
	e.reconcile(ctx, reg)
	e.establishAll(ctx, reg.ID)
}

// preloadPage is the page size when walking an organisation's clients.
const preloadPage = 500

// membersChanged re-applies the Observation pre-subscriptions that select
// by group to the online clients among endpoints. Called with groupMu held.
func (e *Engine) membersChanged(org string, endpoints []string) {
	byGroup := false
	for _, s := range e.pre.list(org) {
		if s.Criteria != nil && s.Criteria.Group != "" {
			byGroup = true
		}
	}
	if !byGroup || len(endpoints) == 0 {
		return
	}
	endpoints = slices.Clone(endpoints)
	e.inBackground(func(ctx context.Context) {
		done := make(map[string]bool)
		for _, ep := range endpoints {
			if done[ep] || ctx.Err() != nil {
				continue
			}
			done[ep] = true
			reg, err := e.store.GetRegistrationByEndpoint(ctx, org, ep)
			if errors.Is(err, storage.ErrNotFound) || (err == nil && reg.Expired(e.now())) {
				continue
			}
			if err != nil {
				e.log.Error("subscriptions: applying group change", "endpoint", ep, "error", err)
				continue
			}
			e.apply(ctx, reg)
		}
	})
}

// updatePre applies a change of an organisation-level Observation
// subscription to every client it is attached to.
func (e *Engine) updatePre(ctx context.Context, s storage.Subscription, attrsChanged bool) error {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	if err := e.store.UpdateSubscription(ctx, s); err != nil {
		return err
	}
	e.pre.put(s)
	e.subs.put(s)
	e.eachAttached(s.ID, func(cl *clientState, o *observation, st *subState) {
		st.sub = s
		st.f.attrs = s.Attributes
	}, attrsChanged)
	return nil
}

// deletePre deletes an organisation-level Observation subscription and
// detaches it from every client.
func (e *Engine) deletePre(ctx context.Context, s storage.Subscription) error {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	if err := e.store.DeleteSubscription(ctx, s.ID); err != nil {
		return err
	}
	e.pre.remove(s.OrganisationID, s.ID)
	e.subs.remove(s.ID)
	e.eachAttached(s.ID, func(cl *clientState, o *observation, st *subState) {
		st.stopTimer()
		delete(o.subs, s.ID)
	}, true)
	return nil
}

// eachAttached calls f (under the client's lock) for every client the
// subscription is attached to and then, with resync, syncs those
// observations with the devices in the background.
func (e *Engine) eachAttached(id string, f func(*clientState, *observation, *subState), resync bool) {
	e.mu.Lock()
	clients := make([]*clientState, 0, len(e.clients))
	for _, cl := range e.clients {
		clients = append(clients, cl)
	}
	e.mu.Unlock()
	type pinned struct {
		cl *clientState
		o  *observation
	}
	var todo []pinned
	for _, cl := range clients {
		cl.mu.Lock()
		for _, o := range cl.obs {
			if st := o.subs[id]; st != nil {
				f(cl, o, st)
				if resync {
					o.pins++
					todo = append(todo, pinned{cl, o})
				}
			}
		}
		cl.mu.Unlock()
	}
	if len(todo) == 0 {
		return
	}
	started := e.inBackground(func(ctx context.Context) {
		for _, p := range todo {
			e.sync(ctx, p.cl, p.o)
			e.unpin(p.cl, p.o)
		}
	})
	if !started {
		for _, p := range todo {
			e.unpin(p.cl, p.o)
		}
	}
}
