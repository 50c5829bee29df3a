package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
)

// A device is deliberately not a sim.Device: a go-coap connection per
// device costs the tool more CPU than the server spends on it, and the tool
// shares the machine with the server it measures. A device here is one
// connected UDP socket and a goroutine that answers the server: Register,
// then whatever the server asks (Read, Write-Attributes, Observe), and
// notifications of the observed Sensor Value (/3303/0/5700) on demand.

// RFC 7252 transmission parameters for confirmable messages.
const (
	ackTimeout    = 2 * time.Second
	maxRetransmit = 4
)

// sensorPath is what the subscriptions observe.
var sensorPath = lwm2m.ResourcePath(3303, 0, 5700)

// device is one simulated device.
type device struct {
	idx  int
	name string
	conn *net.UDPConn
	id   string // registration (client) ID

	mid atomic.Uint32 // last message ID used

	mu       sync.Mutex
	token    []byte // the observation's token; nil until observed
	seq      uint32 // Observe sequence number
	pending  map[uint16]*outstanding
	observed chan struct{} // closed at the first Observe

	acked, resets, retransmits, unacked atomic.Int64
	ackLatency                          []time.Duration // guarded by mu
}

// outstanding is a confirmable notification waiting for its ACK.
type outstanding struct {
	pkt   []byte
	first time.Time
	next  time.Time
	tries int
}

func newDevice(idx int, prefix string) *device {
	d := &device{idx: idx, name: fmt.Sprintf("%s-%05d", prefix, idx+1), pending: map[uint16]*outstanding{}, observed: make(chan struct{})}
	d.mid.Store(rand.Uint32() & 0xffff)
	return d
}

func (d *device) nextMID() uint16 { return uint16(d.mid.Add(1)) }

// registerPayload announces the instances the device serves; ct=110 says
// it prefers SenML JSON.
var registerPayload = []byte(`</>;rt="oma.lwm2m";ct=110,</3/0>,</3303/0>`)

// register dials the server and registers, retransmitting per RFC 7252.
func (d *device) register(ctx context.Context, server *net.UDPAddr, lifetime int) error {
	conn, err := net.DialUDP("udp", nil, server)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	d.conn = conn
	var tok [8]byte
	binary.LittleEndian.PutUint64(tok[:], rand.Uint64())
	mid := d.nextMID()
	req := message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: int32(mid), Token: tok[:], Payload: registerPayload,
		Options: message.Options{
			{ID: message.URIPath, Value: []byte("rd")},
			{ID: message.ContentFormat, Value: []byte{byte(message.AppLinkFormat)}},
			{ID: message.URIQuery, Value: []byte("ep=" + d.name)},
			{ID: message.URIQuery, Value: []byte("lt=" + strconv.Itoa(lifetime))},
			{ID: message.URIQuery, Value: []byte("lwm2m=1.1")},
			{ID: message.URIQuery, Value: []byte("b=U")},
		}}
	out := make([]byte, 512)
	n, err := coder.DefaultCoder.Encode(req, out)
	if err != nil {
		return err
	}
	pkt := out[:n]
	in := make([]byte, 1500)
	rto := ackTimeout
	for try := 0; try <= maxRetransmit; try++ {
		if _, err := conn.Write(pkt); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		deadline := time.Now().Add(rto)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		_ = conn.SetReadDeadline(deadline)
		for {
			n, err := conn.Read(in)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
					break // retransmit
				}
				return fmt.Errorf("register: %w", err)
			}
			m := message.Message{Options: make(message.Options, 0, 8)}
			if _, err := coder.DefaultCoder.Decode(in[:n], &m); err != nil || string(m.Token) != string(tok[:]) || m.Code == codes.Empty {
				continue // an empty ACK (separate response follows) or a stranger
			}
			if m.Type == message.Confirmable {
				d.reply(message.Acknowledgement, codes.Empty, m.MessageID, nil, nil, nil)
			}
			if m.Code != codes.Created {
				return fmt.Errorf("register: server answered %v", m.Code)
			}
			var loc []string
			for _, o := range m.Options {
				if o.ID == message.LocationPath {
					loc = append(loc, string(o.Value))
				}
			}
			if len(loc) != 2 || loc[0] != "rd" {
				return fmt.Errorf("register: Location-Path %q", loc)
			}
			d.id = loc[1]
			_ = conn.SetReadDeadline(time.Time{})
			return nil
		}
		rto *= 2
	}
	return errors.New("register: no answer")
}

// serve answers the server until the socket is closed. It runs on its own goroutine.
func (d *device) serve() {
	in := make([]byte, 1500)
	opts := make(message.Options, 0, 16)
	for {
		n, err := d.conn.Read(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED after the server went away
		}
		m := message.Message{Options: opts[:0]}
		if _, err := coder.DefaultCoder.Decode(in[:n], &m); err != nil {
			continue
		}
		switch {
		case m.Type == message.Acknowledgement && m.Code == codes.Empty:
			d.ackReceived(uint16(m.MessageID))
		case m.Type == message.Reset:
			if d.ackReceived(uint16(m.MessageID)) {
				d.resets.Add(1)
			}
		case m.Code >= codes.GET && m.Code <= codes.DELETE:
			d.handleRequest(&m)
		case m.Type == message.Confirmable:
			d.reply(message.Reset, codes.Empty, m.MessageID, nil, nil, nil)
		}
	}
}

// ackReceived settles the confirmable notification with message ID mid.
func (d *device) ackReceived(mid uint16) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.pending[mid]
	if o == nil {
		return false
	}
	delete(d.pending, mid)
	d.acked.Add(1)
	d.ackLatency = append(d.ackLatency, time.Since(o.first))
	return true
}

// deviceInfo is the answer to a Read of /3/0.
var deviceInfo = func() []byte {
	recs := []lwm2m.Record{
		{Path: lwm2m.ResourcePath(3, 0, 0), Value: "DeviceServer"},
		{Path: lwm2m.ResourcePath(3, 0, 1), Value: "notifybench"},
		{Path: lwm2m.ResourcePath(3, 0, 2), Value: "NB-1"},
		{Path: lwm2m.ResourcePath(3, 0, 3), Value: "1.0.0"},
	}
	b, err := codec.Encode(lwm2m.FormatSenMLJSON, lwm2m.InstancePath(3, 0), recs, sim.Resolver())
	if err != nil {
		panic(err)
	}
	return b
}()

// handleRequest answers a request of the server, piggybacked on the ACK
// of a confirmable one.
func (d *device) handleRequest(m *message.Message) {
	var segs []string
	observe := -1
	for _, o := range m.Options {
		switch o.ID {
		case message.URIPath:
			segs = append(segs, string(o.Value))
		case message.Observe:
			v := 0
			for _, b := range o.Value {
				v = v<<8 | int(b)
			}
			observe = v
		}
	}
	p, err := lwm2m.ParsePath("/" + strings.Join(segs, "/"))
	code, format, payload := codes.NotFound, -1, []byte(nil)
	var obsOpt []byte
	switch {
	case err != nil:
	case m.Code == codes.GET && p == sensorPath:
		code, format, payload = codes.Content, int(lwm2m.FormatText), []byte("0")
		if observe == 0 {
			d.mu.Lock()
			first := d.token == nil
			d.token = append([]byte(nil), m.Token...)
			d.seq++
			obsOpt = observeValue(d.seq)
			d.mu.Unlock()
			if first {
				close(d.observed)
			}
		}
	case m.Code == codes.GET && p == lwm2m.InstancePath(3, 0):
		code, format, payload = codes.Content, int(lwm2m.FormatSenMLJSON), deviceInfo
	case m.Code == codes.PUT && (p == sensorPath || p.Depth <= lwm2m.DepthInstance):
		code = codes.Changed // Write-Attributes (or a Write): accepted
	}
	// Options in ascending order: Observe (6), Content-Format (12).
	var opts message.Options
	if obsOpt != nil {
		opts = append(opts, message.Option{ID: message.Observe, Value: obsOpt})
	}
	if format >= 0 {
		opts = append(opts, message.Option{ID: message.ContentFormat, Value: contentFormat(format)})
	}
	typ, mid := message.Acknowledgement, m.MessageID
	if m.Type != message.Confirmable {
		typ, mid = message.NonConfirmable, int32(d.nextMID())
	}
	d.reply(typ, code, mid, m.Token, opts, payload)
}

// observeValue encodes an Observe option value in three bytes.
func observeValue(seq uint32) []byte {
	return []byte{byte(seq >> 16), byte(seq >> 8), byte(seq)}
}

// contentFormat encodes a Content-Format option value (0 is empty).
func contentFormat(f int) []byte {
	switch {
	case f == 0:
		return []byte{}
	case f < 256:
		return []byte{byte(f)}
	}
	return []byte{byte(f >> 8), byte(f)}
}

// reply sends a response, an ACK or an RST.
func (d *device) reply(typ message.Type, code codes.Code, mid int32, token []byte, opts message.Options, payload []byte) {
	m := message.Message{Type: typ, Code: code, MessageID: mid, Token: token, Options: opts, Payload: payload}
	var buf [1500]byte
	n, err := coder.DefaultCoder.Encode(m, buf[:])
	if err != nil {
		return
	}
	_, _ = d.conn.Write(buf[:n])
}

// notifier sends one device's notifications. It is used by a single goroutine.
type notifier struct {
	d   *device
	con bool
	buf []byte
	val []byte
}

// notify sends a notification carrying value. It returns false when the
// device is not observed.
func (nt *notifier) notify(value int64) (bool, error) {
	d := nt.d
	d.mu.Lock()
	tok := d.token
	d.seq++
	seq := d.seq
	d.mu.Unlock()
	if tok == nil {
		return false, nil
	}
	typ := message.NonConfirmable
	if nt.con {
		typ = message.Confirmable
	}
	mid := d.nextMID()
	nt.val = strconv.AppendInt(nt.val[:0], value, 10)
	m := message.Message{Type: typ, Code: codes.Content, MessageID: int32(mid), Token: tok, Payload: nt.val,
		Options: message.Options{
			{ID: message.Observe, Value: observeValue(seq)},
			{ID: message.ContentFormat, Value: []byte{}}, // text/plain
		}}
	n, err := coder.DefaultCoder.Encode(m, nt.buf)
	if err != nil {
		return true, err
	}
	now := time.Now()
	if nt.con {
		pkt := append([]byte(nil), nt.buf[:n]...)
		d.mu.Lock()
		d.pending[mid] = &outstanding{pkt: pkt, first: now, next: now.Add(ackTimeout + time.Duration(rand.Int64N(int64(ackTimeout/2)))), tries: 1}
		d.mu.Unlock()
	}
	_, err = d.conn.Write(nt.buf[:n])
	return true, err
}

// retransmit sends again the confirmable notifications whose ACK is late,
// and gives up on those sent maxRetransmit+1 times.
func (nt *notifier) retransmit(now time.Time) {
	d := nt.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for mid, o := range d.pending {
		if now.Before(o.next) {
			continue
		}
		if o.tries > maxRetransmit {
			delete(d.pending, mid)
			d.unacked.Add(1)
			continue
		}
		o.tries++
		o.next = now.Add(ackTimeout << (o.tries - 1))
		d.retransmits.Add(1)
		_, _ = d.conn.Write(o.pkt)
	}
}

// outstandingCount is how many confirmable notifications wait for an ACK.
func (d *device) outstandingCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

func (d *device) close() {
	if d.conn != nil {
		_ = d.conn.Close()
	}
}
