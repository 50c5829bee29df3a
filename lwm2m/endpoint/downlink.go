package endpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
	"github.com/deviceserver/deviceserver/lwm2m/corelink"
)

// Operation names, used in errors and in lwm2m.DeviceError.Op.
const (
	opRead            = "read"
	opWrite           = "write"
	opExecute         = "execute"
	opCreate          = "create"
	opDelete          = "delete"
	opDiscover        = "discover"
	opWriteAttributes = "write attributes"
	opObserve         = "observe"
	opCancelObserve   = "cancel observe"
)

// request is one downlink CoAP request.
type request struct {
	op      string
	code    codes.Code
	path    lwm2m.Path
	accept  int // content format for Accept, or -1
	cf      lwm2m.ContentFormat
	payload []byte // sent with cf when non-nil
	query   []string
	observe int    // Observe option value, or -1
	token   []byte // nil: a fresh random token
}

// response is what the device answered, copied out of go-coap's pooled message.
type response struct {
	code       codes.Code
	cf         lwm2m.ContentFormat
	hasCF      bool
	payload    []byte
	location   []string
	observe    uint32
	hasObserve bool
}

func (r *response) ok() bool { return r.code>>5 == 2 }

// opError wraps err as "endpoint: op path: err".
func opError(op string, p lwm2m.Path, err error) error {
	return fmt.Errorf("endpoint: %s %s: %w", op, p, err)
}

// deviceError turns a 4.xx/5.xx answer into *lwm2m.DeviceError.
func deviceError(op string, p lwm2m.Path, r *response) error {
	msg := ""
	if len(r.payload) > 0 && (!r.hasCF || r.cf == lwm2m.FormatText) {
		msg = truncate(strings.ToValidUTF8(string(r.payload), "?"))
	}
	return opError(op, p, &lwm2m.DeviceError{Op: op, Code: uint8(r.code), Msg: msg})
}

// uriPath is the Uri-Path of p on a device with the given root path.
func uriPath(root string, p lwm2m.Path) string {
	var b strings.Builder
	if root != "/" {
		b.WriteString(root)
	}
	for _, s := range p.Segments() {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// do sends rq to the device of st and waits for the answer, within the
// request timeout and ctx. It holds no lock while waiting.
func (s *Server) do(ctx context.Context, st *clientState, rq request) (*response, error) {
	if st.peer.t == nil || st.peer.t.conn == nil || st.peer.addr == nil {
		return nil, opError(rq.op, rq.path, fmt.Errorf("transport %q of the registration is not available", st.reg.Transport))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	cc, err := st.peer.t.conn(st.peer)
	if err != nil {
		return nil, opError(rq.op, rq.path, fmt.Errorf("connection to %s: %w", st.peer.addr, err))
	}
	req := cc.AcquireMessage(ctx)
	defer cc.ReleaseMessage(req)
	token := rq.token
	if token == nil {
		if token, err = message.GetToken(); err != nil {
			return nil, opError(rq.op, rq.path, err)
		}
	}
	req.SetToken(token)
	req.SetCode(rq.code)
	if err := req.SetPath(uriPath(st.reg.RootPath, rq.path)); err != nil {
		return nil, opError(rq.op, rq.path, err)
	}
	if rq.accept >= 0 {
		req.SetAccept(message.MediaType(rq.accept))
	}
	if rq.observe >= 0 {
		req.SetObserve(uint32(rq.observe))
	}
	for _, q := range rq.query {
		req.AddQuery(q)
	}
	if rq.payload != nil {
		req.SetContentFormat(message.MediaType(rq.cf))
		req.SetBody(bytes.NewReader(rq.payload))
	}
	sent := wireSize(req) // before Do, which may split the body into blocks
	resp, err := cc.Do(req)
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
			// The request went out (perhaps several times) but no
			// exchange completed: bytes, not a transaction.
			s.countSent(st, sent)
			return nil, opError(rq.op, rq.path, lwm2m.ErrTimeout)
		case ctx.Err() != nil:
			s.countSent(st, sent)
			return nil, opError(rq.op, rq.path, ctx.Err())
		}
		return nil, opError(rq.op, rq.path, err)
	}
	defer cc.ReleaseMessage(resp)
	if resp.Type() == message.Confirmable {
		sent += emptyACKSize // a separate response, which go-coap acknowledges
	}
	s.countExchange(st, sent, wireSize(resp))
	out, err := readResponse(resp)
	if err != nil {
		return nil, opError(rq.op, rq.path, err)
	}
	return out, nil
}

func readResponse(m *pool.Message) (*response, error) {
	r := &response{code: m.Code()}
	if cf, err := m.ContentFormat(); err == nil {
		r.cf, r.hasCF = lwm2m.ContentFormat(cf), true
	}
	if obs, err := m.Observe(); err == nil {
		r.observe, r.hasObserve = obs, true
	}
	for _, o := range m.Options() {
		if o.ID == message.LocationPath {
			r.location = append(r.location, string(o.Value))
		}
	}
	b, err := readBody(m)
	if err != nil {
		return nil, fmt.Errorf("read response payload: %w", err)
	}
	r.payload = b
	return r, nil
}

// readBody copies a message's payload exactly (pool.Message.ReadBody
// always allocates at least 1 KiB).
func readBody(m *pool.Message) ([]byte, error) {
	body := m.Body()
	if body == nil {
		return nil, nil
	}
	n, err := m.BodySize()
	if err != nil || n == 0 {
		return nil, err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, err
	}
	return b, nil
}

// multiFormat is the format for payloads with several values, and the
// Accept of reads: TLV for 1.0 devices, SenML JSON for 1.1+ unless the
// device declared (ct= of its root link) only formats we pick otherwise.
func multiFormat(reg *lwm2m.Registration) lwm2m.ContentFormat {
	has := func(f lwm2m.ContentFormat) bool {
		for _, g := range reg.ContentFormats {
			if g == f {
				return true
			}
		}
		return false
	}
	if reg.Version == "1.0" {
		if has(lwm2m.FormatTLVLegacy) && !has(lwm2m.FormatTLV) {
			return lwm2m.FormatTLVLegacy
		}
		return lwm2m.FormatTLV
	}
	switch {
	case has(lwm2m.FormatSenMLCBOR) && codec.Supported(lwm2m.FormatSenMLCBOR):
		return lwm2m.FormatSenMLCBOR
	case len(reg.ContentFormats) == 0 || has(lwm2m.FormatSenMLJSON):
		return lwm2m.FormatSenMLJSON
	case has(lwm2m.FormatTLV):
		return lwm2m.FormatTLV
	}
	return lwm2m.FormatSenMLJSON
}

// decode parses a device's answer to a request on p. A missing
// Content-Format means text for a single resource, else what was asked.
func (s *Server) decode(reg *lwm2m.Registration, p lwm2m.Path, r *response, asked lwm2m.ContentFormat) ([]lwm2m.Record, error) {
	if len(r.payload) == 0 {
		return nil, nil
	}
	cf := asked
	switch {
	case r.hasCF:
		cf = r.cf
	case p.Depth >= lwm2m.DepthResource:
		cf = lwm2m.FormatText
	}
	recs, err := codec.Decode(cf, p, r.payload, s.resolver(reg.Organisation))
	if err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	return recs, nil
}

// Read reads p on the device.
func (s *Server) Read(ctx context.Context, clientID string, p lwm2m.Path) ([]lwm2m.Record, error) {
	_, st, err := s.current(clientID)
	if err != nil {
		return nil, opError(opRead, p, err)
	}
	f := multiFormat(&st.reg)
	r, err := s.do(ctx, st, request{op: opRead, code: codes.GET, path: p, accept: int(f), observe: -1})
	if err != nil {
		return nil, err
	}
	if !r.ok() {
		return nil, deviceError(opRead, p, r)
	}
	recs, err := s.decode(&st.reg, p, r, f)
	if err != nil {
		return nil, opError(opRead, p, err)
	}
	return recs, nil
}

// Write writes recs at p: replace → CoAP PUT, else POST (partial update).
// A single value written at its own resource path always goes as a PUT in
// text/plain (opaque: application/octet-stream), because a POST to a
// resource would be an Execute.
func (s *Server) Write(ctx context.Context, clientID string, p lwm2m.Path, recs []lwm2m.Record, replace bool) error {
	_, st, err := s.current(clientID)
	if err != nil {
		return opError(opWrite, p, err)
	}
	if len(recs) == 0 {
		return opError(opWrite, p, errors.New("no values to write"))
	}
	res := s.resolver(st.reg.Organisation)
	code := codes.POST
	if replace {
		code = codes.PUT
	}
	var f lwm2m.ContentFormat
	if len(recs) == 1 && recs[0].Path == p && p.Depth >= lwm2m.DepthResource {
		code = codes.PUT
		f = lwm2m.FormatText
		if isOpaque(res, recs[0]) {
			f = lwm2m.FormatOpaque
		}
	} else {
		if !replace && p.Depth >= lwm2m.DepthResource && st.reg.Version == "1.0" {
			// LwM2M 1.0 has no partial update of a resource, and a POST
			// to a resource path is an Execute there.
			return opError(opWrite, p, errors.New("partial update of a resource needs LwM2M 1.1; write with replace"))
		}
		f = multiFormat(&st.reg)
	}
	payload, err := codec.Encode(f, p, recs, res)
	if err != nil {
		return opError(opWrite, p, err)
	}
	if payload == nil {
		payload = []byte{}
	}
	r, err := s.do(ctx, st, request{op: opWrite, code: code, path: p, accept: -1, cf: f, payload: payload, observe: -1})
	if err != nil {
		return err
	}
	if !r.ok() {
		return deviceError(opWrite, p, r)
	}
	return nil
}

// isOpaque reports whether rec is an Opaque resource (by the model, or by
// its Go value when the model does not know it).
func isOpaque(res lwm2m.Resolver, rec lwm2m.Record) bool {
	if res != nil {
		if t, _, ok := res.ResourceType(rec.Path.Object, rec.Path.Resource); ok {
			return t == lwm2m.TypeOpaque
		}
	}
	_, ok := rec.Value.([]byte)
	return ok
}

// Execute executes the resource p with optional text arguments.
func (s *Server) Execute(ctx context.Context, clientID string, p lwm2m.Path, args string) error {
	_, st, err := s.current(clientID)
	if err != nil {
		return opError(opExecute, p, err)
	}
	if p.Depth != lwm2m.DepthResource {
		return opError(opExecute, p, errors.New("execute needs a resource path /o/i/r"))
	}
	rq := request{op: opExecute, code: codes.POST, path: p, accept: -1, observe: -1}
	if args != "" {
		rq.cf, rq.payload = lwm2m.FormatText, []byte(args)
	}
	r, err := s.do(ctx, st, rq)
	if err != nil {
		return err
	}
	if !r.ok() {
		return deviceError(opExecute, p, r)
	}
	return nil
}

// Create creates an object instance under object and returns its path:
// from the device's Location-Path, else the instance the records carry.
func (s *Server) Create(ctx context.Context, clientID string, object lwm2m.Path, recs []lwm2m.Record) (lwm2m.Path, error) {
	_, st, err := s.current(clientID)
	if err != nil {
		return lwm2m.Path{}, opError(opCreate, object, err)
	}
	if object.Depth != lwm2m.DepthObject {
		return lwm2m.Path{}, opError(opCreate, object, errors.New("create needs an object path /o"))
	}
	f := multiFormat(&st.reg)
	payload, err := codec.Encode(f, object, recs, s.resolver(st.reg.Organisation))
	if err != nil {
		return lwm2m.Path{}, opError(opCreate, object, err)
	}
	if payload == nil {
		payload = []byte{}
	}
	r, err := s.do(ctx, st, request{op: opCreate, code: codes.POST, path: object, accept: -1, cf: f, payload: payload, observe: -1})
	if err != nil {
		return lwm2m.Path{}, err
	}
	if !r.ok() {
		return lwm2m.Path{}, deviceError(opCreate, object, r)
	}
	if p, ok := locationInstance(st.reg.RootPath, object, r.location); ok {
		return p, nil
	}
	if len(recs) > 0 && recs[0].Path.Depth >= lwm2m.DepthInstance {
		return lwm2m.InstancePath(object.Object, recs[0].Path.Instance), nil
	}
	return lwm2m.Path{}, opError(opCreate, object, errors.New("device did not say which instance it created"))
}

// locationInstance reads the new instance from a Create's Location-Path:
// "/o/i", with or without the device's root path, or just "i".
func locationInstance(root string, object lwm2m.Path, loc []string) (lwm2m.Path, bool) {
	if root != "/" {
		rootSegs := strings.Split(strings.TrimPrefix(root, "/"), "/")
		if len(loc) > len(rootSegs) && equalSegs(loc[:len(rootSegs)], rootSegs) {
			loc = loc[len(rootSegs):]
		}
	}
	switch len(loc) {
	case 1:
		n, err := strconv.ParseUint(loc[0], 10, 16)
		if err != nil || n == 65535 {
			return lwm2m.Path{}, false
		}
		return lwm2m.InstancePath(object.Object, uint16(n)), true
	case 2:
		p, err := lwm2m.ParsePath(loc[0] + "/" + loc[1])
		if err != nil || p.Object != object.Object {
			return lwm2m.Path{}, false
		}
		return p, true
	}
	return lwm2m.Path{}, false
}

func equalSegs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Delete deletes the object instance (or, 1.1+, resource instance) p.
func (s *Server) Delete(ctx context.Context, clientID string, p lwm2m.Path) error {
	_, st, err := s.current(clientID)
	if err != nil {
		return opError(opDelete, p, err)
	}
	r, err := s.do(ctx, st, request{op: opDelete, code: codes.DELETE, path: p, accept: -1, observe: -1})
	if err != nil {
		return err
	}
	if !r.ok() {
		return deviceError(opDelete, p, r)
	}
	return nil
}

// Discover returns the device's links for p, with targets relative to the
// LwM2M root (a device's alternate path is removed).
func (s *Server) Discover(ctx context.Context, clientID string, p lwm2m.Path) ([]corelink.Link, error) {
	_, st, err := s.current(clientID)
	if err != nil {
		return nil, opError(opDiscover, p, err)
	}
	r, err := s.do(ctx, st, request{op: opDiscover, code: codes.GET, path: p, accept: int(lwm2m.FormatLinkFormat), observe: -1})
	if err != nil {
		return nil, err
	}
	if !r.ok() {
		return nil, deviceError(opDiscover, p, r)
	}
	links, err := corelink.Parse(r.payload)
	if err != nil {
		return nil, opError(opDiscover, p, err)
	}
	if root := st.reg.RootPath; root != "/" {
		for i := range links {
			if rest, ok := strings.CutPrefix(links[i].Target, root); ok && (rest == "" || rest[0] == '/') {
				if rest == "" {
					rest = "/"
				}
				links[i].Target = rest
			}
		}
	}
	return links, nil
}

// WriteAttributes sets notification attributes on p (PUT with Uri-Query,
// no payload).
func (s *Server) WriteAttributes(ctx context.Context, clientID string, p lwm2m.Path, a lwm2m.Attributes) error {
	_, st, err := s.current(clientID)
	if err != nil {
		return opError(opWriteAttributes, p, err)
	}
	r, err := s.do(ctx, st, request{op: opWriteAttributes, code: codes.PUT, path: p, accept: -1, query: a.Query(), observe: -1})
	if err != nil {
		return err
	}
	if !r.ok() {
		return deviceError(opWriteAttributes, p, r)
	}
	return nil
}
