package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
	"github.com/deviceserver/deviceserver/lwm2m/sim"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// The load mode's devices are deliberately not sim.Devices: a go-coap
// client connection costs the generator more CPU per registration (its
// read loop, timers and goroutines) than the server spends serving it, and
// the generator shares the machine with the server it measures. A lean
// device is one connected UDP socket and a message-ID counter; a request is
// one CoAP message encoded with go-coap's UDP coder, written, and answered
// on the same socket, with RFC 7252 retransmission, all on the caller's
// goroutine.
//
// Between its exchanges a registered lean device has one goroutine blocked
// reading its socket (serve), because the server reads object 3 from every
// device right after it registers; a device that left it unanswered would
// leave the server with thousands of requests timing out. Only GETs of
// object 3 are served; everything else gets 4.04.

// RFC 7252 §4.8 transmission parameters.
const (
	defaultAckTimeout = 2 * time.Second
	maxRetransmit     = 4
	// maxRenumber bounds how often one request moves to a new message ID
	// after a stale answer; a collision takes a reused port and one of
	// the couple of IDs its last user sent, odds of about 1 in 30000.
	maxRenumber = 3
)

// leanDevice is one simulated device of the load mode.
type leanDevice struct {
	conn *net.UDPConn
	mid  uint16 // used by one goroutine at a time: the exchange's or serve's
	// loc is the registration's Location-Path segments ("rd", id), nil
	// while not registered.
	loc []string
	// ep and version are what the device registered with; object 3
	// reports ep as its serial number, in the version's default format.
	ep, version string
	// served is closed when the goroutine serve started has stopped; nil
	// when none runs. stopping tells it that its read deadline is a stop.
	served   chan struct{}
	stopping atomic.Bool
}

// scratch holds one worker's buffers, reused across its requests so that
// a registration allocates next to nothing.
type scratch struct {
	out  []byte
	in   []byte
	opts message.Options
	tok  [8]byte
}

func newScratch() *scratch {
	return &scratch{
		out: make([]byte, 1500),
		// Larger than any answer the server sends; a bigger datagram is
		// truncated by the read, fails to decode and is skipped.
		in:   make([]byte, 4096),
		opts: make(message.Options, 0, 32),
	}
}

// exchangeConfig bounds one request.
type exchangeConfig struct {
	Timeout    time.Duration // whole exchange, retransmissions included
	AckTimeout time.Duration // first retransmission timeout (ACK_TIMEOUT)
}

// registerPayload is what sim.Device sends: the root with its resource type
// (and, from 1.1, the preferred content format SenML JSON) and the object
// instances a simulated device has.
func registerPayload(version string) []byte {
	if version == "1.0" {
		return []byte(`</>;rt="oma.lwm2m",</1/0>,</3/0>,</3303/0>`)
	}
	return []byte(`</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303/0>`)
}

var (
	errNoResponse = errors.New("no response")
	errReset      = errors.New("reset by the server")
	// errStaleAnswers: the server kept answering with another exchange's
	// token.
	errStaleAnswers = errors.New("answers with a foreign token")
)

// dial opens the device's socket. Connecting it makes the kernel drop
// datagrams from anyone but the server and report ICMP errors on read.
func (d *leanDevice) dial(server *net.UDPAddr) error {
	conn, err := net.DialUDP("udp", nil, server)
	if err != nil {
		return fmt.Errorf("dial: %w", stripAddrs(err))
	}
	d.conn = conn
	// A random first message ID, as RFC 7252 §4.4 recommends, so that a
	// socket on a recently used port seldom repeats an ID the server
	// still remembers for that address.
	d.mid = uint16(rand.Uint32())
	return nil
}

func (d *leanDevice) close() {
	if d.conn != nil {
		_ = d.conn.Close() // ends serve's read
		if d.served != nil {
			<-d.served
			d.served = nil
		}
		d.conn = nil
	}
}

// serveBufSize bounds the requests serve reads: the server's GETs are a few
// dozen bytes; a larger datagram is truncated, fails to decode and is
// skipped.
const serveBufSize = 512

// serve answers the server's requests in the background until
// stopServing or close. The device must not be in an exchange.
func (d *leanDevice) serve() {
	if d.served != nil || d.conn == nil {
		return
	}
	// Cleared here, not in the goroutine, so that a stopServing right
	// after this call is not undone.
	_ = d.conn.SetReadDeadline(time.Time{})
	d.stopping.Store(false)
	done := make(chan struct{})
	d.served = done
	go func() {
		defer close(done)
		buf := make([]byte, serveBufSize)
		opts := make(message.Options, 0, 16)
		for {
			n, err := d.conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && !d.stopping.Load() {
					continue
				}
				return // stopped, or the socket closed
			}
			m := message.Message{Options: opts[:0]}
			if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
				continue
			}
			// Write errors are the server's loss, not the device's: it
			// retransmits or times out.
			_ = d.serveMessage(m)
		}
	}()
}

// stopServing stops the goroutine serve started and waits for it, so that
// an exchange can read the socket.
func (d *leanDevice) stopServing() {
	if d.served == nil {
		return
	}
	d.stopping.Store(true)
	_ = d.conn.SetReadDeadline(time.Unix(1, 0))
	<-d.served
	d.served = nil
}

// serveMessage answers a message from the server that is not part of an
// exchange: a request gets its answer, any other confirmable message (a
// ping, a response to nothing asked) a Reset; the rest needs no answer.
func (d *leanDevice) serveMessage(m message.Message) error {
	switch {
	case isRequest(m.Code) && (m.Type == message.Confirmable || m.Type == message.NonConfirmable):
		return d.answerRequest(m)
	case m.Type == message.Confirmable:
		return d.reply(message.Reset, codes.Empty, m.MessageID, nil)
	}
	return nil
}

// answerRequest answers a request from the server: a GET of object 3 (or
// of its instance 0 or one of its resources) with the device's identity,
// anything else with 4.04. A confirmable request is answered piggybacked
// in its ACK, a non-confirmable one with a non-confirmable response.
func (d *leanDevice) answerRequest(req message.Message) error {
	resp := message.Message{Token: req.Token, Code: codes.NotFound, MessageID: req.MessageID, Type: message.Acknowledgement}
	if req.Type == message.NonConfirmable {
		d.mid++
		resp.Type, resp.MessageID = message.NonConfirmable, int32(d.mid)
	}
	var cfBuf [2]byte
	if req.Code == codes.GET {
		code, cf, payload := d.readDevice(req.Options)
		resp.Code, resp.Payload = code, payload
		if payload != nil {
			n, _ := message.EncodeUint32(cfBuf[:], uint32(cf))
			resp.Options = message.Options{{ID: message.ContentFormat, Value: cfBuf[:n]}}
		}
	}
	var buf [serveBufSize]byte
	n, err := coder.DefaultCoder.Encode(resp, buf[:])
	if err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	if _, err := d.conn.Write(buf[:n]); err != nil {
		return fmt.Errorf("write answer: %w", stripAddrs(err))
	}
	return nil
}

// The identity a lean device reports in object 3, besides its serial
// number (the endpoint name).
const (
	leanManufacturer = "DeviceServer"
	leanModel        = "lwm2m-sim-lean"
	leanFirmware     = "1.0.0"
)

// readDevice answers a GET with the given options: 2.05 with the records
// of object 3 under the requested path, in the Accept format (by default
// TLV for 1.0 and SenML JSON for 1.1; text for a single resource), 4.06 for
// a format it does not write, 4.04 for another path.
func (d *leanDevice) readDevice(opts message.Options) (codes.Code, lwm2m.ContentFormat, []byte) {
	path, err := opts.Path()
	if err != nil {
		return codes.BadOption, 0, nil
	}
	p, err := lwm2m.ParsePath(path)
	if err != nil || p.Depth == lwm2m.DepthRoot {
		return codes.NotFound, 0, nil
	}
	all := [...]lwm2m.Record{
		{Path: lwm2m.ResourcePath(3, 0, 0), Value: leanManufacturer},
		{Path: lwm2m.ResourcePath(3, 0, 1), Value: leanModel},
		{Path: lwm2m.ResourcePath(3, 0, 2), Value: d.ep},
		{Path: lwm2m.ResourcePath(3, 0, 3), Value: leanFirmware},
	}
	var recs []lwm2m.Record
	for _, r := range all {
		if p.Contains(r.Path) {
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return codes.NotFound, 0, nil
	}
	f := lwm2m.FormatSenMLJSON
	switch accept, err := opts.Accept(); {
	case err == nil:
		f = lwm2m.ContentFormat(accept)
	case p.Depth == lwm2m.DepthResource:
		f = lwm2m.FormatText
	case d.version == "1.0":
		f = lwm2m.FormatTLV
	}
	switch f {
	case lwm2m.FormatSenMLJSON, lwm2m.FormatTLV, lwm2m.FormatText:
	default:
		return codes.NotAcceptable, 0, nil
	}
	payload, err := codec.Encode(f, p, recs, nil)
	if err != nil {
		// Text of an instance, say: not a format for several values.
		return codes.NotAcceptable, 0, nil
	}
	return codes.Content, f, payload
}

// register sends the LwM2M Register and records the Location-Path.
func (d *leanDevice) register(ctx context.Context, s *scratch, cfg exchangeConfig, ep string, lifetime uint32, version string) error {
	// Set first: the server may read object 3 before the exchange ends.
	d.ep, d.version = ep, version
	// Options in ascending number order, as the encoder's deltas need.
	opts := message.Options{
		{ID: message.URIPath, Value: []byte("rd")},
		{ID: message.ContentFormat, Value: []byte{byte(message.AppLinkFormat)}},
		{ID: message.URIQuery, Value: []byte("ep=" + ep)},
		{ID: message.URIQuery, Value: []byte("lt=" + strconv.FormatUint(uint64(lifetime), 10))},
		{ID: message.URIQuery, Value: []byte("lwm2m=" + version)},
		{ID: message.URIQuery, Value: []byte("b=U")},
	}
	resp, err := d.exchange(ctx, s, cfg, codes.POST, opts, registerPayload(version))
	if err != nil {
		return fmt.Errorf("sim: register: %w", err)
	}
	if resp.Code != codes.Created {
		return &sim.ServerError{Op: "register", Code: resp.Code, Msg: diagnostic(resp.Payload)}
	}
	var loc []string
	for _, o := range resp.Options {
		if o.ID == message.LocationPath {
			loc = append(loc, string(o.Value))
		}
	}
	if len(loc) == 0 {
		return errors.New("sim: register: 2.01 without Location-Path")
	}
	d.loc = loc
	return nil
}

// deregister sends DELETE to the Location-Path.
func (d *leanDevice) deregister(ctx context.Context, s *scratch, cfg exchangeConfig) error {
	if d.loc == nil {
		return errors.New("sim: deregister: not registered")
	}
	opts := make(message.Options, 0, len(d.loc))
	for _, seg := range d.loc {
		opts = append(opts, message.Option{ID: message.URIPath, Value: []byte(seg)})
	}
	resp, err := d.exchange(ctx, s, cfg, codes.DELETE, opts, nil)
	if err != nil {
		return fmt.Errorf("sim: deregister: %w", err)
	}
	if resp.Code != codes.Deleted {
		return &sim.ServerError{Op: "deregister", Code: resp.Code, Msg: diagnostic(resp.Payload)}
	}
	d.loc = nil
	return nil
}

// diagnostic returns a response payload as text for an error message;
// long ones are dropped, since errors are counted by their text.
func diagnostic(b []byte) string {
	if len(b) > 200 {
		return ""
	}
	return string(b)
}

// exchange sends a confirmable request and returns its response, which
// refers to s's buffers and is valid until s's next use. It retransmits
// per RFC 7252 §4.2 until acknowledged, accepts a piggybacked or a separate
// response (acknowledging a confirmable one), moves to a new message ID
// when the server answers from a stale deduplication entry, and turns away
// anything else the server sends meanwhile so that it does not wait on it.
func (d *leanDevice) exchange(ctx context.Context, s *scratch, cfg exchangeConfig, code codes.Code, opts message.Options, payload []byte) (message.Message, error) {
	if err := ctx.Err(); err != nil {
		return message.Message{}, err
	}
	d.mid++
	mid := d.mid
	tok := s.tok[:]
	binary.LittleEndian.PutUint64(tok, rand.Uint64())
	req := message.Message{Token: tok, Options: opts, Code: code, Payload: payload, MessageID: int32(mid), Type: message.Confirmable}
	n, err := coder.DefaultCoder.Encode(req, s.out)
	if err != nil {
		return message.Message{}, fmt.Errorf("encode: %w", err)
	}
	pkt := s.out[:n]

	start := time.Now()
	deadline := start.Add(cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	ackTimeout := cfg.AckTimeout
	if ackTimeout <= 0 {
		ackTimeout = defaultAckTimeout
	}
	// The initial timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT ×
	// ACK_RANDOM_FACTOR (1.5)], so that devices that lost packets together
	// do not retransmit together.
	firstRTO := func() time.Duration { return ackTimeout + time.Duration(rand.Int64N(int64(ackTimeout)/2+1)) }
	rto := firstRTO()
	retransmitAt := start.Add(rto)
	retransmits := 0
	acked := false // an empty ACK came: the response will be separate
	renumbered := 0

	// Cancelling ctx wakes a blocked read, so an interrupt does not wait
	// for the next retransmission. The callback runs only after ctx.Err()
	// is set, which the loop checks after each SetReadDeadline.
	stop := context.AfterFunc(ctx, func() { _ = d.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := d.conn.Write(pkt); err != nil {
		return message.Message{}, fmt.Errorf("write: %w", stripAddrs(err))
	}
	for {
		readUntil := deadline
		if !acked && retransmitAt.Before(readUntil) {
			readUntil = retransmitAt
		}
		if err := d.conn.SetReadDeadline(readUntil); err != nil {
			return message.Message{}, fmt.Errorf("set deadline: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return message.Message{}, err
		}
		n, err := d.conn.Read(s.in)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return message.Message{}, fmt.Errorf("read: %w", stripAddrs(err))
			}
			now := time.Now()
			switch {
			case ctx.Err() != nil:
				return message.Message{}, ctx.Err()
			case !now.Before(deadline) && acked:
				return message.Message{}, fmt.Errorf("%w after an empty ACK: %w", errNoResponse, context.DeadlineExceeded)
			case !now.Before(deadline):
				return message.Message{}, fmt.Errorf("%w: %w", errNoResponse, context.DeadlineExceeded)
			case acked || now.Before(retransmitAt):
				continue // an early wake-up
			case retransmits == maxRetransmit:
				return message.Message{}, fmt.Errorf("%w after %d transmissions", errNoResponse, maxRetransmit+1)
			}
			retransmits++
			rto *= 2
			retransmitAt = now.Add(rto)
			if _, err := d.conn.Write(pkt); err != nil {
				return message.Message{}, fmt.Errorf("write: %w", stripAddrs(err))
			}
			continue
		}

		m := message.Message{Options: s.opts[:0]}
		if _, err := coder.DefaultCoder.Decode(s.in[:n], &m); err != nil {
			continue // not CoAP, or more options than we keep: not ours
		}
		ours := string(m.Token) == string(tok)
		switch {
		case (m.Type == message.Acknowledgement || m.Type == message.Reset) && m.MessageID == int32(mid):
			switch {
			case m.Type == message.Reset:
				return message.Message{}, errReset
			case m.Code == codes.Empty:
				acked = true
			case ours:
				return m, nil
			}
			if m.Type == message.Acknowledgement && m.Code != codes.Empty && !ours {
				// The server answered from its deduplication cache: an
				// earlier socket on this port, within EXCHANGE_LIFETIME,
				// used this message ID (back-to-back load runs reuse
				// ports). Every retransmission would get the same stale
				// answer, so send the request afresh under the next ID.
				if renumbered == maxRenumber {
					return message.Message{}, errStaleAnswers
				}
				renumbered++
				d.mid++
				mid = d.mid
				binary.BigEndian.PutUint16(pkt[2:4], mid)
				rto, retransmits = firstRTO(), 0
				retransmitAt = time.Now().Add(rto)
				if _, err := d.conn.Write(pkt); err != nil {
					return message.Message{}, fmt.Errorf("write: %w", stripAddrs(err))
				}
			}
		case m.Type == message.Acknowledgement || m.Type == message.Reset:
			// A late duplicate for an earlier exchange.
		case ours && isResponse(m.Code):
			if m.Type == message.Confirmable {
				if err := d.reply(message.Acknowledgement, codes.Empty, m.MessageID, nil); err != nil {
					return message.Message{}, err
				}
			}
			return m, nil
		default:
			// A request of the server (answered at once rather than
			// after its retries), a ping, a response to nothing asked;
			// a non-confirmable stranger needs no answer.
			if err := d.serveMessage(m); err != nil {
				return message.Message{}, err
			}
		}
	}
}

// reply sends an ACK or RST for a message the server sent.
func (d *leanDevice) reply(typ message.Type, code codes.Code, mid int32, token message.Token) error {
	var buf [4 + message.MaxTokenSize]byte
	n, err := coder.DefaultCoder.Encode(message.Message{Token: token, Code: code, MessageID: mid, Type: typ}, buf[:])
	if err != nil {
		return fmt.Errorf("encode reply: %w", err)
	}
	if _, err := d.conn.Write(buf[:n]); err != nil {
		return fmt.Errorf("write reply: %w", stripAddrs(err))
	}
	return nil
}

func isRequest(c codes.Code) bool  { return c != codes.Empty && c>>5 == 0 }
func isResponse(c codes.Code) bool { return c>>5 >= 2 }

// stripAddrs drops the socket addresses a *net.OpError carries: errors
// are counted by their text, and each device has its own local port.
func stripAddrs(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return fmt.Errorf("%s: %w", op.Op, op.Err)
	}
	return err
}
