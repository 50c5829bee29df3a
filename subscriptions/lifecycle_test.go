package subscriptions

import (
	"context"
	"encoding/xml"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
)

func TestLifecycleDelivery(t *testing.T) {
	events := []struct {
		typ  string
		fire func(e *Engine, reg lwm2m.Registration)
	}{
		{TypeClientConnected, func(e *Engine, reg lwm2m.Registration) { e.ClientRegistered(context.Background(), reg) }},
		{TypeClientUpdated, func(e *Engine, reg lwm2m.Registration) { e.ClientUpdated(context.Background(), reg) }},
		{TypeClientDisconnected, func(e *Engine, reg lwm2m.Registration) { e.ClientDeregistered(context.Background(), reg) }},
		{TypeClientConnectionExpired, func(e *Engine, reg lwm2m.Registration) { e.ClientExpired(context.Background(), reg) }},
	}
	for _, ev := range events {
		t.Run(ev.typ, func(t *testing.T) {
			env := newEnv(t, Config{})
			rc := newReceiver(t, nil)
			const secret = "s3cret"
			mk := func(org, client, typ, path string, secret string) storage.Subscription {
				return env.create(storage.Subscription{OrganisationID: org, ClientID: client, Type: typ, URL: rc.URL + path,
					Secret: secret, BaseURL: "https://ds.example:8080/"})
			}
			other := TypeClientConnected
			if ev.typ == other {
				other = TypeClientDisconnected
			}
			orgSub := mk("org1", "", ev.typ, "/org", secret)
			cliSub := mk("org1", "c1", ev.typ, "/client", "")
			// None of these may hear of c1's event.
			quiet := []storage.Subscription{
				mk("org1", "c2", ev.typ, "/other-client", ""),
				mk("org2", "", ev.typ, "/other-org", ""),
				mk("org1", "", other, "/other-type", ""),
			}

			reg := env.register("c1", "org1", "urn:imei:1234")
			ev.fire(env.eng, reg)

			got := map[string]request{}
			for range 2 {
				r := next(t, rc.accepted, "lifecycle webhook")
				got[r.path] = r
			}
			for path, sub := range map[string]storage.Subscription{"/org": orgSub, "/client": cliSub} {
				r, ok := got[path]
				if !ok {
					t.Fatalf("no notification for %s; got %v", path, got)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/vnd.imgtec.notifications+json" {
					t.Errorf("%s: Content-Type %q", path, ct)
				}
				if r.header.Get("X-Delivery-ID") == "" {
					t.Errorf("%s: no X-Delivery-ID", path)
				}
				if sub.Secret != "" && !verifySignature(sub.Secret, r) {
					t.Errorf("%s: signature %q does not verify", path, r.header.Get("X-Signature"))
				}
				if sub.Secret == "" && r.header.Get("X-Signature") != "" {
					t.Errorf("%s: signature without a secret", path)
				}
				items := r.items(t)
				want := []map[string]any{{
					"SubscriptionType": ev.typ,
					"TimeTriggered":    "2026-11-22T04:05:06.123Z",
					"Name":             "urn:imei:1234",
					"Links": []any{
						map[string]any{"rel": "subscription", "href": "https://ds.example:8080/subscriptions/" + sub.ID},
						map[string]any{"rel": "client", "href": "https://ds.example:8080/clients/c1"},
					},
				}}
				if !reflect.DeepEqual(items, want) {
					t.Errorf("%s: items\n got %v\nwant %v", path, items, want)
				}
			}
			if env.outcome(orgSub.ID) != true || env.outcome(cliSub.ID) != true {
				t.Fatal("deliveries not counted as delivered")
			}
			if st, pending := env.stats(orgSub.ID); st.Delivered != 1 || st.Dropped != 0 || pending != 0 || !st.LastSuccess.Equal(t0) {
				t.Errorf("stats = %+v, pending %d", st, pending)
			}
			// The event queued nothing for the others: no worker, no counts.
			for _, s := range quiet {
				env.eng.mu.Lock()
				w := env.eng.workers[s.ID]
				env.eng.mu.Unlock()
				st, pending := env.stats(s.ID)
				if w != nil || st.Delivered != 0 || st.Dropped != 0 || pending != 0 {
					t.Errorf("%s got a notification (stats %+v)", s.URL, st)
				}
			}
			for range 2 {
				next(t, rc.all, "request")
			}
			select {
			case r := <-rc.all:
				t.Errorf("unexpected webhook to %s", r.path)
			default:
			}
		})
	}
}

func TestLifecycleXML(t *testing.T) {
	env := newEnv(t, Config{})
	rc := newReceiver(t, nil)
	s := env.create(storage.Subscription{Type: TypeClientConnected, URL: rc.URL, AcceptContentType: "application/xml"})
	env.eng.ClientRegistered(context.Background(), env.register("c1", "org1", "dev<1>"))
	r := next(t, rc.accepted, "xml webhook")
	if ct := r.header.Get("Content-Type"); ct != "application/vnd.imgtec.notifications+xml" {
		t.Errorf("Content-Type %q", ct)
	}
	var doc struct {
		XMLName xml.Name `xml:"Notifications"`
		Items   []struct {
			SubscriptionType string
			TimeTriggered    string
			Name             string
			Links            []struct {
				Rel  string `xml:"rel,attr"`
				Href string `xml:"href,attr"`
			} `xml:"Links>Link"`
		} `xml:"Items>Notification"`
	}
	if err := xml.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	if len(doc.Items) != 1 || doc.Items[0].SubscriptionType != TypeClientConnected || doc.Items[0].Name != "dev<1>" ||
		len(doc.Items[0].Links) != 2 || doc.Items[0].Links[0].Href != "https://ds.example/subscriptions/"+s.ID {
		t.Fatalf("decoded %+v from %s", doc, r.body)
	}
}

// Several events for one subscription arrive in the order they happened.
func TestLifecycleOrder(t *testing.T) {
	for _, policy := range []int{0, 1} {
		env := newEnv(t, Config{})
		rc := newReceiver(t, nil)
		s := env.create(storage.Subscription{ClientID: "c1", Type: TypeClientUpdated, URL: rc.URL, DeletionPolicy: policy})
		reg := env.register("c1", "org1", "ep")
		const n = 20
		for range n {
			env.clock.Advance(time.Second)
			env.eng.ClientUpdated(context.Background(), reg)
		}
		for i := range n {
			r := next(t, rc.accepted, "update notification")
			want := t0.Add(time.Duration(i+1) * time.Second).Format(timeLayout)
			if got := r.items(t)[0]["TimeTriggered"]; got != want {
				t.Fatalf("policy %d: notification %d has TimeTriggered %v, want %s", policy, i, got, want)
			}
		}
		for range n {
			env.outcome(s.ID)
		}
		if st, pending := env.stats(s.ID); st.Delivered != n || pending != 0 {
			t.Fatalf("policy %d: stats %+v pending %d", policy, st, pending)
		}
	}
}

// A subscription that is slow to answer delays only itself.
func TestSlowReceiverDoesNotDelayOthers(t *testing.T) {
	env := newEnv(t, Config{})
	gate := make(chan struct{})
	slow := newReceiver(t, func(int, *http.Request) int { <-gate; return http.StatusOK })
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before the receiver's Close waits for its handlers
	fast := newReceiver(t, nil)
	slowSub := env.create(storage.Subscription{Type: TypeClientUpdated, URL: slow.URL})
	fastSub := env.create(storage.Subscription{Type: TypeClientUpdated, URL: fast.URL, DeletionPolicy: 1})
	reg := env.register("c1", "org1", "ep")
	env.eng.ClientUpdated(context.Background(), reg)
	env.eng.ClientUpdated(context.Background(), reg)
	// Both of the fast subscription's notifications arrive while the slow
	// receiver still holds the first request of the other.
	next(t, slow.arrived, "first slow request")
	next(t, fast.accepted, "first fast notification")
	next(t, fast.accepted, "second fast notification")
	env.outcome(fastSub.ID)
	env.outcome(fastSub.ID)
	if _, pending := env.stats(slowSub.ID); pending != 1 {
		t.Errorf("slow subscription pending = %d, want 1 (one in flight, one queued)", pending)
	}
	release()
	next(t, slow.accepted, "first slow notification")
	next(t, slow.accepted, "second slow notification")
}
