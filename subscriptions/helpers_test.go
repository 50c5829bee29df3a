package subscriptions

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
	"github.com/deviceserver/deviceserver/storage/sqlite"
)

const waitFor = 10 * time.Second

var t0 = time.Date(2026, 11, 22, 4, 5, 6, 123e6, time.UTC)

func openStore(t testing.TB, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return s
}

// newStore opens a real sqlite store in a temporary directory.
func newStore(t testing.TB) *sqlite.Store {
	t.Helper()
	s := openStore(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	return s
}

// fakeClock is an injectable clock whose timers fire when it is advanced.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	f    func()
	done bool
}

func newClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.done
		t.done = true
		return was
	}
}

// Advance moves the clock, running due timers in time order, each at its
// own time, on the caller's goroutine.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.done && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		next.done = true
		if next.at.After(c.now) {
			c.now = next.at
		}
		c.mu.Unlock()
		next.f()
	}
}

// fakeDevice stands in for the CoAP endpoint.
type fakeDevice struct {
	mu       sync.Mutex
	observes map[string]int // by "client path"
	cancels  map[string]int
	writes   []writeCall
	values   map[string][]lwm2m.Record // Observe responses by "client path"
	err      error
	observed chan string // "client path" of every Observe
	store    storage.Store
	regs     map[string]lwm2m.Registration // by client ID, from env.register
	infos    int                           // SetDeviceInfo calls
}

type writeCall struct {
	client string
	path   string
	attrs  lwm2m.Attributes
}

func newDevice() *fakeDevice {
	return &fakeDevice{
		observes: map[string]int{}, cancels: map[string]int{}, values: map[string][]lwm2m.Record{},
		observed: make(chan string, 100), regs: map[string]lwm2m.Registration{},
	}
}

func (d *fakeDevice) WriteAttributes(_ context.Context, clientID string, p lwm2m.Path, a lwm2m.Attributes) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return d.err
	}
	d.writes = append(d.writes, writeCall{clientID, p.String(), a})
	return nil
}

func (d *fakeDevice) Observe(_ context.Context, clientID string, p lwm2m.Path) ([]lwm2m.Record, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return nil, d.err
	}
	k := clientID + " " + p.String()
	d.observes[k]++
	d.observed <- k
	// Stored like the endpoint does, so that a restarted engine finds it.
	if d.store != nil {
		if err := d.store.PutObservation(context.Background(), storage.Observation{ClientID: clientID, Path: p.String(), Token: []byte(k)}); err != nil {
			return nil, err
		}
	}
	return slices.Clone(d.values[k]), nil
}

// Read answers from values by "client path", like Observe; the engine
// reads object 3 after a registration.
func (d *fakeDevice) Read(_ context.Context, clientID string, p lwm2m.Path) ([]lwm2m.Record, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return nil, d.err
	}
	return slices.Clone(d.values[clientID+" "+p.String()]), nil
}

// SetDeviceInfo records info on the registration, as the endpoint does
// (from its memory: it reads nothing from the store).
func (d *fakeDevice) SetDeviceInfo(ctx context.Context, clientID string, info lwm2m.DeviceInfo) (lwm2m.Registration, error) {
	d.mu.Lock()
	reg, ok := d.regs[clientID]
	if ok {
		reg.Device = &info
		d.regs[clientID] = reg
	}
	d.infos++
	d.mu.Unlock()
	if !ok {
		return lwm2m.Registration{}, lwm2m.ErrClientNotFound
	}
	return reg, d.store.PutRegistration(ctx, reg)
}

func (d *fakeDevice) CancelObserve(_ context.Context, clientID string, p lwm2m.Path) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cancels[clientID+" "+p.String()]++
	if d.store != nil {
		_ = d.store.DeleteObservation(context.Background(), clientID, p.String())
	}
	return nil
}

func (d *fakeDevice) counts(k string) (observes, cancels int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.observes[k], d.cancels[k]
}

func (d *fakeDevice) lastWrite() (writeCall, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.writes) == 0 {
		return writeCall{}, 0
	}
	return d.writes[len(d.writes)-1], len(d.writes)
}

// request is one webhook request as a receiver saw it.
type request struct {
	path   string
	header http.Header
	body   []byte
	raw    []byte // the whole POST body when body is one item split from a batch
	status int
}

// notifications decodes a JSON body.
func (r request) items(t *testing.T) []map[string]any {
	t.Helper()
	var doc struct{ Items []map[string]any }
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("webhook body %q: %v", r.body, err)
	}
	return doc.Items
}

// receiver is a webhook receiver. status decides the answer to the n-th
// request (from 1); it may block. Every request goes to arrived before
// status is asked and to all after; accepted (2xx) ones go to accepted one
// notification at a time: a batch of several items is split into requests
// of one item each (same headers), so that tests can follow notifications
// whether or not the engine batched them.
type receiver struct {
	*httptest.Server
	arrived, all, accepted chan request
	mu                     sync.Mutex
	n                      int
}

func newReceiver(t testing.TB, status func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{arrived: make(chan request, 1000), all: make(chan request, 1000), accepted: make(chan request, 1000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.n++
		n := rc.n
		rc.mu.Unlock()
		req := request{path: r.URL.Path, header: r.Header.Clone(), body: body}
		rc.arrived <- req
		code := http.StatusNoContent
		if status != nil {
			code = status(n, r)
		}
		req.status = code
		rc.all <- req
		if code >= 200 && code < 300 {
			for _, one := range splitItems(req) {
				rc.accepted <- one
			}
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// splitItems returns r as one request per item of a JSON body of several.
func splitItems(r request) []request {
	var doc struct{ Items []json.RawMessage }
	if json.Unmarshal(r.body, &doc) != nil || len(doc.Items) < 2 {
		return []request{r}
	}
	out := make([]request, len(doc.Items))
	for i, it := range doc.Items {
		one := r
		one.raw = r.body
		one.body = append(append([]byte(`{"Items":[`), it...), ']', '}')
		out[i] = one
	}
	return out
}

func next[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// outcomes collects the engine's delivery outcomes per subscription.
type outcomes struct {
	mu sync.Mutex
	ch map[string]chan bool
}

func (o *outcomes) of(id string) chan bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ch[id] == nil {
		o.ch[id] = make(chan bool, 1000)
	}
	return o.ch[id]
}

type env struct {
	t        *testing.T
	store    storage.Store
	dev      *fakeDevice
	clock    *fakeClock
	eng      *Engine
	outcomes *outcomes
}

// newEnv builds an engine on a real sqlite store, a fake device and a fake
// clock; cfg fields that are set are kept.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	ev := &env{t: t, dev: newDevice(), clock: newClock()}
	if cfg.Store == nil {
		cfg.Store = newStore(t)
	}
	ev.store = cfg.Store
	ev.dev.store = cfg.Store
	ev.start(cfg)
	return ev
}

// start creates (another) engine on ev.store.
func (ev *env) start(cfg Config) {
	t := ev.t
	cfg.Store = ev.store
	if cfg.Device == nil {
		cfg.Device = ev.dev
	}
	if cfg.Now == nil {
		cfg.Now = ev.clock.Now
		cfg.AfterFunc = ev.clock.AfterFunc
	}
	if cfg.RetryWaitMin == 0 {
		cfg.RetryWaitMin, cfg.RetryWaitMax, cfg.DurableRetryWaitMax = time.Millisecond, 5*time.Millisecond, 20*time.Millisecond
	}
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ev.eng = New(cfg)
	ev.outcomes = &outcomes{ch: map[string]chan bool{}}
	oc := ev.outcomes
	ev.eng.outcome = func(id string, ok bool) { oc.of(id) <- ok }
	eng := ev.eng
	t.Cleanup(func() { eng.Close() })
}

// register stores an online registration of endpoint ep in org.
func (ev *env) register(id, org, ep string) lwm2m.Registration {
	ev.t.Helper()
	now := ev.clock.Now()
	reg := lwm2m.Registration{ID: id, Organisation: org, Endpoint: ep, Lifetime: 86400, Version: "1.1", Binding: "U",
		RootPath: "/", RegisteredAt: now, LastUpdate: now, ExpiresAt: now.Add(24 * time.Hour)}
	if err := ev.store.PutRegistration(context.Background(), reg); err != nil {
		ev.t.Fatalf("put registration: %v", err)
	}
	ev.dev.mu.Lock()
	ev.dev.regs[id] = reg
	ev.dev.mu.Unlock()
	return reg
}

func (ev *env) create(s storage.Subscription) storage.Subscription {
	ev.t.Helper()
	if s.OrganisationID == "" {
		s.OrganisationID = "org1"
	}
	if s.BaseURL == "" {
		s.BaseURL = "https://ds.example"
	}
	out, err := ev.eng.Create(context.Background(), s)
	if err != nil {
		ev.t.Fatalf("create %+v: %v", s, err)
	}
	return out
}

// outcome waits for the next delivery outcome of a subscription.
func (ev *env) outcome(id string) bool {
	ev.t.Helper()
	return next(ev.t, ev.outcomes.of(id), "delivery outcome of "+id)
}

func (ev *env) stats(id string) (storage.DeliveryStats, int) {
	ev.t.Helper()
	st, n, err := ev.eng.Stats(context.Background(), id)
	if err != nil {
		ev.t.Fatalf("stats: %v", err)
	}
	return st, n
}

// verifySignature checks X-Signature as a receiver would, independently of sign.
func verifySignature(secret string, r request) bool {
	got, ok := strings.CutPrefix(r.header.Get("X-Signature"), "sha256=")
	if !ok {
		return false
	}
	sum, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	if r.raw != nil {
		m.Write(r.raw)
	} else {
		m.Write(r.body)
	}
	return hmac.Equal(sum, m.Sum(nil))
}

func f64(v float64) *float64 { return &v }
func u32(v uint32) *uint32   { return &v }

func temperature(v float64) []lwm2m.Record {
	return []lwm2m.Record{{Path: lwm2m.ResourcePath(3303, 0, 5700), Value: v}}
}

func isValidation(err error) bool {
	var ve *ValidationError
	return errors.As(err, &ve)
}
