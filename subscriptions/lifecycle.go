package subscriptions

import (
	"context"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// lifecycleTypes are the lifecycle subscription types, in index order.
var lifecycleTypes = []string{TypeClientConnected, TypeClientUpdated, TypeClientDisconnected, TypeClientConnectionExpired}

// ClientRegistered notifies ClientConnected subscribers and, in the
// background, reads the device's identity (object 3), notifies the
// subscribers whose criteria needed it, applies the matching Observation
// pre-subscriptions and re-establishes the client's observations.
func (e *Engine) ClientRegistered(ctx context.Context, reg lwm2m.Registration) {
	deferred := e.lifecycle(ctx, reg, TypeClientConnected)
	e.lost(reg, true)
	e.follow(reg, true, deferred, TypeClientConnected)
}

// ClientUpdated notifies ClientUpdated subscribers and, in the background,
// looks at the firmware version again when a subscription selects by it,
// re-applies the pre-subscriptions and establishes the client's
// observations that are not yet on the device.
func (e *Engine) ClientUpdated(ctx context.Context, reg lwm2m.Registration) {
	deferred := e.lifecycle(ctx, reg, TypeClientUpdated)
	e.follow(reg, false, deferred, TypeClientUpdated)
}

// ClientDeregistered notifies ClientDisconnected subscribers.
func (e *Engine) ClientDeregistered(ctx context.Context, reg lwm2m.Registration) {
	e.lost(reg, false)
	e.lifecycle(ctx, reg, TypeClientDisconnected)
}

// ClientExpired notifies ClientConnectionExpired subscribers.
func (e *Engine) ClientExpired(ctx context.Context, reg lwm2m.Registration) {
	e.lost(reg, false)
	e.lifecycle(ctx, reg, TypeClientConnectionExpired)
}

// lifecycle queues a notification of typ for the organisation-level
// subscriptions of the client's organisation that match it and the
// client's own, and returns, undelivered, those whose criteria depend on
// the device's identity not read yet. It finds them in the index: an event
// nobody subscribed to touches neither the store nor the engine's lock, and
// one that matches writes to the store only to make DeletionPolicy 1
// notifications durable.
func (e *Engine) lifecycle(ctx context.Context, reg lwm2m.Registration, typ string) (deferred []delivery) {
	orgLevel, clientLevel := e.index.match(reg.Organisation, reg.ID, typ)
	if len(orgLevel) == 0 && len(clientLevel) == 0 {
		return nil
	}
	if !e.enter() {
		return nil
	}
	defer e.wg.Done()
	at := e.now()
	var ds []delivery
	add := func(s storage.Subscription) {
		switch e.match(s, reg) {
		case matches:
			if d, ok := e.lifecycleDelivery(s, reg, typ, at); ok {
				ds = append(ds, d)
			}
		case needsInfo:
			deferred = append(deferred, delivery{sub: s, at: at})
		}
	}
	for _, s := range orgLevel {
		add(s)
	}
	for _, s := range clientLevel {
		add(s)
	}
	e.dispatch(ctx, ds)
	return deferred
}

func (e *Engine) lifecycleDelivery(s storage.Subscription, reg lwm2m.Registration, typ string, at time.Time) (delivery, bool) {
	body, err := lifecycleItem(s, reg, typ, at)
	if err != nil {
		e.log.Error("subscriptions: encoding a notification", "subscription", s.ID, "error", err)
		return delivery{}, false
	}
	return delivery{sub: s, body: body}, true
}
