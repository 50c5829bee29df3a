package main

import (
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

// TestDeviceAnswersTheServer: Read of /3/0 (SenML JSON), Write-Attributes,
// Observe (with the Observe option, and the token then used by notify),
// and 4.04 for anything else.
func TestDeviceAnswersTheServer(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d := newDevice(0, "t")
	if d.conn, err = net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	defer d.close()
	go d.serve()
	devAddr := d.conn.LocalAddr().(*net.UDPAddr)

	var mid int32
	exchange := func(code codes.Code, path string, observe bool) message.Message {
		t.Helper()
		mid++
		opts := message.Options{}
		if observe {
			opts = append(opts, message.Option{ID: message.Observe, Value: []byte{}})
		}
		p, err := lwm2m.ParsePath(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, seg := range p.Segments() {
			opts = append(opts, message.Option{ID: message.URIPath, Value: []byte(seg)})
		}
		buf := make([]byte, 1500)
		n, err := coder.DefaultCoder.Encode(message.Message{Type: message.Confirmable, Code: code, MessageID: mid, Token: []byte{1, 2, byte(mid)}, Options: opts}, buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.WriteToUDP(buf[:n], devAddr); err != nil {
			t.Fatal(err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err = srv.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("%v %s: %v", code, path, err)
		}
		m := message.Message{Options: make(message.Options, 0, 8)}
		if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
			t.Fatal(err)
		}
		if m.Type != message.Acknowledgement || m.MessageID != mid || string(m.Token) != string([]byte{1, 2, byte(mid)}) {
			t.Fatalf("%v %s: answer %v mid %d token %v", code, path, m.Type, m.MessageID, m.Token)
		}
		return m
	}

	m := exchange(codes.GET, "/3/0", false)
	if cf, err := m.Options.ContentFormat(); m.Code != codes.Content || err != nil || cf != message.MediaType(lwm2m.FormatSenMLJSON) {
		t.Fatalf("read /3/0: %v format %v %v", m.Code, cf, err)
	}
	recs, err := codec.Decode(lwm2m.FormatSenMLJSON, lwm2m.InstancePath(3, 0), m.Payload, sim.Resolver())
	if err != nil || len(recs) != 4 || recs[1].Value != "notifybench" {
		t.Errorf("read /3/0: %v %v", recs, err)
	}
	if m := exchange(codes.PUT, "/3303/0/5700", false); m.Code != codes.Changed {
		t.Errorf("write attributes: %v", m.Code)
	}
	if m := exchange(codes.GET, "/5/0", false); m.Code != codes.NotFound {
		t.Errorf("read of a missing object: %v", m.Code)
	}
	m = exchange(codes.GET, "/3303/0/5700", true)
	if _, err := m.Options.Observe(); m.Code != codes.Content || err != nil || string(m.Payload) != "0" {
		t.Fatalf("observe: %v %q %v", m.Code, m.Payload, err)
	}
	select {
	case <-d.observed:
	default:
		t.Fatal("not marked observed")
	}
	nt := &notifier{d: d, buf: make([]byte, 256)}
	if ok, err := nt.notify(42); !ok || err != nil {
		t.Fatalf("notify: %v %v", ok, err)
	}
	buf := make([]byte, 1500)
	n, _, err := srv.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	var nm message.Message
	nm.Options = make(message.Options, 0, 8)
	if _, err := coder.DefaultCoder.Decode(buf[:n], &nm); err != nil {
		t.Fatal(err)
	}
	if nm.Type != message.NonConfirmable || string(nm.Token) != string(m.Token) || string(nm.Payload) != "42" {
		t.Errorf("notification %v token %v payload %q", nm.Type, nm.Token, nm.Payload)
	}
}
