package endpoint

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/storage"
	"github.com/deviceserver/deviceserver/storage/sqlite"
)

// waitFor bounds every wait in these tests; nothing sleeps to synchronise.
const waitFor = 10 * time.Second

// testModels types a few resources of objects 3 and 3303.
type testModels struct{}

func (testModels) Resolver(string) lwm2m.Resolver {
	return lwm2m.ResolverFunc(func(o, r uint16) (lwm2m.DataType, bool, bool) {
		switch {
		case o == 3 && (r == 0 || r == 1 || r == 2 || r == 3):
			return lwm2m.TypeString, false, true
		case o == 3 && r == 9:
			return lwm2m.TypeInteger, false, true
		case o == 3 && r == 4:
			return lwm2m.TypeNone, false, true
		case o == 3 && r == 6:
			return lwm2m.TypeInteger, true, true
		case o == 3 && r == 13:
			return lwm2m.TypeTime, false, true
		case o == 3303 && r == 5700:
			return lwm2m.TypeFloat, false, true
		case o == 3303 && r == 5701:
			return lwm2m.TypeString, false, true
		case o == 5 && r == 0:
			return lwm2m.TypeOpaque, false, true
		}
		return lwm2m.TypeNone, false, false
	})
}

// harness is a running Server with a real SQLite store and an event channel.
type harness struct {
	srv    *Server
	store  storage.Store
	events chan Event
	addr   string
	// before, when set, runs in the event handler before the event is
	// queued on events, e.g. to hold the handler (events_test.go).
	before atomic.Pointer[func(Event)]
}

func openStore(t testing.TB, dir string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func startServer(t *testing.T, cfg Config, st storage.Store) *harness {
	t.Helper()
	if st == nil {
		s := openStore(t, t.TempDir())
		t.Cleanup(func() { s.Close() })
		st = s
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.DefaultOrganisation == "" {
		cfg.DefaultOrganisation = "org1"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	h := &harness{store: st, events: make(chan Event, 1024)}
	h.srv = New(cfg, st, testModels{}, func(_ context.Context, ev Event) {
		if f := h.before.Load(); f != nil {
			(*f)(ev)
		}
		select {
		case h.events <- ev:
		default:
			t.Errorf("event channel full, dropped %v", ev.Type)
		}
	})
	if err := h.srv.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { h.srv.Close() })
	h.addr = h.srv.Addr().String()
	return h
}

// waitEvent returns the next event of type typ, failing the test after
// waitFor. Events of other types are skipped.
func (h *harness) waitEvent(t *testing.T, typ EventType) Event {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case ev := <-h.events:
			if ev.Type == typ {
				return ev
			}
			t.Logf("skipping event %v of %s", ev.Type, ev.Registration.Endpoint)
		case <-deadline:
			t.Fatalf("no %v event within %v", typ, waitFor)
		}
	}
}

// noEvent checks that no event of type typ is queued right now.
func (h *harness) noEvent(t *testing.T, typ EventType) {
	t.Helper()
	for {
		select {
		case ev := <-h.events:
			if ev.Type == typ {
				t.Fatalf("unexpected %v event: %+v", typ, ev)
			}
		default:
			return
		}
	}
}

// devRequest is a request the test device received.
type devRequest struct {
	Code    codes.Code
	Path    string
	Query   []string
	CF      int // -1 when absent
	Accept  int // -1 when absent
	Observe int // -1 when absent
	Payload []byte
	Token   []byte
}

// devResponse is how the test device answers.
type devResponse struct {
	Code    codes.Code
	CF      int // -1: no Content-Format
	Payload []byte
	Observe int // -1: no Observe option
	Opts    []message.Option
	Silent  bool // send nothing (go-coap then ACKs a CON request empty)
}

// device is a minimal LwM2M client on go-coap's UDP client: a connected
// socket, so like a device behind NAT it only hears from the server.
type device struct {
	t  *testing.T
	cc *udpclient.Conn

	mu      sync.Mutex
	respond func(devRequest) devResponse
	reqs    chan devRequest
}

func newDevice(t *testing.T, serverAddr string) *device {
	t.Helper()
	d := &device{t: t, reqs: make(chan devRequest, 64)}
	d.respond = func(devRequest) devResponse { return devResponse{Code: codes.NotFound, CF: -1, Observe: -1} }
	cc, err := udp.Dial(serverAddr,
		options.WithHandlerFunc(d.serve),
		options.WithErrors(func(error) {}),
	)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	d.cc = cc
	t.Cleanup(func() { cc.Close() })
	return d
}

func (d *device) setResponder(f func(devRequest) devResponse) {
	d.mu.Lock()
	d.respond = f
	d.mu.Unlock()
}

func (d *device) serve(w *responsewriter.ResponseWriter[*udpclient.Conn], r *pool.Message) {
	switch r.Code() {
	case codes.GET, codes.POST, codes.PUT, codes.DELETE:
	default:
		return
	}
	rq := devRequest{Code: r.Code(), CF: -1, Accept: -1, Observe: -1, Token: append([]byte(nil), r.Token()...)}
	rq.Path, _ = r.Options().Path()
	for _, o := range r.Options() {
		if o.ID == message.URIQuery {
			rq.Query = append(rq.Query, string(o.Value))
		}
	}
	if cf, err := r.ContentFormat(); err == nil {
		rq.CF = int(cf)
	}
	if a, err := r.Accept(); err == nil {
		rq.Accept = int(a)
	}
	if o, err := r.Observe(); err == nil {
		rq.Observe = int(o)
	}
	if r.Body() != nil {
		b, _ := io.ReadAll(r.Body())
		rq.Payload = b
	}
	d.mu.Lock()
	respond := d.respond
	d.mu.Unlock()
	resp := respond(rq)
	select {
	case d.reqs <- rq:
	default:
	}
	if resp.Silent {
		return
	}
	var body io.ReadSeeker
	if resp.Payload != nil {
		body = bytes.NewReader(resp.Payload)
	}
	if err := w.SetResponse(resp.Code, message.MediaType(max(resp.CF, 0)), body, resp.Opts...); err != nil {
		d.t.Errorf("device: set response: %v", err)
		return
	}
	if resp.CF < 0 {
		w.Message().Remove(message.ContentFormat)
	}
	if resp.Observe >= 0 {
		w.Message().SetObserve(uint32(resp.Observe))
	}
}

// nextRequest returns the next request the device received.
func (d *device) nextRequest(t *testing.T) devRequest {
	t.Helper()
	select {
	case rq := <-d.reqs:
		return rq
	case <-time.After(waitFor):
		t.Fatalf("device received no request within %v", waitFor)
		return devRequest{}
	}
}

func queryOpts(q string) []message.Option {
	var opts []message.Option
	if q == "" {
		return nil
	}
	for _, kv := range strings.Split(q, "&") {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(kv)})
	}
	return opts
}

// post sends a POST with a link-format payload and returns code, Location-Path and diagnostic.
func (d *device) post(t *testing.T, path, query, payload string) (codes.Code, []string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var body io.ReadSeeker
	if payload != "" {
		body = strings.NewReader(payload)
	}
	resp, err := d.cc.Post(ctx, path, message.AppLinkFormat, body, queryOpts(query)...)
	if err != nil {
		t.Fatalf("POST %s?%s: %v", path, query, err)
	}
	defer d.cc.ReleaseMessage(resp)
	var loc []string
	for _, o := range resp.Options() {
		if o.ID == message.LocationPath {
			loc = append(loc, string(o.Value))
		}
	}
	b, _ := readBody(resp)
	return resp.Code(), loc, string(b)
}

// register registers the device and returns its registration ID.
func (d *device) register(t *testing.T, query, payload string) string {
	t.Helper()
	code, loc, diag := d.post(t, "/rd", query, payload)
	if code != codes.Created {
		t.Fatalf("register %q: %v %q", query, code, diag)
	}
	if len(loc) != 2 || loc[0] != "rd" || loc[1] == "" {
		t.Fatalf("register: Location-Path %q", loc)
	}
	return loc[1]
}

func (d *device) update(t *testing.T, id, query, payload string) codes.Code {
	t.Helper()
	code, _, _ := d.post(t, "/rd/"+id, query, payload)
	return code
}

func (d *device) deregister(t *testing.T, id string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := d.cc.Delete(ctx, "/rd/"+id)
	if err != nil {
		t.Fatalf("DELETE /rd/%s: %v", id, err)
	}
	defer d.cc.ReleaseMessage(resp)
	return resp.Code()
}

// notify sends an observation notification.
func (d *device) notify(t *testing.T, token []byte, seq uint32, cf message.MediaType, payload []byte, confirmable bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	m := d.cc.AcquireMessage(ctx)
	defer d.cc.ReleaseMessage(m)
	m.SetCode(codes.Content)
	m.SetToken(token)
	m.SetObserve(seq)
	m.SetContentFormat(cf)
	m.SetBody(bytes.NewReader(payload))
	if confirmable {
		m.SetType(message.Confirmable)
	} else {
		m.SetType(message.NonConfirmable)
	}
	if err := d.cc.WriteMessage(m); err != nil {
		t.Fatalf("notify: %v", err)
	}
}

func (d *device) String() string { return fmt.Sprintf("device %s", d.cc.LocalAddr()) }
