package endpoint

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// wireDevice is a device on a bare UDP socket, so that the test sees the
// exact datagrams in both directions and can check the counters against
// their sizes.
type wireDevice struct {
	t   *testing.T
	c   *net.UDPConn
	mid uint16
	// want is the traffic the device has seen so far, from its side:
	// what it received is what the server sent.
	want lwm2m.Traffic
}

func newWireDevice(t *testing.T, serverAddr string) *wireDevice {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wireDevice{t: t, c: c, mid: 0x100}
}

// message builds a message of the device with a fresh message ID.
func (d *wireDevice) message(typ message.Type, code codes.Code, token []byte) *pool.Message {
	d.mid++
	m := pool.NewMessage(context.Background())
	m.SetType(typ)
	m.SetCode(code)
	m.SetMessageID(int32(d.mid))
	m.SetToken(token)
	return m
}

// send writes m and returns its datagram size.
func (d *wireDevice) send(m *pool.Message) int64 {
	d.t.Helper()
	b, err := m.MarshalWithEncoder(coder.DefaultCoder)
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.c.Write(b); err != nil {
		d.t.Fatal(err)
	}
	return int64(len(b))
}

// receive reads the next datagram from the server.
func (d *wireDevice) receive() (*pool.Message, int64) {
	d.t.Helper()
	buf := make([]byte, 2048)
	if err := d.c.SetReadDeadline(time.Now().Add(waitFor)); err != nil {
		d.t.Fatal(err)
	}
	n, err := d.c.Read(buf)
	if err != nil {
		d.t.Fatalf("read: %v", err)
	}
	m := pool.NewMessage(context.Background())
	if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, buf[:n]); err != nil {
		d.t.Fatal(err)
	}
	return m, int64(n)
}

// request sends a confirmable request to the server and returns its
// piggybacked answer, adding the exchange to want.
func (d *wireDevice) request(m *pool.Message) *pool.Message {
	d.t.Helper()
	d.want.BytesReceived += d.send(m)
	resp, n := d.receive()
	if resp.Type() != message.Acknowledgement || resp.MessageID() != m.MessageID() {
		d.t.Fatalf("answer %v, want the piggybacked ACK of message %d", resp, m.MessageID())
	}
	d.want.BytesSent += n
	d.want.TransactionCount++
	return resp
}

// answer receives a request from the server and answers it piggybacked
// with a text payload and, when observe >= 0, an Observe option.
func (d *wireDevice) answer(payload string, observe int) *pool.Message {
	d.t.Helper()
	req, n := d.receive()
	d.want.BytesSent += n
	resp := pool.NewMessage(context.Background())
	resp.SetType(message.Acknowledgement)
	resp.SetMessageID(req.MessageID())
	resp.SetToken(req.Token())
	resp.SetCode(codes.Content)
	if observe >= 0 {
		resp.SetObserve(uint32(observe))
	}
	resp.SetContentFormat(message.TextPlain)
	resp.SetBody(strings.NewReader(payload))
	d.want.BytesReceived += d.send(resp)
	d.want.TransactionCount++
	return req
}

func (d *wireDevice) register(ep string) string {
	d.t.Helper()
	m := d.message(message.Confirmable, codes.POST, []byte{1, 2, 3, 4})
	if err := m.SetPath("/rd"); err != nil {
		d.t.Fatal(err)
	}
	m.AddQuery("ep=" + ep)
	m.AddQuery("lwm2m=1.1")
	m.SetContentFormat(message.AppLinkFormat)
	m.SetBody(strings.NewReader("</3/0>,</3303/0>"))
	resp := d.request(m)
	loc, err := resp.Options().LocationPath()
	if resp.Code() != codes.Created || err != nil {
		d.t.Fatalf("register: %v %v", resp.Code(), err)
	}
	return strings.TrimPrefix(loc, "/rd/")
}

func checkTraffic(t *testing.T, what string, got, want lwm2m.Traffic) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: traffic %+v, want %+v", what, got, want)
	}
}

// TestTrafficCounting checks the counters against the exact datagrams of
// every kind of exchange: device requests, downlink requests, an
// observation and its notifications, across a re-register.
func TestTrafficCounting(t *testing.T) {
	h := startServer(t, Config{}, nil)
	ctx := context.Background()
	d := newWireDevice(t, h.addr)

	id := d.register("traffic")
	h.waitEvent(t, EventRegistered)
	checkTraffic(t, "after register", h.srv.ClientTraffic(id), d.want)
	if d.want.BytesReceived < int64(len("</3/0>,</3303/0>")) || d.want.BytesSent <= 4 {
		t.Fatalf("implausible register sizes %+v", d.want)
	}

	// A downlink Read: our request out, the device's answer in.
	type result struct {
		recs []lwm2m.Record
		err  error
	}
	done := make(chan result, 1)
	go func() {
		recs, err := h.srv.Read(ctx, id, lwm2m.ResourcePath(3, 0, 0))
		done <- result{recs, err}
	}()
	const manufacturer = "Acme Sensors Incorporated"
	before := d.want
	d.answer(manufacturer, -1)
	if r := <-done; r.err != nil || len(r.recs) != 1 || r.recs[0].Value != manufacturer {
		t.Fatalf("read: %+v %v", r.recs, r.err)
	}
	checkTraffic(t, "after read", h.srv.ClientTraffic(id), d.want)
	if got := d.want.BytesReceived - before.BytesReceived; got <= int64(len(manufacturer)) {
		t.Fatalf("read answer counted as %d bytes, less than its payload", got)
	}

	// An observation and two notifications, confirmable and not.
	go func() {
		recs, err := h.srv.Observe(ctx, id, lwm2m.ResourcePath(3303, 0, 5700))
		done <- result{recs, err}
	}()
	obsReq := d.answer("21.5", 5)
	if r := <-done; r.err != nil {
		t.Fatalf("observe: %v", r.err)
	}
	checkTraffic(t, "after observe", h.srv.ClientTraffic(id), d.want)

	for i, typ := range []message.Type{message.Confirmable, message.NonConfirmable} {
		n := d.message(typ, codes.Content, obsReq.Token())
		n.SetObserve(uint32(6 + i))
		n.SetContentFormat(message.TextPlain)
		n.SetBody(strings.NewReader("22.5"))
		d.want.BytesReceived += d.send(n)
		d.want.TransactionCount++
		if typ == message.Confirmable {
			ack, size := d.receive()
			if ack.Type() != message.Acknowledgement || ack.Code() != codes.Empty || size != emptyACKSize {
				t.Fatalf("notification answered with %v (%d bytes), want an empty ACK", ack, size)
			}
			d.want.BytesSent += size
		}
		h.waitEvent(t, EventNotify)
		checkTraffic(t, "after notification "+typ.String(), h.srv.ClientTraffic(id), d.want)
	}

	// An Update, then a re-register: the same ID, the counters go on.
	u := d.message(message.Confirmable, codes.POST, []byte{5, 6})
	if err := u.SetPath("/rd/" + id); err != nil {
		t.Fatal(err)
	}
	u.AddQuery("lt=300")
	if resp := d.request(u); resp.Code() != codes.Changed {
		t.Fatalf("update: %v", resp.Code())
	}
	h.waitEvent(t, EventUpdated)
	if again := d.register("traffic"); again != id {
		t.Fatalf("re-register gave ID %q, want %q", again, id)
	}
	h.waitEvent(t, EventRegistered)
	checkTraffic(t, "after re-register", h.srv.ClientTraffic(id), d.want)
	if d.want.TransactionCount != 7 {
		t.Fatalf("%d transactions counted by the test, want 7", d.want.TransactionCount)
	}

	// The organisation sums its clients; other organisations see nothing.
	other := newWireDevice(t, h.addr)
	otherID := other.register("traffic-2")
	h.waitEvent(t, EventRegistered)
	sum := func() lwm2m.Traffic {
		return lwm2m.Traffic{
			BytesSent:        d.want.BytesSent + other.want.BytesSent,
			BytesReceived:    d.want.BytesReceived + other.want.BytesReceived,
			TransactionCount: d.want.TransactionCount + other.want.TransactionCount,
		}
	}
	checkTraffic(t, "second client", h.srv.ClientTraffic(otherID), other.want)
	checkTraffic(t, "organisation", h.srv.OrganisationTraffic("org1"), sum())
	checkTraffic(t, "other organisation", h.srv.OrganisationTraffic("org2"), lwm2m.Traffic{})

	// A request for no registration counts nowhere.
	bogus := other.message(message.Confirmable, codes.POST, []byte{7})
	if err := bogus.SetPath("/rd/nosuchid"); err != nil {
		t.Fatal(err)
	}
	other.send(bogus)
	if resp, _ := other.receive(); resp.Code() != codes.NotFound {
		t.Fatalf("update of unknown ID: %v", resp.Code())
	}
	checkTraffic(t, "after a rejected update", h.srv.OrganisationTraffic("org1"), sum())

	// De-registration ends the client's counters, not the organisation's.
	dereg := d.message(message.Confirmable, codes.DELETE, []byte{8})
	if err := dereg.SetPath("/rd/" + id); err != nil {
		t.Fatal(err)
	}
	if resp := d.request(dereg); resp.Code() != codes.Deleted {
		t.Fatalf("deregister: %v", resp.Code())
	}
	h.waitEvent(t, EventDeregistered)
	checkTraffic(t, "deregistered client", h.srv.ClientTraffic(id), lwm2m.Traffic{})
	checkTraffic(t, "organisation after deregister", h.srv.OrganisationTraffic("org1"), sum())
}

// TestTrafficUnansweredRequest: a request the device never answers counts
// its bytes but no transaction.
func TestTrafficUnansweredRequest(t *testing.T) {
	h := startServer(t, Config{RequestTimeout: 300 * time.Millisecond}, nil)
	d := newWireDevice(t, h.addr)
	id := d.register("silent-traffic")
	h.waitEvent(t, EventRegistered)
	done := make(chan error, 1)
	go func() {
		_, err := h.srv.Read(context.Background(), id, lwm2m.ResourcePath(3, 0, 0))
		done <- err
	}()
	_, n := d.receive()
	if err := <-done; err == nil {
		t.Fatal("read of a silent device succeeded")
	}
	d.want.BytesSent += n
	checkTraffic(t, "after unanswered read", h.srv.ClientTraffic(id), d.want)
	checkTraffic(t, "organisation", h.srv.OrganisationTraffic("org1"), d.want)
}
