package subscriptions

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

// countingReceiver is a webhook receiver that accepts and counts every
// request, for load where newReceiver's channels would fill up.
func countingReceiver(tb testing.TB) (string, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL, &n
}

// countingStore counts the store calls the event path could make, so that
// tests can tell what an event cost and whether it queued a durable
// notification (Enqueue happens before the event call returns).
type countingStore struct {
	storage.Store
	lists, gets, regs, enqueued, statWrites atomic.Int64
}

func (c *countingStore) ListSubscriptions(ctx context.Context, f storage.SubscriptionFilter) ([]storage.Subscription, error) {
	c.lists.Add(1)
	return c.Store.ListSubscriptions(ctx, f)
}

func (c *countingStore) GetSubscription(ctx context.Context, id string) (storage.Subscription, error) {
	c.gets.Add(1)
	return c.Store.GetSubscription(ctx, id)
}

func (c *countingStore) GetRegistration(ctx context.Context, id string) (lwm2m.Registration, error) {
	c.regs.Add(1)
	return c.Store.GetRegistration(ctx, id)
}

func (c *countingStore) AddDeliveryStats(ctx context.Context, id string, d storage.DeliveryStats) error {
	c.statWrites.Add(1)
	return c.Store.AddDeliveryStats(ctx, id, d)
}

func (c *countingStore) Enqueue(ctx context.Context, n []storage.Notification) error {
	c.enqueued.Add(int64(len(n)))
	return c.Store.Enqueue(ctx, n)
}

// reads returns and resets the read counters.
func (c *countingStore) reads() int64 {
	return c.lists.Swap(0) + c.gets.Swap(0) + c.regs.Swap(0)
}

// Subscriptions created, changed and deleted through the engine decide at
// once which events deliver, the events read nothing from the store, and a
// new engine on the same store rebuilds the index at Start.
func TestLifecycleIndexFollowsChanges(t *testing.T) {
	ctx := context.Background()
	cs := &countingStore{Store: newStore(t)}
	env := newEnv(t, Config{Store: cs})
	rc := newReceiver(t, nil)
	reg := env.register("c1", "org1", "ep1")

	// fire raises ClientRegistered and reports the durable notifications it
	// queued; it fails on any store read made by the event.
	fire := func(what string) int64 {
		t.Helper()
		cs.reads()
		cs.enqueued.Store(0)
		env.eng.ClientRegistered(ctx, reg)
		if n := cs.reads(); n != 0 {
			t.Fatalf("%s: the event made %d store reads", what, n)
		}
		return cs.enqueued.Swap(0)
	}
	if n := fire("no subscription"); n != 0 {
		t.Fatalf("no subscription: %d notifications queued", n)
	}

	s := env.create(storage.Subscription{Type: TypeClientConnected, URL: rc.URL + "/a", DeletionPolicy: 1})
	if n := fire("after create"); n != 1 {
		t.Fatalf("after create: %d notifications queued, want 1", n)
	}
	if r := next(t, rc.accepted, "notification after create"); r.path != "/a" {
		t.Fatalf("delivered to %s, want /a", r.path)
	}
	env.outcome(s.ID)

	url := rc.URL + "/b"
	if _, err := env.eng.Update(ctx, s.ID, Patch{URL: &url}); err != nil {
		t.Fatal(err)
	}
	if n := fire("after update"); n != 1 {
		t.Fatalf("after update: %d notifications queued, want 1", n)
	}
	if r := next(t, rc.accepted, "notification after update"); r.path != "/b" {
		t.Fatalf("delivered to %s, want /b", r.path)
	}
	env.outcome(s.ID)
	// The delivery took the subscription from memory as well.
	if n := cs.gets.Load(); n != 0 {
		t.Fatalf("the deliveries made %d GetSubscription calls", n)
	}

	if err := env.eng.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if n := fire("after delete"); n != 0 {
		t.Fatalf("after delete: %d notifications queued, want 0", n)
	}

	// A client-level subscription (in another organisation for the same
	// client ID it must not apply) survives a restart with an org-level one.
	org := env.create(storage.Subscription{Type: TypeClientConnected, URL: rc.URL + "/org", DeletionPolicy: 1})
	cli := env.create(storage.Subscription{ClientID: "c1", Type: TypeClientConnected, URL: rc.URL + "/client", DeletionPolicy: 1})
	env.create(storage.Subscription{OrganisationID: "org2", ClientID: "c1", Type: TypeClientConnected, URL: rc.URL + "/org2", DeletionPolicy: 1})
	gone := env.create(storage.Subscription{Type: TypeClientConnected, URL: rc.URL + "/gone", DeletionPolicy: 1})
	if err := env.eng.Delete(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := env.eng.Close(); err != nil {
		t.Fatal(err)
	}
	env.start(Config{})
	if err := env.eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := fire("after restart"); n != 2 {
		t.Fatalf("after restart: %d notifications queued, want 2", n)
	}
	got := map[string]bool{}
	for range 2 {
		got[next(t, rc.accepted, "notification after restart").path] = true
	}
	if !got["/org"] || !got["/client"] {
		t.Fatalf("after restart delivered to %v, want /org and /client", got)
	}
	env.outcome(org.ID)
	env.outcome(cli.ID)
}

// A notification dropped because the queue is full costs the event no
// store write: the drop is counted in memory, shown by Stats at once and
// written with the worker's next statistics.
func TestQueueFullDropIsCountedInMemory(t *testing.T) {
	ctx := context.Background()
	cs := &countingStore{Store: newStore(t)}
	env := newEnv(t, Config{Store: cs, QueueSize: 1})
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
	env.eng.ClientUpdated(ctx, reg)
	next(t, rc.arrived, "first request")
	for range 3 { // one queued, two dropped
		env.eng.ClientUpdated(ctx, reg)
	}
	for range 2 {
		if env.outcome(s.ID) {
			t.Fatal("overflow reported delivered")
		}
	}
	if n := cs.statWrites.Load(); n != 0 {
		t.Fatalf("%d statistics writes while the first request is in flight", n)
	}
	if st, pending := env.stats(s.ID); st.Dropped != 2 || st.Delivered != 0 || pending != 1 || st.LastError != "delivery queue full" {
		t.Fatalf("stats %+v pending %d", st, pending)
	}
	release()
	for range 2 {
		if !env.outcome(s.ID) {
			t.Fatal("dropped")
		}
	}
	// Outcomes are reported after the statistics are written.
	st, err := cs.Store.GetDeliveryStats(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Dropped != 2 || st.Delivered != 2 || st.LastError != "delivery queue full" {
		t.Fatalf("stored stats %+v", st)
	}
	if got, pending := env.stats(s.ID); got.Dropped != 2 || got.Delivered != 2 || !got.LastSuccess.Equal(st.LastSuccess) || pending != 0 {
		t.Fatalf("Stats %+v pending %d, stored %+v", got, pending, st)
	}
}

// Events racing with creation, updates and deletion leave the index equal
// to the store (run with -race).
func TestLifecycleIndexConcurrent(t *testing.T) {
	ctx := context.Background()
	url, _ := countingReceiver(t)
	env := newEnv(t, Config{})
	// Too many deliveries for the outcome channels, which would block the
	// workers once full.
	env.eng.outcome = nil
	stop := make(chan struct{})
	var events sync.WaitGroup
	for i := range 2 {
		events.Go(func() {
			reg := env.register(fmt.Sprintf("c%d", i), "org1", fmt.Sprintf("ep%d", i))
			for {
				select {
				case <-stop:
					return
				default:
				}
				env.eng.ClientRegistered(ctx, reg)
				env.eng.ClientUpdated(ctx, reg)
				env.eng.ClientDeregistered(ctx, reg)
			}
		})
	}
	var crud sync.WaitGroup
	for w := range 3 {
		crud.Go(func() {
			for i := range 20 {
				client := ""
				if i%2 == 1 {
					client = fmt.Sprintf("c%d", w%2)
				}
				typ := []string{TypeClientConnected, TypeClientUpdated, TypeClientDisconnected}[i%3]
				s, err := env.eng.Create(ctx, storage.Subscription{OrganisationID: "org1", ClientID: client, Type: typ,
					URL: url, BaseURL: "https://ds.example", DeletionPolicy: i % 2})
				if err != nil {
					t.Error(err)
					return
				}
				u := url + "/" + strconv.Itoa(i)
				if _, err := env.eng.Update(ctx, s.ID, Patch{URL: &u}); err != nil {
					t.Error(err)
					return
				}
				if i%3 != 0 {
					if err := env.eng.Delete(ctx, s.ID); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	crud.Wait()
	close(stop)
	events.Wait()

	stored, err := env.store.ListSubscriptions(ctx, storage.SubscriptionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, s := range stored {
		want = append(want, fmt.Sprintf("%s %s %s %s %s", s.ID, s.OrganisationID, s.ClientID, s.Type, s.URL))
	}
	x := env.eng.index
	x.mu.RLock()
	for _, m := range []map[indexKey][]storage.Subscription{x.byOrg, x.byClient} {
		for k, subs := range m {
			if len(subs) == 0 {
				t.Errorf("empty index entry %v", k)
			}
			for _, s := range subs {
				if !reflect.DeepEqual(x.byID[s.ID], s) {
					t.Errorf("%s: byID and %v disagree", s.ID, k)
				}
				got = append(got, fmt.Sprintf("%s %s %s %s %s", s.ID, s.OrganisationID, s.ClientID, s.Type, s.URL))
			}
		}
	}
	if len(x.byID) != len(got) {
		t.Errorf("byID has %d subscriptions, the lists %d", len(x.byID), len(got))
	}
	x.mu.RUnlock()
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("index\n%v\nstore\n%v", got, want)
	}
}

// BenchmarkLifecycleEvents measures the event path the endpoint calls on
// every registration and deregistration, with no subscription and with one
// organisation-level ClientConnected subscription. Deliveries run on the
// subscription's worker; only the event calls are timed.
func BenchmarkLifecycleEvents(b *testing.B) {
	for _, bc := range []struct {
		name string
		sub  bool
	}{{"NoSubscriptions", false}, {"OrgClientConnected", true}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			// The receiver first, so that the engine closes before it.
			url, delivered := countingReceiver(b)
			store := newStore(b)
			eng := New(Config{Store: store, Device: newDevice()})
			b.Cleanup(func() { eng.Close() })
			if bc.sub {
				if _, err := eng.Create(ctx, storage.Subscription{OrganisationID: "org1", Type: TypeClientConnected,
					URL: url, BaseURL: "https://ds.example"}); err != nil {
					b.Fatal(err)
				}
			}
			if err := eng.Start(ctx); err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			now := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := "c" + strconv.FormatInt(n.Add(1), 10)
					reg := lwm2m.Registration{ID: id, Organisation: "org1", Endpoint: "ep-" + id, Lifetime: 86400,
						Version: "1.1", Binding: "U", RootPath: "/", RegisteredAt: now, LastUpdate: now, ExpiresAt: now.Add(24 * time.Hour)}
					eng.ClientRegistered(ctx, reg)
					eng.ClientDeregistered(ctx, reg)
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "events/s")
			if bc.sub {
				b.ReportMetric(float64(delivered.Load())/float64(b.N), "delivered/op")
			}
		})
	}
}
