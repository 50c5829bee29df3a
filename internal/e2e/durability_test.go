package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/internal/testserver"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

// durableReceiver is a webhook receiver that records every POST in arrival
// order. It has gates: once it holds gate.at values, it stops answering
// (each later POST waits, already recorded, until the gate is released), so
// that the server's outbox backs up as it does behind a slow application.
type durableReceiver struct {
	URL string

	mu      sync.Mutex
	posts   []durablePost
	values  int // values recorded so far
	gates   []*gate
	cur     int           // index of the gate in force; len(gates) when none
	changed chan struct{} // closed and replaced at every POST
	bad     []string      // malformed requests
}

type gate struct {
	at       int
	closed   chan struct{} // closed when the receiver starts holding
	released chan struct{}
	once     sync.Once
}

type durablePost struct {
	id     string // X-Delivery-ID
	values []int
}

func newDurableReceiver(t *testing.T, gateAt ...int) *durableReceiver {
	rc := &durableReceiver{changed: make(chan struct{})}
	for _, at := range gateAt {
		rc.gates = append(rc.gates, &gate{at: at, closed: make(chan struct{}), released: make(chan struct{})})
	}
	srv := httptest.NewServer(http.HandlerFunc(rc.serve))
	rc.URL = srv.URL
	t.Cleanup(srv.Close)
	t.Cleanup(func() { // before srv.Close: handlers must not wait for ever
		for i := range rc.gates {
			rc.release(i)
		}
	})
	return rc
}

func (rc *durableReceiver) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Items []struct {
			SubscriptionType string
			Value            map[string]any
		}
	}
	id := r.Header.Get("X-Delivery-ID")
	err := json.NewDecoder(r.Body).Decode(&body)
	p := durablePost{id: id}
	for _, it := range body.Items {
		v, ok := it.Value["SensorValue"].(float64)
		if it.SubscriptionType != "Observation" || !ok || v != float64(int(v)) {
			err = fmt.Errorf("unexpected item %+v", it)
			break
		}
		p.values = append(p.values, int(v))
	}
	rc.mu.Lock()
	if err != nil || id == "" || len(body.Items) == 0 {
		rc.bad = append(rc.bad, fmt.Sprintf("delivery %q: %d items, %v", id, len(body.Items), err))
		rc.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.posts = append(rc.posts, p)
	rc.values += len(p.values)
	var g *gate
	if rc.cur < len(rc.gates) && rc.values >= rc.gates[rc.cur].at {
		g = rc.gates[rc.cur]
	}
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()
	if g != nil {
		g.once.Do(func() { close(g.closed) })
		<-g.released
	}
	w.WriteHeader(http.StatusNoContent)
}

// release lets the POSTs held at gate i go on and puts the next gate in force.
func (rc *durableReceiver) release(i int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	g := rc.gates[i]
	select {
	case <-g.released:
	default:
		close(g.released)
	}
	rc.cur = max(rc.cur, i+1)
}

// snapshot returns the POSTs so far and a channel closed at the next one.
func (rc *durableReceiver) snapshot() ([]durablePost, []string, <-chan struct{}) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.posts), slices.Clone(rc.bad), rc.changed
}

// delivered returns the set of values delivered in posts.
func delivered(posts []durablePost) map[int]bool {
	got := map[int]bool{}
	for _, p := range posts {
		for _, v := range p.values {
			got[v] = true
		}
	}
	return got
}

// TestDurableNotificationsSurviveKill checks the DeletionPolicy 1 promise
// against the real binary: every notification the device got a CoAP ACK
// for is in the store, is delivered in order per subscription and survives
// a SIGKILL; after the restarts the receiver has every one, in order, and a
// notification delivered twice always carries the same X-Delivery-ID.
//
// One device sends values 1..n, each once, as confirmable notifications,
// as fast as the ACKs come. The server is killed kills times, each time
// right after the device received the ACK of a value (the moment when a
// server that acknowledges before storing has that value only in memory),
// and while the receiver is holding deliveries, so that acknowledged values
// are waiting in the outbox. The device goes on notifying across each
// restart on the same socket (the values sent while the server is down are
// not acknowledged and need not arrive); the server finds the observation
// token in its store.
func TestDurableNotificationsSurviveKill(t *testing.T) {
	const (
		n        = 400
		kills    = 3
		step     = n / (kills + 1)        // kill i comes right after the ACK of value (i+1)*step
		ackWait  = 250 * time.Millisecond // then the device moves on (the server may be down)
		killWait = 5 * time.Second        // for the ACK of a value the kill follows; the server is up
		deadline = 20 * time.Second
	)
	killAt := func(i int) int { return (i + 1) * step }
	var gateAt []int // the receiver holds from a fifth of the way to each kill
	for i := range kills {
		gateAt = append(gateAt, i*step+step/5)
	}

	bin := testserver.BuildServer(t)
	httpAddr, coapAddr := testserver.FreeAddrs(t)
	srv := testserver.StartChild(t, testserver.ChildConfig{Bin: bin, DataDir: t.TempDir(), HTTPAddr: httpAddr, CoAPAddr: coapAddr})
	rc := newDurableReceiver(t, gateAt...)
	api := testserver.Client{T: t, Token: srv.Token(t)}

	dev := sim.New(sim.Config{Endpoint: "durable-dev", Server: coapAddr, Light: true})
	t.Cleanup(func() { _ = dev.Close() })
	startCtx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := dev.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	client := find(t, api.Get(srv.URL+"/clients?name=durable-dev").Body, "Name", "durable-dev")
	types := api.Get(testserver.Link(t, client, "objecttypes")).Body
	temp0 := find(t, api.Get(testserver.Link(t, find(t, types, "ObjectTypeID", "3303"), "instances")).Body, "InstanceID", "0")
	r := api.Do(http.MethodPost, testserver.Link(t, temp0, "subscriptions"), subType, map[string]any{
		"SubscriptionType": "Observation", "Url": rc.URL, "Property": "SensorValue", "DeletionPolicy": 1})
	if r.Status != http.StatusCreated {
		t.Fatalf("subscribe: %d %s", r.Status, r.Raw)
	}
	subURL := testserver.Link(t, r.Body, "self")

	// The burst runs on its own goroutine and kills the server itself, so
	// that the kill follows the ACK within microseconds.
	var (
		mu    sync.Mutex
		acked = make([]bool, n+1) // acked[v]: the server acknowledged value v
	)
	killed := make([]chan error, kills) // receives the kill's outcome
	restarted := make([]chan struct{}, kills)
	for i := range kills {
		killed[i] = make(chan error, 1)
		restarted[i] = make(chan struct{})
	}
	testDone := make(chan struct{})
	t.Cleanup(func() { close(testDone) })
	burstDone := make(chan error, 1)
	sensor := lwm2m.ResourcePath(3303, 0, 5700)
	go func() {
		k := 0 // the next kill
		for v := 1; v <= n; v++ {
			if k < kills && v == killAt(k) {
				// Acknowledged values pile up in the outbox from here on;
				// and the previous restart must be complete.
				var prev <-chan struct{}
				if k > 0 {
					prev = restarted[k-1]
				} else {
					prev = closedChan()
				}
				for _, ch := range []<-chan struct{}{rc.gates[k].closed, prev} {
					select {
					case <-ch:
					case <-time.After(deadline):
						burstDone <- fmt.Errorf("kill %d: the receiver did not reach %d values, or the server did not restart", k+1, gateAt[k])
						return
					case <-testDone:
						return
					}
				}
			}
			timeout := ackWait
			if k < kills && v == killAt(k) {
				timeout = killWait
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			err := dev.NotifyConfirmed(ctx, sensor, float64(v))
			cancel()
			mu.Lock()
			acked[v] = err == nil
			mu.Unlock()
			if k < kills && v == killAt(k) {
				if err != nil {
					burstDone <- fmt.Errorf("value %d, before kill %d, not acknowledged: %v", v, k+1, err)
					return
				}
				killed[k] <- srv.Kill()
				k++
			}
		}
		burstDone <- nil
	}()

	type killInfo struct {
		acked   []bool       // acknowledged before the kill
		waiting []int        // acknowledged, not yet delivered at the kill
		deliv   map[int]bool // delivered at the kill
	}
	var atKill []killInfo
	for k := range kills {
		select {
		case err := <-killed[k]:
			if err != nil {
				t.Fatalf("kill %d: %v", k+1, err)
			}
		case err := <-burstDone:
			t.Fatalf("the burst ended before kill %d: %v", k+1, err)
		case <-time.After(deadline):
			t.Fatalf("the device did not reach kill %d", k+1)
		}
		srv.WaitExit(t, deadline)
		mu.Lock()
		ki := killInfo{acked: slices.Clone(acked)}
		mu.Unlock()
		posts, _, _ := rc.snapshot()
		ki.deliv = delivered(posts)
		for v := 1; v <= killAt(k); v++ {
			if ki.acked[v] && !ki.deliv[v] {
				ki.waiting = append(ki.waiting, v)
			}
		}
		if len(ki.waiting) == 0 {
			t.Fatalf("kill %d: nothing acknowledged was waiting for delivery (%d values delivered): the kill tested nothing", k+1, len(ki.deliv))
		}
		atKill = append(atKill, ki)
		rc.release(k)
		srv.Restart(t)
		close(restarted[k])
	}
	select {
	case err := <-burstDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(deadline):
		t.Fatal("the burst did not finish after the last restart")
	}

	var want []int // every acknowledged value
	for v := 1; v <= n; v++ {
		if acked[v] {
			want = append(want, v)
		}
	}
	if last := want[len(want)-1]; last <= killAt(kills-1) {
		t.Fatalf("no notification was acknowledged after the last restart (last acknowledged: %d)", last)
	}
	for k, ki := range atKill {
		t.Logf("kill %d after the ACK of %d: %d values acknowledged, %d delivered, %d acknowledged and not yet delivered",
			k+1, killAt(k), countTrue(ki.acked), len(ki.deliv), len(ki.waiting))
	}
	t.Logf("%d of %d values acknowledged in all", len(want), n)

	// Wait until every acknowledged value has arrived.
	var posts []durablePost
	var missing []int
	timeout := time.After(deadline)
arrival:
	for {
		var bad []string
		var changed <-chan struct{}
		posts, bad, changed = rc.snapshot()
		if len(bad) > 0 {
			t.Fatalf("malformed deliveries: %v", bad)
		}
		got := delivered(posts)
		missing = missing[:0]
		for _, v := range want {
			if !got[v] {
				missing = append(missing, v)
			}
		}
		if len(missing) == 0 {
			break
		}
		select {
		case <-changed:
		case <-timeout:
			break arrival
		}
	}
	lost := make([][]int, kills+1) // by the kill they were acknowledged before; kills: after the last
	for _, v := range missing {
		k := 0
		for k < kills && !atKill[k].acked[v] {
			k++
		}
		lost[k] = append(lost[k], v)
	}
	for k, vs := range lost {
		switch {
		case len(vs) == 0:
		case k < kills:
			t.Errorf("%d values acknowledged before kill %d (which came right after the ACK of %d) were never delivered: %s",
				len(vs), k+1, killAt(k), spans(vs))
		default:
			t.Errorf("%d values acknowledged after the last restart were never delivered: %s", len(vs), spans(vs))
		}
	}

	// Order and duplicates: taken in arrival order, every value delivered
	// for the first time is larger than those before it (a re-sent batch
	// may repeat earlier values, and may be batched differently), and no
	// value travels under two delivery IDs.
	seenIDs := map[string]bool{}
	idsOf := map[int]map[string]bool{}
	prev, resent := 0, 0
	for i, p := range posts {
		if seenIDs[p.id] {
			resent++
		}
		seenIDs[p.id] = true
		for _, v := range p.values {
			if idsOf[v] == nil {
				idsOf[v] = map[string]bool{}
				if v < prev {
					t.Errorf("POST %d (delivery %s): value %d first delivered after %d", i, p.id, v, prev)
				}
				prev = max(prev, v)
			}
			idsOf[v][p.id] = true
		}
	}
	for v, ids := range idsOf {
		if len(ids) > 1 {
			t.Errorf("value %d delivered under %d delivery IDs: %v", v, len(ids), slices.Sorted(maps.Keys(ids)))
		}
	}
	t.Logf("%d POSTs, %d of them re-sends of an earlier delivery ID", len(posts), resent)

	// The outbox ends empty.
	for end := time.Now().Add(deadline); ; {
		d, _ := api.Get(subURL).Body["Delivery"].(map[string]any)
		if d["Pending"] == float64(0) {
			break
		}
		if time.Now().After(end) {
			t.Errorf("Delivery after every delivery: %v, want Pending 0", d)
			break
		}
		_, _, changed := rc.snapshot()
		select { // look again at the next delivery, or shortly
		case <-changed:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func closedChan() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// spans renders sorted values as ranges: "3, 7-9".
func spans(vs []int) string {
	var parts []string
	for i := 0; i < len(vs); {
		j := i
		for j+1 < len(vs) && vs[j+1] == vs[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(vs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", vs[i], vs[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

func countTrue(b []bool) int {
	n := 0
	for _, x := range b {
		if x {
			n++
		}
	}
	return n
}
