package main

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// rawServer is a scripted CoAP peer on a bare UDP socket, for the exchanges
// a go-coap server does not produce on demand (separate responses, resets,
// silence, its own requests in the middle of an exchange).
type rawServer struct {
	t  *testing.T
	pc net.PacketConn
}

func newRawServer(t *testing.T) *rawServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return &rawServer{t: t, pc: pc}
}

func (r *rawServer) addr() *net.UDPAddr { return r.pc.LocalAddr().(*net.UDPAddr) }

// recv returns the next datagram, decoded. The deadline is only a
// watchdog, so that a broken client fails the test instead of hanging it.
func (r *rawServer) recv() (message.Message, []byte, net.Addr, error) {
	buf := make([]byte, 2048)
	_ = r.pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := r.pc.ReadFrom(buf)
	if err != nil {
		return message.Message{}, nil, nil, err
	}
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
		return message.Message{}, buf[:n], from, err
	}
	return m, buf[:n], from, nil
}

func (r *rawServer) send(to net.Addr, m message.Message) {
	buf := make([]byte, 1500)
	n, err := coder.DefaultCoder.Encode(m, buf)
	if err != nil {
		r.t.Errorf("encode: %v", err)
		return
	}
	if _, err := r.pc.WriteTo(buf[:n], to); err != nil {
		r.t.Errorf("write: %v", err)
	}
}

// script runs f against the server in the background; the returned
// function waits for it.
func (r *rawServer) script(f func()) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	return func() { <-done }
}

func dialLean(t *testing.T, server *net.UDPAddr) *leanDevice {
	t.Helper()
	d := &leanDevice{}
	if err := d.dial(server); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

func TestLeanSeparateResponseAndServerRequest(t *testing.T) {
	rs := newRawServer(t)
	d := dialLean(t, rs.addr())
	wait := rs.script(func() {
		req, _, from, err := rs.recv()
		if err != nil {
			t.Errorf("register: %v", err)
			return
		}
		path, _ := req.Options.Path()
		qs, _ := req.Options.Queries()
		cf, _ := req.Options.ContentFormat()
		if req.Type != message.Confirmable || req.Code != codes.POST || path != "/rd" || cf != message.AppLinkFormat ||
			!slices.Equal(qs, []string{"ep=dev-7", "lt=60", "lwm2m=1.1", "b=U"}) ||
			string(req.Payload) != `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303/0>` {
			t.Errorf("register request %v %q %v %q", req.Code, path, qs, req.Payload)
		}
		// Empty ACK now, the response later.
		rs.send(from, message.Message{Type: message.Acknowledgement, Code: codes.Empty, MessageID: req.MessageID})
		// Meanwhile the server asks the device something; it must be
		// answered so that the server does not wait for it.
		rs.send(from, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 100, Token: []byte("srv"),
			Options: message.Options{{ID: message.URIPath, Value: []byte("3")}, {ID: message.URIPath, Value: []byte("0")}}})
		ans, _, _, err := rs.recv()
		if err != nil || ans.Type != message.Acknowledgement || ans.Code != codes.Content || ans.MessageID != 100 || string(ans.Token) != "srv" {
			t.Errorf("answer to the server's GET: %v %v", ans.String(), err)
		}
		rs.send(from, message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 103, Token: []byte("srv2"),
			Options: message.Options{{ID: message.URIPath, Value: []byte("5")}, {ID: message.URIPath, Value: []byte("0")}}})
		ans, _, _, err = rs.recv()
		if err != nil || ans.Type != message.Acknowledgement || ans.Code != codes.NotFound || ans.MessageID != 103 || string(ans.Token) != "srv2" {
			t.Errorf("answer to the server's GET of another object: %v %v", ans.String(), err)
		}
		// A stray non-confirmable message and a stale ACK are ignored.
		rs.send(from, message.Message{Type: message.NonConfirmable, Code: codes.Content, MessageID: 101, Token: []byte("other")})
		rs.send(from, message.Message{Type: message.Acknowledgement, Code: codes.Created, MessageID: int32(uint16(req.MessageID) - 1), Token: req.Token})
		rs.send(from, message.Message{Type: message.Confirmable, Code: codes.Created, MessageID: 102, Token: req.Token,
			Options: message.Options{{ID: message.LocationPath, Value: []byte("rd")}, {ID: message.LocationPath, Value: []byte("abc")}}})
		ack, _, _, err := rs.recv()
		if err != nil || ack.Type != message.Acknowledgement || ack.Code != codes.Empty || ack.MessageID != 102 {
			t.Errorf("ACK of the separate response: %v %v", ack.String(), err)
		}

		del, _, from, err := rs.recv()
		if err != nil {
			t.Errorf("deregister: %v", err)
			return
		}
		path, _ = del.Options.Path()
		if del.Type != message.Confirmable || del.Code != codes.DELETE || path != "/rd/abc" || del.MessageID != int32(uint16(req.MessageID)+1) {
			t.Errorf("deregister request %v", del.String())
		}
		rs.send(from, message.Message{Type: message.Acknowledgement, Code: codes.Deleted, MessageID: del.MessageID, Token: del.Token})
	})
	defer wait()

	xc := exchangeConfig{Timeout: 10 * time.Second}
	s := newScratch()
	if err := d.register(context.Background(), s, xc, "dev-7", 60, "1.1"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.loc, []string{"rd", "abc"}) {
		t.Errorf("location %q", d.loc)
	}
	if err := d.deregister(context.Background(), s, xc); err != nil {
		t.Fatal(err)
	}
	if d.loc != nil {
		t.Errorf("still registered at %q", d.loc)
	}
}

func TestLeanRetransmitsSameMessage(t *testing.T) {
	rs := newRawServer(t)
	d := dialLean(t, rs.addr())
	wait := rs.script(func() {
		var first []byte
		for i := range 3 {
			m, raw, from, err := rs.recv()
			if err != nil {
				t.Errorf("transmission %d: %v", i+1, err)
				return
			}
			if first == nil {
				first = raw
			} else if string(raw) != string(first) {
				t.Errorf("retransmission %d differs: % x vs % x", i, raw, first)
			}
			if i == 2 { // the second retransmission gets through
				rs.send(from, message.Message{Type: message.Acknowledgement, Code: codes.Created, MessageID: m.MessageID, Token: m.Token,
					Options: message.Options{{ID: message.LocationPath, Value: []byte("rd")}, {ID: message.LocationPath, Value: []byte("x")}}})
			}
		}
	})
	defer wait()
	err := d.register(context.Background(), newScratch(), exchangeConfig{Timeout: 10 * time.Second, AckTimeout: 10 * time.Millisecond}, "dev", 60, "1.0")
	if err != nil {
		t.Fatal(err)
	}
}

func TestLeanRenumbersAfterStaleAnswer(t *testing.T) {
	rs := newRawServer(t)
	d := dialLean(t, rs.addr())
	wait := rs.script(func() {
		req, _, from, err := rs.recv()
		if err != nil {
			t.Error(err)
			return
		}
		// What go-coap's deduplication cache sends when a previous socket
		// on the same port used this message ID: an old answer.
		rs.send(from, message.Message{Type: message.Acknowledgement, Code: codes.Deleted, MessageID: req.MessageID, Token: []byte("old")})
		again, _, from, err := rs.recv()
		if err != nil {
			t.Error(err)
			return
		}
		if again.MessageID != int32(uint16(req.MessageID)+1) || string(again.Token) != string(req.Token) || string(again.Payload) != string(req.Payload) {
			t.Errorf("resent as %v, first %v", again.String(), req.String())
		}
		rs.send(from, message.Message{Type: message.Acknowledgement, Code: codes.Created, MessageID: again.MessageID, Token: again.Token,
			Options: message.Options{{ID: message.LocationPath, Value: []byte("rd")}, {ID: message.LocationPath, Value: []byte("y")}}})
	})
	defer wait()
	if err := d.register(context.Background(), newScratch(), exchangeConfig{Timeout: 10 * time.Second}, "dev", 60, "1.1"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.loc, []string{"rd", "y"}) {
		t.Errorf("location %q", d.loc)
	}
}

func TestLeanGivesUpAfterMaxRetransmit(t *testing.T) {
	rs := newRawServer(t)
	d := dialLean(t, rs.addr())
	got := make(chan int, 1)
	wait := rs.script(func() {
		n := 0
		for {
			_, raw, _, err := rs.recv()
			if string(raw) == "end" { // not CoAP: check before err
				got <- n
				return
			}
			if err != nil {
				t.Errorf("after %d transmissions: %v", n, err)
				return
			}
			n++
		}
	})
	defer wait()
	err := d.register(context.Background(), newScratch(), exchangeConfig{Timeout: 10 * time.Second, AckTimeout: 2 * time.Millisecond}, "dev", 60, "1.1")
	if !errors.Is(err, errNoResponse) || err.Error() != "sim: register: no response after 5 transmissions" {
		t.Errorf("err %v", err)
	}
	// Datagrams from one socket over loopback arrive in order, so the
	// marker comes after every transmission.
	if _, err := d.conn.Write([]byte("end")); err != nil {
		t.Fatal(err)
	}
	wait()
	select {
	case n := <-got:
		if n != 1+maxRetransmit {
			t.Errorf("%d transmissions, want %d", n, 1+maxRetransmit)
		}
	default:
		t.Error("the end marker never arrived")
	}
}

func TestLeanFailures(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer func(req message.Message) message.Message
		want   string
	}{
		{"reset", func(req message.Message) message.Message {
			return message.Message{Type: message.Reset, Code: codes.Empty, MessageID: req.MessageID}
		}, "sim: register: reset by the server"},
		{"refused", func(req message.Message) message.Message {
			return message.Message{Type: message.Acknowledgement, Code: codes.BadRequest, MessageID: req.MessageID, Token: req.Token, Payload: []byte("no ep")}
		}, "sim: register: server answered 4.00: no ep"},
		{"no location", func(req message.Message) message.Message {
			return message.Message{Type: message.Acknowledgement, Code: codes.Created, MessageID: req.MessageID, Token: req.Token}
		}, "sim: register: 2.01 without Location-Path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := newRawServer(t)
			d := dialLean(t, rs.addr())
			wait := rs.script(func() {
				req, _, from, err := rs.recv()
				if err != nil {
					t.Error(err)
					return
				}
				rs.send(from, c.answer(req))
			})
			defer wait()
			err := d.register(context.Background(), newScratch(), exchangeConfig{Timeout: 10 * time.Second}, "dev", 60, "1.1")
			if err == nil || err.Error() != c.want {
				t.Errorf("err %v, want %q", err, c.want)
			}
			var se *sim.ServerError
			if errors.As(err, &se) != (c.name == "refused") {
				t.Errorf("err %T", err)
			}
			if d.loc != nil {
				t.Errorf("registered at %q", d.loc)
			}
		})
	}
}

func TestLeanCancelWakesRead(t *testing.T) {
	rs := newRawServer(t)
	d := dialLean(t, rs.addr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel once the request is out; with an hour's ACK timeout, only the
	// cancellation can end the wait.
	wait := rs.script(func() {
		if _, _, _, err := rs.recv(); err != nil {
			t.Error(err)
		}
		cancel()
	})
	defer wait()
	errc := make(chan error, 1)
	go func() {
		errc <- d.register(ctx, newScratch(), exchangeConfig{Timeout: time.Hour, AckTimeout: time.Hour}, "dev", 60, "1.1")
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "sim: register: ") {
			t.Errorf("err %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("register did not return after cancellation")
	}
}

// registerLean registers d with rs (which answers 2.01) and returns the
// device's address as rs sees it.
func registerLean(t *testing.T, rs *rawServer, d *leanDevice, ep, version string) net.Addr {
	t.Helper()
	from := make(chan net.Addr, 1)
	wait := rs.script(func() {
		req, _, addr, err := rs.recv()
		if err != nil {
			t.Errorf("register: %v", err)
			return
		}
		rs.send(addr, message.Message{Type: message.Acknowledgement, Code: codes.Created, MessageID: req.MessageID, Token: req.Token,
			Options: message.Options{{ID: message.LocationPath, Value: []byte("rd")}, {ID: message.LocationPath, Value: []byte("id")}}})
		from <- addr
	})
	if err := d.register(context.Background(), newScratch(), exchangeConfig{Timeout: 10 * time.Second}, ep, 60, version); err != nil {
		t.Fatal(err)
	}
	wait()
	return <-from
}

func pathOpts(segs ...string) message.Options {
	opts := make(message.Options, 0, len(segs)+1)
	for _, s := range segs {
		opts = append(opts, message.Option{ID: message.URIPath, Value: []byte(s)})
	}
	return opts
}

func acceptOpt(cf lwm2m.ContentFormat) message.Option {
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, uint32(cf))
	return message.Option{ID: message.Accept, Value: buf[:n]}
}

// TestLeanServesObject3: between exchanges a registered lean device
// answers the server's reads of object 3 (the server reads it after every
// registration) and turns everything else away.
func TestLeanServesObject3(t *testing.T) {
	identity := map[lwm2m.Path]any{
		lwm2m.ResourcePath(3, 0, 0): leanManufacturer,
		lwm2m.ResourcePath(3, 0, 1): leanModel,
		lwm2m.ResourcePath(3, 0, 2): "dev-9",
		lwm2m.ResourcePath(3, 0, 3): leanFirmware,
	}
	tests := []struct {
		name    string
		version string
		req     message.Message // MessageID and Token are filled in
		code    codes.Code
		cf      lwm2m.ContentFormat // of a 2.05
		base    lwm2m.Path          // to decode a 2.05
		want    int                 // records of a 2.05
	}{
		{name: "instance, SenML JSON", version: "1.1", code: codes.Content, cf: lwm2m.FormatSenMLJSON, base: lwm2m.InstancePath(3, 0), want: 4,
			req: message.Message{Type: message.Confirmable, Code: codes.GET, Options: append(pathOpts("3", "0"), acceptOpt(lwm2m.FormatSenMLJSON))}},
		{name: "instance, TLV", version: "1.1", code: codes.Content, cf: lwm2m.FormatTLV, base: lwm2m.InstancePath(3, 0), want: 4,
			req: message.Message{Type: message.Confirmable, Code: codes.GET, Options: append(pathOpts("3", "0"), acceptOpt(lwm2m.FormatTLV))}},
		{name: "instance, 1.0 default TLV", version: "1.0", code: codes.Content, cf: lwm2m.FormatTLV, base: lwm2m.InstancePath(3, 0), want: 4,
			req: message.Message{Type: message.Confirmable, Code: codes.GET, Options: pathOpts("3", "0")}},
		{name: "instance, 1.1 default SenML JSON", version: "1.1", code: codes.Content, cf: lwm2m.FormatSenMLJSON, base: lwm2m.InstancePath(3, 0), want: 4,
			req: message.Message{Type: message.Confirmable, Code: codes.GET, Options: pathOpts("3", "0")}},
		{name: "non-confirmable", version: "1.1", code: codes.Content, cf: lwm2m.FormatSenMLJSON, base: lwm2m.InstancePath(3, 0), want: 4,
			req: message.Message{Type: message.NonConfirmable, Code: codes.GET, Options: pathOpts("3", "0")}},
		{name: "object", version: "1.1", code: codes.Content, cf: lwm2m.FormatSenMLJSON, base: lwm2m.ObjectPath(3), want: 4,
			req: message.Message{Type: message.Confirmable, Code: codes.GET, Options: pathOpts("3")}},
		{name: "serial number as text", version: "1.1", code: codes.Content, cf: lwm2m.FormatText, base: lwm2m.ResourcePath(3, 0, 2), want: 1,
			req: message.Message{Type: message.Confirmable, Code: codes.GET, Options: pathOpts("3", "0", "2")}},
		{name: "unsupported format", version: "1.1", code: codes.NotAcceptable,
			req: message.Message{Type: message.Confirmable, Code: codes.GET, Options: append(pathOpts("3", "0"), acceptOpt(lwm2m.FormatSenMLCBOR))}},
		{name: "other resource", version: "1.1", code: codes.NotFound,
			req: message.Message{Type: message.Confirmable, Code: codes.GET, Options: pathOpts("3", "0", "9")}},
		{name: "other object", version: "1.1", code: codes.NotFound,
			req: message.Message{Type: message.Confirmable, Code: codes.GET, Options: pathOpts("3303", "0")}},
		{name: "execute", version: "1.1", code: codes.NotFound,
			req: message.Message{Type: message.Confirmable, Code: codes.POST, Options: pathOpts("3", "0", "4")}},
		{name: "ping", version: "1.1", code: codes.Empty,
			req: message.Message{Type: message.Confirmable, Code: codes.Empty}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := newRawServer(t)
			d := dialLean(t, rs.addr())
			from := registerLean(t, rs, d, "dev-9", tt.version)
			d.serve()

			req := tt.req
			req.MessageID = 0x4242
			if req.Code != codes.Empty {
				req.Token = []byte("srv")
			}
			rs.send(from, req)
			ans, _, _, err := rs.recv()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case req.Code == codes.Empty: // a ping is reset
				if ans.Type != message.Reset || ans.MessageID != req.MessageID {
					t.Fatalf("answer %v, want the Reset of the ping", ans.String())
				}
				return
			case req.Type == message.Confirmable:
				if ans.Type != message.Acknowledgement || ans.MessageID != req.MessageID {
					t.Fatalf("answer %v, want piggybacked in the ACK", ans.String())
				}
			default:
				if ans.Type != message.NonConfirmable {
					t.Fatalf("answer %v, want non-confirmable", ans.String())
				}
			}
			if ans.Code != tt.code || string(ans.Token) != "srv" {
				t.Fatalf("answer %v, want %v with the request's token", ans.String(), tt.code)
			}
			if tt.code != codes.Content {
				return
			}
			cf, err := ans.Options.ContentFormat()
			if err != nil || lwm2m.ContentFormat(cf) != tt.cf {
				t.Fatalf("content format %v %v, want %v", cf, err, tt.cf)
			}
			recs, err := codec.Decode(tt.cf, tt.base, ans.Payload, device3{})
			if err != nil || len(recs) != tt.want {
				t.Fatalf("payload %q: %+v %v", ans.Payload, recs, err)
			}
			for _, r := range recs {
				if identity[r.Path] != r.Value {
					t.Errorf("%v = %v, want %v", r.Path, r.Value, identity[r.Path])
				}
			}

			// Serving stops for the next exchange, which reads the socket.
			d.stopServing()
			wait := rs.script(func() {
				del, _, addr, err := rs.recv()
				if err != nil {
					t.Errorf("deregister: %v", err)
					return
				}
				rs.send(addr, message.Message{Type: message.Acknowledgement, Code: codes.Deleted, MessageID: del.MessageID, Token: del.Token})
			})
			defer wait()
			if err := d.deregister(context.Background(), newScratch(), exchangeConfig{Timeout: 10 * time.Second}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// device3 types resources 0-3 of object 3 (strings), so that TLV decodes
// to the values written.
type device3 struct{}

func (device3) ResourceType(o, r uint16) (lwm2m.DataType, bool, bool) {
	if o == 3 && r <= 3 {
		return lwm2m.TypeString, false, true
	}
	return lwm2m.TypeNone, false, false
}
