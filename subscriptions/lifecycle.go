package subscriptions

import (
	"context"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// ClientRegistered notifies ClientConnected subscribers and re-establishes
// the client's observations on the device (in the background).
func (e *Engine) ClientRegistered(ctx context.Context, reg lwm2m.Registration) {
	e.lifecycle(ctx, reg, TypeClientConnected)
	e.establish(reg, true)
}

// ClientUpdated notifies ClientUpdated subscribers and establishes the
// client's observations that are not yet on the device.
func (e *Engine) ClientUpdated(ctx context.Context, reg lwm2m.Registration) {
	e.lifecycle(ctx, reg, TypeClientUpdated)
	e.establish(reg, false)
}

// ClientDeregistered notifies ClientDisconnected subscribers.
func (e *Engine) ClientDeregistered(ctx context.Context, reg lwm2m.Registration) {
	e.unobserve(reg)
	e.lifecycle(ctx, reg, TypeClientDisconnected)
}

// ClientExpired notifies ClientConnectionExpired subscribers.
func (e *Engine) ClientExpired(ctx context.Context, reg lwm2m.Registration) {
	e.unobserve(reg)
	e.lifecycle(ctx, reg, TypeClientConnectionExpired)
}

// lifecycle queues a notification of typ for the organisation-level
// subscriptions of the client's organisation and the client's own. It finds
// them in the index: an event nobody subscribed to touches neither the store
// nor the engine's lock, and one that matches writes to the store only to
// make DeletionPolicy 1 notifications durable.
func (e *Engine) lifecycle(ctx context.Context, reg lwm2m.Registration, typ string) {
	orgLevel, clientLevel := e.index.match(reg.Organisation, reg.ID, typ)
	if len(orgLevel) == 0 && len(clientLevel) == 0 {
		return
	}
	if !e.enter() {
		return
	}
	defer e.wg.Done()
	at := e.now()
	var ds []delivery
	add := func(s storage.Subscription) {
		body, err := lifecycleItem(s, reg, typ, at)
		if err != nil {
			e.log.Error("subscriptions: encoding a notification", "subscription", s.ID, "error", err)
			return
		}
		ds = append(ds, delivery{sub: s, body: body})
	}
	for _, s := range orgLevel {
		if appliesTo(s, reg) {
			add(s)
		}
	}
	for _, s := range clientLevel {
		// Client-level subscriptions are indexed by client ID alone; the
		// organisation must match as well.
		if s.OrganisationID == reg.Organisation && appliesTo(s, reg) {
			add(s)
		}
	}
	e.dispatch(ctx, ds)
}

// appliesTo reports whether an organisation-level subscription covers the
// client. Criteria (pre-subscriptions) are matched here once supported.
func appliesTo(s storage.Subscription, reg lwm2m.Registration) bool {
	return s.Criteria == nil
}
