package sim

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// rawServer is an LwM2M server reduced to a UDP socket, so that a test can
// take it away (as a killed server) and bring it back on the same port.
type rawServer struct {
	t    *testing.T
	conn *net.UDPConn
	addr *net.UDPAddr
	dev  *net.UDPAddr // where the device registered from
}

func newRawServer(t *testing.T) *rawServer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	rs := &rawServer{t: t, conn: c, addr: c.LocalAddr().(*net.UDPAddr)}
	t.Cleanup(func() { _ = rs.conn.Close() })
	return rs
}

// read returns the next CoAP message, failing the test after wait.
func (rs *rawServer) read() (message.Message, *net.UDPAddr) {
	rs.t.Helper()
	buf := make([]byte, 2048)
	_ = rs.conn.SetReadDeadline(time.Now().Add(wait))
	n, from, err := rs.conn.ReadFromUDP(buf)
	if err != nil {
		rs.t.Fatalf("raw server: read: %v", err)
	}
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
		rs.t.Fatalf("raw server: decode: %v", err)
	}
	return m, from
}

func (rs *rawServer) write(m message.Message, to *net.UDPAddr) {
	rs.t.Helper()
	buf := make([]byte, 2048)
	n, err := coder.DefaultCoder.Encode(m, buf)
	if err != nil {
		rs.t.Fatal(err)
	}
	if _, err := rs.conn.WriteToUDP(buf[:n], to); err != nil {
		rs.t.Fatal(err)
	}
}

// stop closes the socket; restart opens it again on the same port.
func (rs *rawServer) stop() { _ = rs.conn.Close() }

func (rs *rawServer) restart() {
	rs.t.Helper()
	c, err := net.ListenUDP("udp", rs.addr)
	if err != nil {
		rs.t.Fatal(err)
	}
	rs.conn = c
}

// TestNotifyConfirmedAcrossServerRestart: a confirmable notification is
// reported acknowledged or not, the device's socket survives the server's
// absence (ICMP port unreachable included) and the observation keeps going
// when the server is back.
func TestNotifyConfirmedAcrossServerRestart(t *testing.T) {
	rs := newRawServer(t)
	d := New(Config{Endpoint: "con", Server: rs.addr.String(), Light: true})
	t.Cleanup(func() { _ = d.Close() })
	started := make(chan error, 1)
	go func() { started <- d.Start(context.Background()) }()
	reg, from := rs.read()
	if reg.Code != codes.POST {
		t.Fatalf("first message %v, want Register", reg.Code)
	}
	rs.dev = from
	if d.LocalAddr() != from.String() {
		t.Errorf("LocalAddr %s, the server sees %s", d.LocalAddr(), from)
	}
	rs.write(message.Message{Type: message.Acknowledgement, Code: codes.Created, MessageID: reg.MessageID, Token: reg.Token,
		Options: message.Options{{ID: message.LocationPath, Value: []byte("rd")}, {ID: message.LocationPath, Value: []byte("x")}}}, rs.dev)
	if err := <-started; err != nil {
		t.Fatal(err)
	}

	temp := lwm2m.ResourcePath(3303, 0, 5700)
	if err := d.NotifyConfirmed(ctxT(t), temp, 1.0); !errors.Is(err, ErrNotObserved) {
		t.Fatalf("NotifyConfirmed without an observation: %v", err)
	}

	tok := []byte("tok1")
	obs := message.Message{Type: message.Confirmable, Code: codes.GET, MessageID: 7, Token: tok,
		Options: message.Options{{ID: message.Observe, Value: []byte{}}, {ID: message.URIPath, Value: []byte("3303")},
			{ID: message.URIPath, Value: []byte("0")}, {ID: message.URIPath, Value: []byte("5700")}}}
	rs.write(obs, rs.dev)
	if ans, _ := rs.read(); ans.Code != codes.Content || string(ans.Token) != string(tok) {
		t.Fatalf("observe answer %v %q", ans.Code, ans.Token)
	}

	// notify sends value and has the raw server ACK the notification when ack is set.
	notify := func(value float64, timeout time.Duration, serverUp, ack bool) error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- d.NotifyConfirmed(ctx, temp, value) }()
		if serverUp {
			n, _ := rs.read()
			if n.Type != message.Confirmable || n.Code != codes.Content || string(n.Token) != string(tok) {
				t.Errorf("notification %v %v %q", n.Type, n.Code, n.Token)
			}
			if v := decodeValue(t, int(lwm2m.FormatText), temp, n.Payload, temp); v != value {
				t.Errorf("notified %v, want %v", v, value)
			}
			if ack {
				rs.write(message.Message{Type: message.Acknowledgement, Code: codes.Empty, MessageID: n.MessageID}, rs.dev)
			}
		}
		return <-done
	}
	if err := notify(2, wait, true, true); err != nil {
		t.Fatalf("acknowledged notification: %v", err)
	}
	if err := notify(3, 100*time.Millisecond, true, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unacknowledged notification: %v", err)
	}
	rs.stop()
	for v := 4.0; v <= 5; v++ {
		if err := notify(v, 100*time.Millisecond, false, false); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("notification to a stopped server: %v", err)
		}
	}
	rs.restart()
	if err := notify(6, wait, true, true); err != nil {
		t.Fatalf("notification after the server came back: %v", err)
	}
	if v, _ := d.Get(temp); v != 6.0 {
		t.Errorf("value %v", v)
	}
}
