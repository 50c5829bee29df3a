package subscriptions

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/storage"
)

func TestPolicy0RetriesThenDrops(t *testing.T) {
	env := newEnv(t, Config{RetryMax: 2})
	// The first three requests (one notification and its two retries) fail.
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s := env.create(storage.Subscription{ClientID: "c1", Type: TypeClientUpdated, URL: rc.URL})
	reg := env.register("c1", "org1", "ep1")
	env.eng.ClientUpdated(context.Background(), reg)
	var ids []string
	for range 3 {
		r := next(t, rc.all, "attempt")
		if r.status != http.StatusInternalServerError {
			t.Fatalf("attempt answered %d", r.status)
		}
		ids = append(ids, r.header.Get(HeaderDeliveryID))
	}
	if ids[0] == "" || ids[1] != ids[0] || ids[2] != ids[0] {
		t.Fatalf("delivery IDs across retries %q, want one stable ID", ids)
	}
	if env.outcome(s.ID) {
		t.Fatal("notification reported delivered")
	}
	st, pending := env.stats(s.ID)
	if st.Dropped != 1 || st.Delivered != 0 || pending != 0 || !strings.Contains(st.LastError, "500") {
		t.Fatalf("stats %+v pending %d, want one dropped with a 500 error", st, pending)
	}

	// The subscription goes on with the next notification, with a new ID.
	env.clock.Advance(time.Second)
	env.eng.ClientUpdated(context.Background(), reg)
	r := next(t, rc.accepted, "next notification")
	if r.header.Get(HeaderDeliveryID) == ids[0] {
		t.Fatal("a new notification reused the delivery ID")
	}
	if !env.outcome(s.ID) {
		t.Fatal("second notification not delivered")
	}
	if st, _ := env.stats(s.ID); st.Dropped != 1 || st.Delivered != 1 || !st.LastSuccess.Equal(t0.Add(time.Second)) {
		t.Fatalf("stats %+v", st)
	}
}

func TestPolicy1RetriesUntilDelivered(t *testing.T) {
	env := newEnv(t, Config{Render: testRender, RetryMax: 1})
	ctx := context.Background()
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	const failures = 6 // far more than RetryMax: DeletionPolicy 1 never gives up
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			<-gate
		}
		if n <= failures {
			return []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusBadRequest}[n%3]
		}
		return http.StatusOK
	})
	t.Cleanup(release)
	reg := env.register("c1", "org1", "ep1")
	env.dev.values[tempKey] = temperature(20)
	s := env.create(storage.Subscription{ClientID: "c1", Type: TypeObservation, URL: rc.URL, Path: "/3303/0/5700", DeletionPolicy: 1})
	values := []float64{21, 22, 23, 24, 25}
	for _, v := range values {
		env.clock.Advance(time.Second)
		env.eng.Notify(ctx, reg, tempPath, temperature(v), env.clock.Now())
	}
	// Durable before Notify returned, while the first is still in flight.
	next(t, rc.arrived, "first attempt")
	if n, err := env.store.PendingCount(ctx, s.ID); err != nil || n != len(values) {
		t.Fatalf("outbox holds %d (%v), want %d", n, err, len(values))
	}
	release()
	firstID := ""
	for range failures {
		r := next(t, rc.all, "failed attempt")
		if firstID == "" {
			firstID = r.header.Get(HeaderDeliveryID)
		} else if r.header.Get(HeaderDeliveryID) != firstID {
			t.Fatalf("retry changed the delivery ID")
		}
	}
	for i, want := range values {
		r := next(t, rc.accepted, "delivery")
		if got := value(t, r)["Temperature"]; got != want {
			t.Fatalf("delivery %d is %v, want %v", i, got, want)
		}
		if i == 0 && r.header.Get(HeaderDeliveryID) != firstID {
			t.Fatalf("delivered with another ID than the failed attempts")
		}
	}
	for range values {
		if !env.outcome(s.ID) {
			t.Fatal("reported dropped")
		}
	}
	st, pending := env.stats(s.ID)
	if st.Delivered != int64(len(values)) || st.Dropped != 0 || pending != 0 || st.LastError == "" {
		t.Fatalf("stats %+v pending %d", st, pending)
	}
}

func TestPolicy1SurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store1 := openStore(t, dir)
	env := newEnv(t, Config{Store: store1})
	var accept atomic.Bool
	rc := newReceiver(t, func(int, *http.Request) int {
		if accept.Load() {
			return http.StatusOK
		}
		return http.StatusBadGateway
	})
	s := env.create(storage.Subscription{Type: TypeClientUpdated, URL: rc.URL, DeletionPolicy: 1, Secret: "k"})
	reg := env.register("c1", "org1", "ep1")
	for range 3 {
		env.clock.Advance(time.Second)
		env.eng.ClientUpdated(ctx, reg)
	}
	firstID := next(t, rc.all, "failing attempt").header.Get(HeaderDeliveryID)
	if err := env.eng.Close(); err != nil {
		t.Fatal(err)
	}
	if err := store1.Close(); err != nil {
		t.Fatal(err)
	}

	accept.Store(true)
	env.store = openStore(t, dir)
	t.Cleanup(func() { env.store.Close() })
	env.start(Config{})
	if err := env.eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r := next(t, rc.accepted, "delivery after restart")
		if got, want := r.items(t)[0]["TimeTriggered"], t0.Add(time.Duration(i+1)*time.Second).Format(timeLayout); got != want {
			t.Fatalf("delivery %d TimeTriggered %v, want %s", i, got, want)
		}
		if i == 0 && r.header.Get(HeaderDeliveryID) != firstID {
			t.Fatalf("delivery ID changed across the restart")
		}
		if !verifySignature("k", r) {
			t.Fatalf("bad signature")
		}
	}
	for range 3 {
		env.outcome(s.ID)
	}
	if st, pending := env.stats(s.ID); st.Delivered != 3 || st.Dropped != 0 || pending != 0 {
		t.Fatalf("stats %+v pending %d", st, pending)
	}
}

// Beyond QueueSize, DeletionPolicy 0 notifications are dropped and counted.
func TestPolicy0QueueBound(t *testing.T) {
	env := newEnv(t, Config{QueueSize: 2})
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			<-gate
		}
		return http.StatusOK
	})
	t.Cleanup(release)
	s := env.create(storage.Subscription{Type: TypeClientUpdated, URL: rc.URL})
	reg := env.register("c1", "org1", "ep1")
	env.eng.ClientUpdated(context.Background(), reg)
	next(t, rc.arrived, "first request")
	for range 3 {
		env.eng.ClientUpdated(context.Background(), reg)
	}
	if env.outcome(s.ID) {
		t.Fatal("overflow reported delivered")
	}
	if st, pending := env.stats(s.ID); st.Dropped != 1 || pending != 2 || st.LastError != "delivery queue full" {
		t.Fatalf("stats %+v pending %d", st, pending)
	}
	release()
	for range 3 {
		next(t, rc.accepted, "delivery")
		if !env.outcome(s.ID) {
			t.Fatal("dropped")
		}
	}
}

// A changed URL takes effect for a notification being retried.
func TestUpdateURLDuringRetries(t *testing.T) {
	env := newEnv(t, Config{})
	ctx := context.Background()
	failing := newReceiver(t, func(int, *http.Request) int { return http.StatusInternalServerError })
	working := newReceiver(t, nil)
	s := env.create(storage.Subscription{Type: TypeClientConnected, URL: failing.URL, DeletionPolicy: 1})
	env.eng.ClientRegistered(ctx, env.register("c1", "org1", "ep1"))
	id := next(t, failing.all, "failing attempt").header.Get(HeaderDeliveryID)
	url := working.URL + "/new"
	if _, err := env.eng.Update(ctx, s.ID, Patch{URL: &url}); err != nil {
		t.Fatal(err)
	}
	r := next(t, working.accepted, "delivery to the new URL")
	if r.path != "/new" || r.header.Get(HeaderDeliveryID) != id {
		t.Fatalf("delivered to %s with ID %q, want /new with %q", r.path, r.header.Get(HeaderDeliveryID), id)
	}
	if !env.outcome(s.ID) {
		t.Fatal("dropped")
	}
}

// Deleting a subscription ends its retries and removes its outbox.
func TestDeleteStopsDelivery(t *testing.T) {
	env := newEnv(t, Config{})
	ctx := context.Background()
	failing := newReceiver(t, func(int, *http.Request) int { return http.StatusInternalServerError })
	s := env.create(storage.Subscription{Type: TypeClientConnected, URL: failing.URL, DeletionPolicy: 1})
	env.eng.ClientRegistered(ctx, env.register("c1", "org1", "ep1"))
	next(t, failing.all, "failing attempt")
	if err := env.eng.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := env.eng.Stats(ctx, s.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stats after delete = %v", err)
	}
	if ids, _ := env.store.SubscriptionsWithPending(ctx); len(ids) != 0 {
		t.Fatalf("outbox still holds %v", ids)
	}
	env.eng.mu.Lock()
	w := env.eng.workers[s.ID]
	env.eng.mu.Unlock()
	if w != nil {
		t.Fatal("worker still registered")
	}
}

// An outbox entry that can never be sent is dropped and counted instead of
// blocking the subscription.
func TestPolicy1UndeliverableEntryDropped(t *testing.T) {
	env := newEnv(t, Config{})
	ctx := context.Background()
	rc := newReceiver(t, nil)
	s := env.create(storage.Subscription{Type: TypeClientConnected, URL: rc.URL, DeletionPolicy: 1, AcceptContentType: "application/xml"})
	bad := []storage.Notification{{SubscriptionID: s.ID, DeliveryID: "bad", Body: []byte(`{"broken`), CreatedAt: t0}}
	if err := env.store.Enqueue(ctx, bad); err != nil {
		t.Fatal(err)
	}
	env.eng.ClientRegistered(ctx, env.register("c1", "org1", "ep1"))
	if env.outcome(s.ID) {
		t.Fatal("broken entry reported delivered")
	}
	if r := next(t, rc.accepted, "delivery"); r.header.Get(HeaderDeliveryID) == "bad" {
		t.Fatal("broken entry sent")
	}
	if !env.outcome(s.ID) {
		t.Fatal("good entry dropped")
	}
	if st, pending := env.stats(s.ID); st.Dropped != 1 || st.Delivered != 1 || pending != 0 {
		t.Fatalf("stats %+v pending %d", st, pending)
	}
}
