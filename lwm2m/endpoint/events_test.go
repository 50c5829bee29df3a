package endpoint

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// quietFor is how long a test listens to be sure an answer is held back.
// It never orders anything: the test has already seen the server take the
// message (the handler was entered), so an answer sent too early would be
// on its way already and arrive well within this.
const quietFor = 300 * time.Millisecond

// holder holds the event handler on every event that match accepts, until
// released.
type holder struct {
	entered chan Event
	release chan struct{}
	once    sync.Once
}

// holdEvents makes h's handler report each event match accepts on entered
// and then wait for release. It is released at the latest when the test
// ends, before the server is closed.
func holdEvents(t *testing.T, h *harness, match func(Event) bool) *holder {
	t.Helper()
	hd := &holder{entered: make(chan Event, 16), release: make(chan struct{})}
	f := func(ev Event) {
		if !match(ev) {
			return
		}
		hd.entered <- ev
		<-hd.release
	}
	h.before.Store(&f)
	t.Cleanup(hd.free)
	return hd
}

func (hd *holder) free() { hd.once.Do(func() { close(hd.release) }) }

// waitEntered returns the event the handler is held on.
func (hd *holder) waitEntered(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-hd.entered:
		return ev
	case <-time.After(waitFor):
		t.Fatalf("the handler got no held event within %v", waitFor)
		return Event{}
	}
}

// quiet fails the test if the server sends the device anything within
// quietFor.
func (d *wireDevice) quiet() {
	d.t.Helper()
	buf := make([]byte, 2048)
	if err := d.c.SetReadDeadline(time.Now().Add(quietFor)); err != nil {
		d.t.Fatal(err)
	}
	n, err := d.c.Read(buf)
	var ne net.Error
	switch {
	case err == nil:
		m := pool.NewMessage(context.Background())
		_, _ = m.UnmarshalWithDecoder(coder.DefaultCoder, buf[:n])
		d.t.Fatalf("the device got %v while the handler was held", m)
	case !errors.As(err, &ne) || !ne.Timeout():
		d.t.Fatalf("read: %v", err)
	}
}

// notification builds a notification of the device (2.05, text payload).
func (d *wireDevice) notification(typ message.Type, token []byte, seq uint32, payload string) *pool.Message {
	n := d.message(typ, codes.Content, token)
	n.SetObserve(seq)
	n.SetContentFormat(message.TextPlain)
	n.SetBody(strings.NewReader(payload))
	return n
}

// observe makes the server observe p on d and returns the observation's token.
func (d *wireDevice) observe(h *harness, id string, p lwm2m.Path) []byte {
	d.t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := h.srv.Observe(context.Background(), id, p)
		done <- err
	}()
	req := d.answer("21.5", 5)
	if err := <-done; err != nil {
		d.t.Fatalf("observe: %v", err)
	}
	return append([]byte(nil), req.Token()...)
}

// expectAnswer reads the server's next datagram and checks it answers m
// piggybacked (or, for code Empty, with an empty ACK).
func (d *wireDevice) expectAnswer(m *pool.Message, code codes.Code) *pool.Message {
	d.t.Helper()
	resp, _ := d.receive()
	if resp.Type() != message.Acknowledgement || resp.MessageID() != m.MessageID() || resp.Code() != code {
		d.t.Fatalf("answer %v, want an ACK %v of message %d", resp, code, m.MessageID())
	}
	return resp
}

// expectReset reads the server's next datagram and checks it is the Reset
// of m: an empty message of type RST with m's message ID.
func (d *wireDevice) expectReset(m *pool.Message) {
	d.t.Helper()
	resp, n := d.receive()
	if resp.Type() != message.Reset || resp.MessageID() != m.MessageID() || resp.Code() != codes.Empty || len(resp.Token()) != 0 || n != emptyACKSize {
		d.t.Fatalf("answer %v (%d bytes), want the Reset of message %d", resp, n, m.MessageID())
	}
}

func (d *wireDevice) update(id, query string) *pool.Message {
	d.t.Helper()
	u := d.message(message.Confirmable, codes.POST, []byte{5, 6})
	if err := u.SetPath("/rd/" + id); err != nil {
		d.t.Fatal(err)
	}
	if query != "" {
		u.AddQuery(query)
	}
	return u
}

// TestEventHandledBeforeDeviceIsAnswered: while the handler is busy with
// an event, the device that caused it hears nothing; its answer comes once
// the handler has returned. This is what makes a notification stored by
// the handler durable before the device is acknowledged.
func TestEventHandledBeforeDeviceIsAnswered(t *testing.T) {
	temp := lwm2m.ResourcePath(3303, 0, 5700)
	tests := []struct {
		name string
		typ  EventType
		// prepare readies the device and returns the message that causes
		// the held event.
		prepare func(t *testing.T, h *harness, d *wireDevice) *pool.Message
		want    codes.Code
		check   func(t *testing.T, ev Event)
	}{
		{
			name: "register", typ: EventRegistered, want: codes.Created,
			prepare: func(t *testing.T, h *harness, d *wireDevice) *pool.Message {
				m := d.message(message.Confirmable, codes.POST, []byte{1})
				if err := m.SetPath("/rd"); err != nil {
					t.Fatal(err)
				}
				m.AddQuery("ep=held-register")
				m.SetContentFormat(message.AppLinkFormat)
				m.SetBody(strings.NewReader("</3/0>"))
				return m
			},
			check: func(t *testing.T, ev Event) {
				if ev.Registration.Endpoint != "held-register" {
					t.Errorf("event %+v", ev.Registration)
				}
			},
		},
		{
			name: "update", typ: EventUpdated, want: codes.Changed,
			prepare: func(t *testing.T, h *harness, d *wireDevice) *pool.Message {
				id := d.register("held-update")
				h.waitEvent(t, EventRegistered)
				return d.update(id, "lt=600")
			},
			check: func(t *testing.T, ev Event) {
				if ev.Registration.Lifetime != 600 {
					t.Errorf("event %+v", ev.Registration)
				}
			},
		},
		{
			name: "confirmable notification", typ: EventNotify, want: codes.Empty,
			prepare: func(t *testing.T, h *harness, d *wireDevice) *pool.Message {
				id := d.register("held-notify")
				h.waitEvent(t, EventRegistered)
				tok := d.observe(h, id, temp)
				return d.notification(message.Confirmable, tok, 6, "22.5")
			},
			check: func(t *testing.T, ev Event) {
				if ev.Path != temp || len(ev.Records) != 1 || ev.Records[0].Value != 22.5 {
					t.Errorf("event %+v", ev)
				}
			},
		},
		{
			name: "deregister", typ: EventDeregistered, want: codes.Deleted,
			prepare: func(t *testing.T, h *harness, d *wireDevice) *pool.Message {
				id := d.register("held-deregister")
				h.waitEvent(t, EventRegistered)
				m := d.message(message.Confirmable, codes.DELETE, []byte{2})
				if err := m.SetPath("/rd/" + id); err != nil {
					t.Fatal(err)
				}
				return m
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startServer(t, Config{}, nil)
			d := newWireDevice(t, h.addr)
			m := tt.prepare(t, h, d)
			hd := holdEvents(t, h, func(ev Event) bool { return ev.Type == tt.typ })
			d.send(m)
			ev := hd.waitEntered(t)
			if tt.check != nil {
				tt.check(t, ev)
			}
			d.quiet()
			hd.free()
			d.expectAnswer(m, tt.want)
			if got := h.waitEvent(t, tt.typ); got.Registration.ID != ev.Registration.ID {
				t.Fatalf("handler finished with %+v", got.Registration)
			}
		})
	}
}

// TestEventsOrderedPerClient: one registration's events reach the handler
// one at a time and in order, from device messages on different sockets
// and from the expiry check alike, while another device's events go
// through meanwhile.
func TestEventsOrderedPerClient(t *testing.T) {
	h := startServer(t, Config{}, nil)
	a := newWireDevice(t, h.addr)
	id := a.register("ordered-a")
	h.waitEvent(t, EventRegistered)
	tok := a.observe(h, id, lwm2m.ResourcePath(3303, 0, 5700))
	hd := holdEvents(t, h, func(ev Event) bool { return ev.Type == EventNotify })

	// nextOfA returns a's next event, skipping other clients'.
	nextOfA := func() EventType {
		t.Helper()
		deadline := time.After(waitFor)
		for {
			select {
			case ev := <-h.events:
				if ev.Registration.ID == id {
					return ev.Type
				}
			case <-deadline:
				t.Fatalf("no event of a within %v", waitFor)
			}
		}
	}

	// The same device from a new address (a NAT rebinding) while its
	// notification is being handled: the Update is applied, but its
	// event, and so its answer, wait for the notification's.
	n := a.notification(message.Confirmable, tok, 6, "22.5")
	a.send(n)
	hd.waitEntered(t)
	a2 := newWireDevice(t, h.addr)
	u := a2.update(id, "lt=600")
	a2.send(u)
	a2.quiet()
	// Another device is not held up by a's handler.
	b := newWireDevice(t, h.addr)
	bID := b.register("ordered-b")
	if ev := h.waitEvent(t, EventRegistered); ev.Registration.ID != bID {
		t.Fatalf("registered %+v, want b", ev.Registration)
	}
	hd.release <- struct{}{}
	a.expectAnswer(n, codes.Empty)
	a2.expectAnswer(u, codes.Changed)
	if got := []EventType{nextOfA(), nextOfA()}; got[0] != EventNotify || got[1] != EventUpdated {
		t.Fatalf("a's events %v, want notify, updated", got)
	}

	// The expiry check, too, waits its turn (its clock is two days
	// ahead, so it expires a and b).
	n = a2.notification(message.Confirmable, tok, 7, "23")
	a2.send(n)
	hd.waitEntered(t)
	expired := make(chan struct{})
	go func() {
		defer close(expired)
		h.srv.expire(context.Background(), time.Now().Add(48*time.Hour))
	}()
	a2.quiet()
	select {
	case <-expired:
		t.Fatal("the expiry check finished while a's notification was being handled")
	default:
	}
	hd.free()
	a2.expectAnswer(n, codes.Empty)
	<-expired
	if got := []EventType{nextOfA(), nextOfA()}; got[0] != EventNotify || got[1] != EventExpired {
		t.Fatalf("a's events %v, want notify, expired", got)
	}
}

// TestPassiveCancelWithReset: a notification whose token the server does
// not know gets a Reset with its message ID, so that the device ends the
// observation (RFC 7641 §3.6); known tokens are acknowledged as usual.
func TestPassiveCancelWithReset(t *testing.T) {
	h := startServer(t, Config{}, nil)
	d := newWireDevice(t, h.addr)
	id := d.register("passive")
	h.waitEvent(t, EventRegistered)
	tok := d.observe(h, id, lwm2m.ResourcePath(3303, 0, 5700))
	stranger := newWireDevice(t, h.addr) // never registered
	unknown := []byte{0xde, 0xad, 0xbe, 0xef}

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"confirmable, unknown token", func(t *testing.T) {
			m := d.notification(message.Confirmable, unknown, 7, "1")
			d.send(m)
			d.expectReset(m)
			// A retransmission (the Reset was lost) is reset again, not
			// answered from go-coap's deduplication cache with an ACK.
			d.send(m)
			d.expectReset(m)
		}},
		{"non-confirmable, unknown token", func(t *testing.T) {
			m := d.notification(message.NonConfirmable, unknown, 8, "1")
			d.send(m)
			d.expectReset(m)
		}},
		{"error notification, unknown token", func(t *testing.T) {
			m := d.message(message.Confirmable, codes.NotFound, unknown)
			d.send(m)
			d.expectReset(m)
		}},
		{"unregistered device", func(t *testing.T) {
			m := stranger.notification(message.Confirmable, unknown, 1, "1")
			stranger.send(m)
			stranger.expectReset(m)
		}},
		{"confirmable, known token", func(t *testing.T) {
			m := d.notification(message.Confirmable, tok, 9, "23")
			d.send(m)
			d.expectAnswer(m, codes.Empty)
			h.waitEvent(t, EventNotify)
		}},
		{"non-confirmable, known token", func(t *testing.T) {
			m := d.notification(message.NonConfirmable, tok, 10, "24")
			d.send(m)
			h.waitEvent(t, EventNotify)
			// Nothing answers it: the next datagram is the answer to
			// the next message (go-coap serves a device in order).
			next := d.notification(message.Confirmable, tok, 11, "25")
			d.send(next)
			d.expectAnswer(next, codes.Empty)
			h.waitEvent(t, EventNotify)
		}},
		{"late piggybacked answer", func(t *testing.T) {
			// An ACK for no request of ours is dropped, not reset.
			late := d.message(message.Acknowledgement, codes.Content, unknown)
			d.send(late)
			next := d.notification(message.Confirmable, tok, 12, "26")
			d.send(next)
			d.expectAnswer(next, codes.Empty)
			h.waitEvent(t, EventNotify)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
	h.noEvent(t, EventNotify)
}

// TestPassiveCancelAfterRestart: after a restart, stored observations are
// still routed (and acknowledged), and an unknown token is reset only once
// the server can be sure it is not one of its stored observations.
func TestPassiveCancelAfterRestart(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	h := startServer(t, Config{}, st)
	a := newWireDevice(t, h.addr)
	aID := a.register("restart-a")
	h.waitEvent(t, EventRegistered)
	tok := a.observe(h, aID, lwm2m.ResourcePath(3303, 0, 5700))
	b := newWireDevice(t, h.addr)
	b.register("restart-b")
	h.waitEvent(t, EventRegistered)

	addr := h.addr
	if err := h.srv.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := startServer(t, Config{Addr: addr}, st)
	unknown := []byte{0xde, 0xad, 0xbe, 0xef}

	// a's stored observation is found and acknowledged.
	n := a.notification(message.Confirmable, tok, 6, "30")
	a.send(n)
	a.expectAnswer(n, codes.Empty)
	if ev := h2.waitEvent(t, EventNotify); ev.Registration.ID != aID || ev.Records[0].Value != 30.0 {
		t.Fatalf("notify after restart %+v", ev)
	}

	// A device at an unknown address might be b since moved, whose
	// observations are not loaded yet: no Reset, only the ACK.
	stranger := newWireDevice(t, h2.addr)
	m := stranger.notification(message.Confirmable, unknown, 1, "1")
	stranger.send(m)
	stranger.expectAnswer(m, codes.Empty)

	// b's unknown token is checked against b's stored observations: reset.
	m = b.notification(message.Confirmable, unknown, 1, "1")
	b.send(m)
	b.expectReset(m)

	// Now every stored observation is known: the stranger is reset too.
	m = stranger.notification(message.Confirmable, unknown, 2, "1")
	stranger.send(m)
	stranger.expectReset(m)
	h2.noEvent(t, EventNotify)
}
