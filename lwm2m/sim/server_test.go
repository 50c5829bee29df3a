package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
)

// wait bounds every wait on the network in these tests.
const wait = 5 * time.Second

// rdRequest is a registration-interface request as the test server saw it.
type rdRequest struct {
	code    codes.Code
	path    string
	queries []string
	format  int // -1 when absent
	payload string
}

// testServer is a minimal LwM2M server on go-coap: it answers the
// registration interface and lets a test send requests to the device over
// the connection the device registered from.
type testServer struct {
	addr     string
	requests chan rdRequest

	mu   sync.Mutex
	conn mux.Conn
	// registerCode, when set, is the answer to Register instead of 2.01.
	registerCode codes.Code
	// updateCode, when set, is the answer to Update instead of 2.04.
	updateCode codes.Code
	regCount   int
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{requests: make(chan rdRequest, 64)}
	l, err := coapnet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := udp.NewServer(options.WithMux(mux.HandlerFunc(ts.serve)), options.WithErrors(func(error) {}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
		_ = l.Close()
	})
	ts.addr = l.LocalAddr().String()
	return ts
}

func (ts *testServer) serve(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() == codes.Empty || r.Code() >= codes.Created {
		return // not a request: a notification of a forgotten observation, a stray RST
	}
	path, _ := r.Options().Path()
	q, _ := r.Queries()
	req := rdRequest{code: r.Code(), path: path, queries: slices.Clone(q), format: -1}
	if cf, err := r.ContentFormat(); err == nil {
		req.format = int(cf)
	}
	b, _ := r.ReadBody()
	req.payload = string(b)
	ts.requests <- req

	ts.mu.Lock()
	defer ts.mu.Unlock()
	switch {
	case r.Code() == codes.POST && path == "/rd":
		if ts.registerCode != 0 {
			_ = w.SetResponse(ts.registerCode, message.TextPlain, nil)
			return
		}
		ts.conn = w.Conn()
		ts.regCount++
		_ = w.SetResponse(codes.Created, message.TextPlain, nil,
			message.Option{ID: message.LocationPath, Value: []byte("rd")},
			message.Option{ID: message.LocationPath, Value: fmt.Appendf(nil, "r%d", ts.regCount)})
	case r.Code() == codes.POST:
		code := codes.Changed
		if ts.updateCode != 0 {
			code = ts.updateCode
		}
		_ = w.SetResponse(code, message.TextPlain, nil)
	case r.Code() == codes.DELETE:
		_ = w.SetResponse(codes.Deleted, message.TextPlain, nil)
	default:
		_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
	}
}

// next returns the next registration-interface request.
func (ts *testServer) next(t *testing.T) rdRequest {
	t.Helper()
	select {
	case r := <-ts.requests:
		return r
	case <-time.After(wait):
		t.Fatal("no request reached the server")
		return rdRequest{}
	}
}

// result is a device's answer to a request from the test server.
type result struct {
	code     codes.Code
	format   int // -1 when absent
	payload  []byte
	location string
}

// reqOpt shapes a request the test server sends.
type reqOpt func(*pool.Message)

func accept(f lwm2m.ContentFormat) reqOpt {
	return func(m *pool.Message) { m.SetAccept(message.MediaType(f)) }
}

func body(f lwm2m.ContentFormat, b []byte) reqOpt {
	return func(m *pool.Message) {
		m.SetContentFormat(message.MediaType(f))
		m.SetBody(bytes.NewReader(b))
	}
}

func query(q ...string) reqOpt {
	return func(m *pool.Message) {
		for _, s := range q {
			m.AddQuery(s)
		}
	}
}

// do sends one request to the device and returns its answer.
func (ts *testServer) do(t *testing.T, code codes.Code, path string, opts ...reqOpt) result {
	t.Helper()
	ts.mu.Lock()
	conn := ts.conn
	ts.mu.Unlock()
	if conn == nil {
		t.Fatal("no device registered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req := conn.AcquireMessage(ctx)
	defer conn.ReleaseMessage(req)
	token, err := message.GetToken()
	if err != nil {
		t.Fatal(err)
	}
	req.SetCode(code)
	req.SetToken(token)
	if err := req.SetPath(path); err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := conn.Do(req)
	if err != nil {
		t.Fatalf("%v %s: %v", code, path, err)
	}
	defer conn.ReleaseMessage(resp)
	res := result{code: resp.Code(), format: -1}
	if cf, err := resp.ContentFormat(); err == nil {
		res.format = int(cf)
	}
	res.payload, _ = resp.ReadBody()
	res.location, _ = resp.Options().LocationPath()
	return res
}

// notif is one observe answer or notification as the server received it.
type notif struct {
	code    codes.Code
	format  int
	observe uint32
	mid     int32
	payload []byte
}

// observe starts an observation and returns the 2.05 answer, the channel
// of later notifications and a function cancelling the observation.
func (ts *testServer) observe(t *testing.T, path string, f lwm2m.ContentFormat) (notif, <-chan notif, func()) {
	t.Helper()
	ts.mu.Lock()
	conn := ts.conn
	ts.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, err := conn.NewObserveRequest(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.ReleaseMessage(req)
	req.SetAccept(message.MediaType(f))
	ch := make(chan notif, 64)
	obs, err := conn.DoObserve(req, func(m *pool.Message) {
		n := notif{code: m.Code(), format: -1}
		if cf, err := m.ContentFormat(); err == nil {
			n.format = int(cf)
		}
		n.observe, _ = m.Observe()
		n.mid = m.MessageID()
		n.payload, _ = m.ReadBody()
		ch <- n
	})
	if err != nil {
		t.Fatalf("observe %s: %v", path, err)
	}
	first := nextNotif(t, ch)
	cancelObs := func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := obs.Cancel(ctx); err != nil {
			t.Errorf("cancel observation: %v", err)
		}
	}
	return first, ch, cancelObs
}

// reset sends an RST for the device's message mid, as a server that no
// longer wants a notification does.
func (ts *testServer) reset(t *testing.T, mid int32) {
	t.Helper()
	ts.mu.Lock()
	conn := ts.conn
	ts.mu.Unlock()
	m := conn.AcquireMessage(context.Background())
	defer conn.ReleaseMessage(m)
	m.SetType(message.Reset)
	m.SetCode(codes.Empty)
	m.SetMessageID(mid)
	// Straight to the session: go-coap's block-wise layer would copy the
	// message and give it a message ID of its own.
	cc, ok := conn.(*udpclient.Conn)
	if !ok {
		t.Fatalf("server connection is a %T", conn)
	}
	if err := cc.Session().WriteMessage(m); err != nil {
		t.Fatal(err)
	}
}

func nextNotif(t *testing.T, ch <-chan notif) notif {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(wait):
		t.Fatal("no notification")
		return notif{}
	}
}

// decodeValue decodes a payload and returns the value at p.
func decodeValue(t *testing.T, f int, base lwm2m.Path, payload []byte, p lwm2m.Path) any {
	t.Helper()
	recs, err := codec.Decode(lwm2m.ContentFormat(f), base, payload, Resolver())
	if err != nil {
		t.Fatalf("decode %d %s: %v (%q)", f, base, err, payload)
	}
	for _, r := range recs {
		if r.Path == p {
			return r.Value
		}
	}
	t.Fatalf("no %s in %v", p, recs)
	return nil
}

// fakeClock drives the device's notification timers from the test.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c     *fakeClock
	at    time.Time
	f     func()
	state int // 0 armed, 1 fired, 2 stopped
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	armed := t.state == 0
	if armed {
		t.state = 2
	}
	return armed
}

// Advance moves time forward by d, firing due timers in order, each at its
// own instant, synchronously.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var due *fakeTimer
		for _, t := range c.timers {
			if t.state == 0 && !t.at.After(target) && (due == nil || t.at.Before(due.at)) {
				due = t
			}
		}
		if due == nil {
			c.now = target
			c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t.state != 0 })
			c.mu.Unlock()
			return
		}
		due.state = 1
		if due.at.After(c.now) {
			c.now = due.at
		}
		c.mu.Unlock()
		due.f()
	}
}

// startDevice starts a device against ts with a fake clock and returns it
// once the server has seen its Register.
func startDevice(t *testing.T, ts *testServer, cfg Config) (*Device, *fakeClock) {
	t.Helper()
	if cfg.Endpoint == "" {
		cfg.Endpoint = "dev1"
	}
	cfg.Server = ts.addr
	d := New(cfg)
	clk := newFakeClock()
	d.clock = clk
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	if r := ts.next(t); r.path != "/rd" {
		t.Fatalf("first request %+v, want Register", r)
	}
	return d, clk
}

// notifyCount is how many notifications the device has queued so far; it
// is updated synchronously by Set, so tests can assert that none was sent.
func (d *Device) notifyCount() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.notifyCnt
}

func isServerError(err error, code codes.Code) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Code == code
}
