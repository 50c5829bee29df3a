package subscriptions

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/storage"
)

// Notifications that wait while a request is in flight go in the next
// request together, in order; a durable batch that failed is sent again
// after a restart as the same batch, under the same X-Delivery-ID.
func TestPolicy1BatchSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store1 := openStore(t, dir)
	env := newEnv(t, Config{Store: store1})
	gate := make(chan struct{})
	var accept atomic.Bool
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			<-gate
			return http.StatusOK
		}
		if accept.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	env.create(storage.Subscription{Type: TypeClientUpdated, URL: rc.URL, DeletionPolicy: 1})
	reg := env.register("c1", "org1", "ep1")
	env.eng.ClientUpdated(ctx, reg)
	next(t, rc.arrived, "first request")
	for range 4 {
		env.clock.Advance(time.Second)
		env.eng.ClientUpdated(ctx, reg)
	}
	release()
	first := next(t, rc.all, "first request answered")
	next(t, rc.accepted, "first notification")
	batch := next(t, rc.all, "failing batch")
	if n := len(batch.items(t)); n != 4 {
		t.Fatalf("second request has %d items, want the 4 that waited", n)
	}
	id := batch.header.Get(HeaderDeliveryID)
	if id == "" || id == first.header.Get(HeaderDeliveryID) {
		t.Fatalf("batch delivery ID %q", id)
	}
	if err := env.eng.Close(); err != nil {
		t.Fatal(err)
	}
	if err := store1.Close(); err != nil {
		t.Fatal(err)
	}

	// Another notification arrives after the restart; the batch is still
	// sent as it was, and the new one after it.
	accept.Store(true)
	env.store = openStore(t, dir)
	t.Cleanup(func() { env.store.Close() })
	env.start(Config{})
	if err := env.eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	env.clock.Advance(time.Second)
	env.eng.ClientUpdated(ctx, reg)
	var got []string
	ids := map[string]string{}
	for range 5 {
		r := next(t, rc.accepted, "delivery after restart")
		at := r.items(t)[0]["TimeTriggered"].(string)
		got = append(got, at)
		ids[at] = r.header.Get(HeaderDeliveryID)
	}
	for i, at := range got {
		if want := t0.Add(time.Duration(i+1) * time.Second).Format(timeLayout); at != want {
			t.Fatalf("delivery %d at %s, want %s (order %v)", i, at, want, got)
		}
		if i < 4 && ids[at] != id {
			t.Fatalf("item %d re-sent under %q, want the batch's %q", i, ids[at], id)
		}
	}
}

// DeletionPolicy 0 batches too; the batch is dropped and counted as a whole.
func TestPolicy0Batch(t *testing.T) {
	env := newEnv(t, Config{RetryMax: -1})
	gate := make(chan struct{})
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			<-gate
		}
		if n == 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	s := env.create(storage.Subscription{Type: TypeClientUpdated, URL: rc.URL})
	reg := env.register("c1", "org1", "ep1")
	env.eng.ClientUpdated(context.Background(), reg)
	next(t, rc.arrived, "first request")
	for range 3 {
		env.eng.ClientUpdated(context.Background(), reg)
	}
	release()
	next(t, rc.all, "first")
	if r := next(t, rc.all, "batch"); len(r.items(t)) != 3 {
		t.Fatalf("batch of %d, want 3", len(r.items(t)))
	}
	for range 4 {
		env.outcome(s.ID)
	}
	if st, pending := env.stats(s.ID); st.Delivered != 1 || st.Dropped != 3 || pending != 0 {
		t.Fatalf("stats %+v pending %d", st, pending)
	}
}

// Receivers that redirect, reset the connection or hang are failures: the
// notification is dropped after the bounded retry, and the redirect is not
// followed.
func TestPolicy0BadReceivers(t *testing.T) {
	target := newReceiver(t, nil)
	redirect := newReceiver(t, func(int, *http.Request) int { return http.StatusFound })
	reset := newReceiver(t, nil)
	reset.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	})
	hang := make(chan struct{})
	hung := newReceiver(t, func(int, *http.Request) int { <-hang; return http.StatusOK })
	t.Cleanup(sync.OnceFunc(func() { close(hang) }))
	cases := []struct {
		name, url, errPart string
	}{
		{"redirect", redirect.URL + "/?to=" + target.URL, "302"},
		{"connection reset", reset.URL, "reset"},
		{"hang", hung.URL, "exceeded"}, // "context deadline exceeded" or "Client.Timeout exceeded"
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, Config{RetryMax: 1, HTTPClient: &http.Client{Timeout: 300 * time.Millisecond}})
			s := env.create(storage.Subscription{Type: TypeClientUpdated, URL: tc.url})
			env.eng.ClientUpdated(context.Background(), env.register("c1", "org1", "ep1"))
			if env.outcome(s.ID) {
				t.Fatal("reported delivered")
			}
			st, _ := env.stats(s.ID)
			if st.Dropped != 1 || !strings.Contains(st.LastError, tc.errPart) {
				t.Fatalf("stats %+v, want one drop with %q", st, tc.errPart)
			}
		})
	}
	select {
	case r := <-target.all:
		t.Fatalf("the redirect was followed: %+v", r)
	default:
	}
}

// At most maxPerDestination requests are in flight to one receiver, however
// many subscriptions point at it.
func TestPerDestinationLimit(t *testing.T) {
	env := newEnv(t, Config{})
	var inFlight, peak atomic.Int32
	gate := make(chan struct{})
	rc := newReceiver(t, func(int, *http.Request) int {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-gate
		inFlight.Add(-1)
		return http.StatusOK
	})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	const subs = 3 * maxPerDestination
	var ids []string
	for range subs {
		ids = append(ids, env.create(storage.Subscription{Type: TypeClientUpdated, URL: rc.URL}).ID)
	}
	env.eng.ClientUpdated(context.Background(), env.register("c1", "org1", "ep1"))
	for range maxPerDestination {
		next(t, rc.arrived, "request")
	}
	release()
	for _, id := range ids {
		if !env.outcome(id) {
			t.Fatal("dropped")
		}
	}
	if p := peak.Load(); p > maxPerDestination {
		t.Fatalf("%d requests in flight at once, want at most %d", p, maxPerDestination)
	}
}

func TestAllowedDestinations(t *testing.T) {
	d := newDestinations([]string{"hooks.example.com", "*.receivers.example", "192.0.2.0/24", "2001:db8::1", "127.0.0.1"})
	cases := []struct {
		url string
		ok  bool
	}{
		{"https://hooks.example.com/x", true},
		{"https://HOOKS.example.com./x", true},
		{"https://evil.example.com/x", false},
		{"https://a.receivers.example/x", true},
		{"https://receivers.example/x", false},
		{"http://192.0.2.44:8080/x", true},
		{"http://192.0.3.1/x", false},
		{"http://[2001:db8::1]/x", true},
		{"http://10.0.0.1/x", false},
		{"http://127.0.0.1:9/x", true},
		{"ftp://hooks.example.com/x", false},
		{"/relative", false},
		{"http://does-not-exist.invalid/x", false},
	}
	for _, tc := range cases {
		if err := d.checkURL(context.Background(), tc.url); (err == nil) != tc.ok {
			t.Errorf("checkURL(%s) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
	if err := newDestinations(nil).checkURL(context.Background(), "http://10.0.0.1/"); err != nil {
		t.Errorf("no allow-list: %v", err)
	}
	// The dialer checks the address it connects to, whatever the URL said.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	only := newDestinations([]string{"192.0.2.0/24"})
	if _, err := only.dialer()(context.Background(), "tcp", ln.Addr().String()); !errors.Is(err, errForbiddenDestination) {
		t.Fatalf("dial outside the allowed networks = %v", err)
	}
	c, err := newDestinations([]string{"127.0.0.0/8"}).dialer()(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial inside the allowed networks: %v", err)
	}
	c.Close()

	// Create refuses a destination outside the list with a ValidationError on Url.
	env := newEnv(t, Config{AllowedDestinations: []string{"hooks.example.com"}})
	_, err = env.eng.Create(context.Background(), storage.Subscription{OrganisationID: "org1", Type: TypeClientConnected, URL: "http://127.0.0.1/"})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Fields[0] != "Url" {
		t.Fatalf("Create = %v, want a ValidationError on Url", err)
	}
	if err := env.eng.CheckURL(context.Background(), "url", "http://127.0.0.1/"); !isValidation(err) {
		t.Fatalf("CheckURL = %v", err)
	}
}
