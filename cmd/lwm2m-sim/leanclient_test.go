package main

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

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
		if err != nil || ans.Type != message.Acknowledgement || ans.Code != codes.NotFound || ans.MessageID != 100 || string(ans.Token) != "srv" {
			t.Errorf("answer to the server's GET: %v %v", ans.String(), err)
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
