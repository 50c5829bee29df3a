package subscriptions

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// clientState holds one client's observations. Its mutex orders the
// client's notifications (filtering and hand-off to delivery happen under
// it) and is never held while waiting on the device, because the endpoint
// may deliver notifications from the goroutine that also answers requests.
type clientState struct {
	id  string
	mu  sync.Mutex
	obs map[lwm2m.Path]*observation
}

// observation is one device observation of (client, path), shared by the
// subscriptions on that path.
type observation struct {
	path lwm2m.Path
	// op serialises device operations on this path (Write-Attributes,
	// Observe, Cancel) and the subscription changes that cause them. It is
	// taken before clientState.mu, never after.
	op sync.Mutex

	// Guarded by clientState.mu:
	pins     int // operations in progress that keep the entry alive
	subs     map[string]*subState
	observed bool             // the device observes path for the current registration
	written  lwm2m.Attributes // what the device has been given for path
	last     map[lwm2m.Path]any
}

// subState is an Observation subscription's filtering state.
type subState struct {
	sub       storage.Subscription
	path      lwm2m.Path
	f         filter
	held      []lwm2m.Record // qualifying values waiting for the end of pmin
	heldAt    time.Time
	timerStop func() bool
	gen       uint64 // invalidates a timer that fires after being replaced
}

func newSubState(s storage.Subscription, p lwm2m.Path) *subState {
	return &subState{sub: s, path: p, f: filter{attrs: s.Attributes}}
}

func (st *subState) stopTimer() {
	if st.timerStop != nil {
		st.timerStop()
		st.timerStop = nil
	}
	st.gen++
}

// observation returns the entry for p, creating it. Called with cl.mu held.
func (cl *clientState) observation(p lwm2m.Path) *observation {
	o := cl.obs[p]
	if o == nil {
		o = &observation{path: p, subs: make(map[string]*subState), last: make(map[lwm2m.Path]any)}
		cl.obs[p] = o
	}
	return o
}

// attributes returns the attributes of the subscriptions except the one
// with ID except. Called with cl.mu held.
func (o *observation) attributes(except string) []lwm2m.Attributes {
	var out []lwm2m.Attributes
	for id, st := range o.subs {
		if id != except {
			out = append(out, st.f.attrs)
		}
	}
	return out
}

func (o *observation) remember(recs []lwm2m.Record) {
	for _, r := range recs {
		o.last[r.Path] = r.Value
	}
}

func (o *observation) known(p lwm2m.Path) []lwm2m.Record {
	var out []lwm2m.Record
	for rp, v := range o.last {
		if p.Contains(rp) {
			out = append(out, lwm2m.Record{Path: rp, Value: v})
		}
	}
	slices.SortFunc(out, func(a, b lwm2m.Record) int { return comparePaths(a.Path, b.Path) })
	return out
}

func (e *Engine) client(id string) *clientState {
	e.mu.Lock()
	defer e.mu.Unlock()
	cl := e.clients[id]
	if cl == nil {
		cl = &clientState{id: id, obs: make(map[lwm2m.Path]*observation)}
		e.clients[id] = cl
	}
	return cl
}

func (e *Engine) existingClient(id string) *clientState {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.clients[id]
}

// pin returns the observation of (client, p) and keeps it from being
// dropped until unpin.
func (e *Engine) pin(clientID string, p lwm2m.Path) (*clientState, *observation) {
	cl := e.client(clientID)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	o := cl.observation(p)
	o.pins++
	return cl, o
}

func (e *Engine) unpin(cl *clientState, o *observation) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	o.pins--
	// Keep an entry whose attributes are still on the device, so that a
	// later subscription on the path neutralises what it does not want.
	if o.pins == 0 && len(o.subs) == 0 && !o.observed && o.written.IsZero() {
		delete(cl.obs, o.path)
	}
}

func (e *Engine) createObservation(ctx context.Context, s storage.Subscription, p lwm2m.Path) error {
	cl, o := e.pin(s.ClientID, p)
	defer e.unpin(cl, o)
	o.op.Lock()
	defer o.op.Unlock()

	online, err := e.online(ctx, s.ClientID)
	if err != nil {
		return err
	}
	cl.mu.Lock()
	attrs := append(o.attributes(""), s.Attributes)
	observed, written := o.observed, o.written
	cl.mu.Unlock()

	var recs []lwm2m.Record
	observedNow := false
	if online {
		if err := e.writeAttributes(ctx, cl, o, combine(attrs), written); err != nil {
			return err
		}
		if !observed {
			if recs, err = e.dev.Observe(ctx, s.ClientID, p); err != nil {
				return fmt.Errorf("observe %s of %s: %w", p, s.ClientID, err)
			}
			observedNow = true
		}
	}
	if err := e.store.CreateSubscription(ctx, s); err != nil {
		if observedNow {
			cl.mu.Lock()
			others := len(o.subs)
			if others > 0 {
				o.observed = true
				o.remember(recs)
			}
			cl.mu.Unlock()
			if others == 0 {
				e.cancelObserve(ctx, s.ClientID, p)
			}
		}
		return err
	}

	e.subs.put(s)
	now := e.now()
	st := newSubState(s, p)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if observedNow {
		o.observed = true
		o.remember(recs)
		// Subscriptions made while the client was offline take this
		// first response as their baseline, like the new one.
		for _, other := range o.subs {
			if other.f.lastAt.IsZero() {
				other.f.baseline(under(recs, other.path), now)
			}
		}
	}
	if o.observed {
		st.f.baseline(o.known(p), now)
	}
	o.subs[s.ID] = st
	return nil
}

// writeAttributes brings the device's attributes for o in line with want.
// Called with o.op held and cl.mu not held.
func (e *Engine) writeAttributes(ctx context.Context, cl *clientState, o *observation, want, written lwm2m.Attributes) error {
	w, need := toDevice(want, written)
	if !need {
		return nil
	}
	if err := e.dev.WriteAttributes(ctx, cl.id, o.path, w); err != nil {
		return fmt.Errorf("write attributes %s of %s: %w", o.path, cl.id, err)
	}
	cl.mu.Lock()
	o.written = written.Overlay(w)
	cl.mu.Unlock()
	return nil
}

func (e *Engine) cancelObserve(ctx context.Context, clientID string, p lwm2m.Path) {
	if err := e.dev.CancelObserve(ctx, clientID, p); err != nil {
		e.log.Warn("subscriptions: cancel observation", "client", clientID, "path", p.String(), "error", err)
	}
}

func (e *Engine) updateObservation(ctx context.Context, s storage.Subscription, attrsChanged bool) error {
	p, _ := lwm2m.ParsePath(s.Path) // validated
	cl, o := e.pin(s.ClientID, p)
	defer e.unpin(cl, o)
	o.op.Lock()
	defer o.op.Unlock()

	if attrsChanged {
		cl.mu.Lock()
		attrs := append(o.attributes(s.ID), s.Attributes)
		observed, written := o.observed, o.written
		cl.mu.Unlock()
		if observed {
			if err := e.writeAttributes(ctx, cl, o, combine(attrs), written); err != nil {
				return err
			}
		}
	}
	if err := e.store.UpdateSubscription(ctx, s); err != nil {
		return err
	}
	e.subs.put(s)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	st := o.subs[s.ID]
	if st == nil {
		return nil
	}
	st.sub = s
	st.f.attrs = s.Attributes
	if len(st.held) > 0 {
		// Re-evaluate the held values under the new pmin.
		st.stopTimer()
		recs, at := st.held, st.heldAt
		st.held = nil
		st.f.pending = false
		e.dispatch(ctx, e.evaluate(cl, o, st, recs, at, e.now()))
	}
	return nil
}

func (e *Engine) deleteObservation(ctx context.Context, s storage.Subscription) error {
	p, err := lwm2m.ParsePath(s.Path)
	if err != nil {
		e.subs.remove(s.ID)
		return e.store.DeleteSubscription(ctx, s.ID)
	}
	cl, o := e.pin(s.ClientID, p)
	defer e.unpin(cl, o)
	o.op.Lock()
	defer o.op.Unlock()

	if err := e.store.DeleteSubscription(ctx, s.ID); err != nil {
		return err
	}
	e.subs.remove(s.ID)
	cl.mu.Lock()
	if st := o.subs[s.ID]; st != nil {
		st.stopTimer()
		delete(o.subs, s.ID)
	}
	rest := o.attributes("")
	observed, written := o.observed, o.written
	if len(rest) == 0 {
		o.observed = false
		clear(o.last)
	}
	cl.mu.Unlock()

	switch {
	case !observed:
	case len(rest) == 0:
		e.cancelObserve(ctx, s.ClientID, p)
	default:
		if err := e.writeAttributes(ctx, cl, o, combine(rest), written); err != nil {
			e.log.Warn("subscriptions: delete: rewriting attributes", "client", s.ClientID, "path", p.String(), "error", err)
		}
	}
	return nil
}

// Notify handles a notification (or Send) of recs at p from a client,
// filters it per subscription and queues the deliveries. Notifications of
// DeletionPolicy 1 subscriptions are in the store when it returns; it never
// waits on a webhook.
func (e *Engine) Notify(ctx context.Context, reg lwm2m.Registration, p lwm2m.Path, recs []lwm2m.Record, at time.Time) {
	if !e.enter() {
		return
	}
	defer e.wg.Done()
	cl := e.existingClient(reg.ID)
	if cl == nil {
		return
	}
	now := e.now()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var ds []delivery
	for _, o := range cl.obs {
		if !o.path.Contains(p) && !p.Contains(o.path) {
			continue
		}
		in := under(recs, o.path)
		if len(in) == 0 {
			continue
		}
		o.remember(in)
		for _, st := range o.subs {
			ds = append(ds, e.evaluate(cl, o, st, in, at, now)...)
		}
	}
	e.dispatch(ctx, ds)
}

// evaluate runs one subscription's filter on recs (records under the
// observation) and returns what to deliver now. Called with cl.mu held.
func (e *Engine) evaluate(cl *clientState, o *observation, st *subState, recs []lwm2m.Record, at, now time.Time) []delivery {
	mine := under(recs, st.path)
	if len(mine) == 0 {
		return nil
	}
	v, due := st.f.offer(mine, now)
	switch v {
	case deliverNow:
		if len(st.held) > 0 {
			mine = mergeRecords(st.held, mine)
		}
		st.held = nil
		st.stopTimer()
		st.f.delivered(mine, now)
		if d, ok := e.observationDelivery(cl.id, st, mine, at); ok {
			return []delivery{d}
		}
	case hold:
		st.held = mergeRecords(st.held, mine)
		st.heldAt = at
		if st.timerStop == nil {
			st.gen++
			gen := st.gen
			st.timerStop = e.afterFunc(due.Sub(now), func() { e.flush(cl, o, st, gen) })
		}
	}
	return nil
}

// flush delivers a subscription's held values when its quiet period ends.
func (e *Engine) flush(cl *clientState, o *observation, st *subState, gen uint64) {
	if !e.enter() {
		return
	}
	defer e.wg.Done()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if st.gen != gen || len(st.held) == 0 || o.subs[st.sub.ID] != st {
		return
	}
	st.timerStop = nil
	recs, at := st.held, st.heldAt
	st.held = nil
	st.f.delivered(recs, e.now())
	if d, ok := e.observationDelivery(cl.id, st, recs, at); ok {
		e.dispatch(e.root, []delivery{d})
	}
}

func (e *Engine) observationDelivery(clientID string, st *subState, recs []lwm2m.Record, at time.Time) (delivery, bool) {
	body, err := observationItem(st.sub, clientID, st.path, e.render(st.sub.OrganisationID, st.path, recs), at)
	if err != nil {
		e.log.Error("subscriptions: rendering a notification", "subscription", st.sub.ID, "error", err)
		return delivery{}, false
	}
	return delivery{sub: st.sub, body: body}, true
}

// lost marks a client's device observations as gone: with its
// registration (de-registered, expired), or, with fresh (a new
// registration), together with the attributes written to the device.
func (e *Engine) lost(reg lwm2m.Registration, fresh bool) {
	cl := e.existingClient(reg.ID)
	if cl == nil {
		return
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, o := range cl.obs {
		o.observed = false
		if fresh {
			o.written = lwm2m.Attributes{}
		}
	}
}
