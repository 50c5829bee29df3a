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
// subscriptions of the client's organisation and the client's own.
func (e *Engine) lifecycle(ctx context.Context, reg lwm2m.Registration, typ string) {
	if !e.enter() {
		return
	}
	defer e.wg.Done()
	var subs []storage.Subscription
	for _, client := range []string{"-", reg.ID} {
		s, err := e.store.ListSubscriptions(ctx, storage.SubscriptionFilter{OrganisationID: reg.Organisation, ClientID: client, Type: typ})
		if err != nil {
			e.log.Error("subscriptions: listing subscriptions", "event", typ, "client", reg.ID, "error", err)
			continue
		}
		subs = append(subs, s...)
	}
	at := e.now()
	var ds []delivery
	for _, s := range subs {
		if !appliesTo(s, reg) {
			continue
		}
		body, err := lifecycleItem(s, reg, typ, at)
		if err != nil {
			e.log.Error("subscriptions: encoding a notification", "subscription", s.ID, "error", err)
			continue
		}
		ds = append(ds, delivery{sub: s, body: body})
	}
	e.dispatch(ctx, ds)
}

// appliesTo reports whether an organisation-level subscription covers the
// client. Criteria (pre-subscriptions) are matched here once supported.
func appliesTo(s storage.Subscription, reg lwm2m.Registration) bool {
	return s.Criteria == nil
}
