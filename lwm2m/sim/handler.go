package sim

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/codec"
	"github.com/deviceserver/deviceserver/lwm2m/corelink"
)

// reqError is a CoAP error answer with an optional diagnostic.
type reqError struct {
	code codes.Code
	msg  string
}

func (e *reqError) Error() string { return codeString(e.code) + " " + e.msg }

func fail(code codes.Code, format string, args ...any) *reqError {
	return &reqError{code: code, msg: fmt.Sprintf(format, args...)}
}

// response is what a handler answers: a code, and a payload with its format.
type response struct {
	code    codes.Code
	format  lwm2m.ContentFormat
	payload []byte
	opts    message.Options
	observe *uint32 // Observe option value for an accepted observation
}

// serve is the CoAP handler for everything the server sends to the device.
// It runs on the connection's receive goroutine: it must not send requests
// of its own, only queue them.
func (d *Device) serve(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() == codes.Empty {
		if r.Type() == message.Reset {
			d.handleReset(r.MessageID())
		}
		return
	}
	if uint8(r.Code())>>5 != 0 {
		// A response nobody waits for any more (its request timed out):
		// not something to answer; go-coap ACKs it if it is confirmable.
		return
	}
	resp, err := d.handle(r)
	if err != nil {
		var re *reqError
		if !errors.As(err, &re) {
			re = &reqError{code: codes.InternalServerError, msg: err.Error()}
		}
		d.log.Debug("request failed", "code", codeString(re.code), "err", re.msg)
		if e := w.SetResponse(re.code, message.TextPlain, nil); e != nil {
			d.log.Debug("set response", "err", e)
		}
		if re.msg != "" {
			// A diagnostic payload carries no Content-Format (RFC 7252 5.5.2).
			w.Message().SetBody(bytes.NewReader([]byte(re.msg)))
		}
		return
	}
	var body *bytes.Reader
	if resp.payload != nil {
		body = bytes.NewReader(resp.payload)
	}
	if body != nil {
		err = w.SetResponse(resp.code, message.MediaType(resp.format), body, resp.opts...)
	} else {
		err = w.SetResponse(resp.code, message.TextPlain, nil, resp.opts...)
	}
	if err != nil {
		d.log.Debug("set response", "err", err)
		return
	}
	if resp.observe != nil {
		w.Message().SetObserve(*resp.observe)
	}
}

// request is the parts of a CoAP request the device looks at, copied out of
// the pooled message.
type request struct {
	code      codes.Code
	path      lwm2m.Path
	token     string
	queries   []string
	accept    lwm2m.ContentFormat
	hasAccept bool
	format    lwm2m.ContentFormat
	hasFormat bool
	payload   []byte
	observe   uint32
	hasObs    bool
}

func parseRequest(r *mux.Message) (*request, error) {
	req := &request{code: r.Code(), token: string(r.Token())}
	ps, err := r.Options().Path()
	if err != nil && !errors.Is(err, message.ErrOptionNotFound) {
		return nil, fail(codes.BadOption, "bad Uri-Path")
	}
	req.path, err = lwm2m.ParsePath(ps)
	if err != nil {
		return nil, fail(codes.NotFound, "%v", err)
	}
	req.queries, err = r.Queries()
	if err != nil && !errors.Is(err, message.ErrOptionNotFound) {
		return nil, fail(codes.BadOption, "bad Uri-Query")
	}
	if a, err := r.Accept(); err == nil {
		req.accept, req.hasAccept = lwm2m.ContentFormat(a), true
	}
	if f, err := r.ContentFormat(); err == nil {
		req.format, req.hasFormat = lwm2m.ContentFormat(f), true
	}
	if o, err := r.Observe(); err == nil {
		req.observe, req.hasObs = o, true
	}
	req.payload, err = r.ReadBody()
	if err != nil {
		return nil, fail(codes.BadRequest, "unreadable payload")
	}
	return req, nil
}

func (d *Device) handle(r *mux.Message) (*response, error) {
	req, err := parseRequest(r)
	if err != nil {
		return nil, err
	}
	d.log.Debug("request", "code", req.code.String(), "path", req.path.String())
	switch req.code {
	case codes.GET:
		if req.hasAccept && req.accept == lwm2m.FormatLinkFormat {
			return d.discover(req)
		}
		if req.hasObs && req.observe == 0 {
			return d.observe(req)
		}
		if req.hasObs && req.observe == 1 {
			d.cancelObservation(req.token)
		}
		return d.read(req)
	case codes.PUT:
		if len(req.payload) == 0 {
			return d.writeAttributes(req)
		}
		return d.write(req, true)
	case codes.POST:
		switch req.path.Depth {
		case lwm2m.DepthObject:
			return d.create(req)
		case lwm2m.DepthInstance:
			return d.write(req, false)
		case lwm2m.DepthResource:
			return d.execute(req)
		}
		return nil, fail(codes.MethodNotAllowed, "POST on %s", req.path)
	case codes.DELETE:
		return d.delete(req)
	}
	return nil, fail(codes.MethodNotAllowed, "")
}

// isSingle reports whether p addresses one value (text and opaque need that).
func isSingle(p lwm2m.Path) bool {
	if p.Depth == lwm2m.DepthResourceInstance {
		return true
	}
	if p.Depth != lwm2m.DepthResource {
		return false
	}
	def, _ := resourceDef(p.Object, p.Resource)
	return !def.multi
}

// readFormat picks the response format: the Accept, else text (opaque for
// Opaque resources) for single values, else SenML JSON for 1.1 and TLV for 1.0.
func (d *Device) readFormat(req *request) (lwm2m.ContentFormat, error) {
	if req.hasAccept {
		switch req.accept {
		case lwm2m.FormatText, lwm2m.FormatOpaque:
			if !isSingle(req.path) {
				return 0, fail(codes.NotAcceptable, "format %d needs a single resource", req.accept)
			}
			return req.accept, nil
		case lwm2m.FormatTLV, lwm2m.FormatTLVLegacy, lwm2m.FormatSenMLJSON:
			return req.accept, nil
		}
		if codec.Supported(req.accept) {
			return req.accept, nil
		}
		return 0, fail(codes.NotAcceptable, "format %d", req.accept)
	}
	if isSingle(req.path) {
		if def, _ := resourceDef(req.path.Object, req.path.Resource); def.typ == lwm2m.TypeOpaque {
			return lwm2m.FormatOpaque, nil
		}
		return lwm2m.FormatText, nil
	}
	if d.cfg.Version == "1.0" {
		return lwm2m.FormatTLV, nil
	}
	return lwm2m.FormatSenMLJSON, nil
}

// checkReadable answers 4.04/4.05 for paths that cannot be read.
func (d *Device) checkReadable(p lwm2m.Path) error {
	if p.Depth == lwm2m.DepthRoot {
		return fail(codes.MethodNotAllowed, "read of the root")
	}
	if !d.store.exists(p) {
		return fail(codes.NotFound, "%s", p)
	}
	if p.Depth >= lwm2m.DepthResource {
		if def, _ := resourceDef(p.Object, p.Resource); def.ops&opR == 0 {
			return fail(codes.MethodNotAllowed, "%s is not readable", p)
		}
	}
	return nil
}

// encodeLocked reads p in format f; the caller holds d.mu.
func (d *Device) encodeLocked(p lwm2m.Path, f lwm2m.ContentFormat, now time.Time) ([]byte, error) {
	if err := d.checkReadable(p); err != nil {
		return nil, err
	}
	recs := d.store.records(p, now)
	b, err := codec.Encode(f, p, recs, Resolver())
	if err != nil {
		if f == lwm2m.FormatText || f == lwm2m.FormatOpaque {
			return nil, fail(codes.NotAcceptable, "%v", err)
		}
		return nil, fail(codes.InternalServerError, "%v", err)
	}
	return b, nil
}

func (d *Device) read(req *request) (*response, error) {
	f, err := d.readFormat(req)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	b, err := d.encodeLocked(req.path, f, d.clock.Now())
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &response{code: codes.Content, format: f, payload: b}, nil
}

// discover answers GET with Accept: application/link-format.
func (d *Device) discover(req *request) (*response, error) {
	p := req.path
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.Depth == lwm2m.DepthRoot {
		return nil, fail(codes.MethodNotAllowed, "discover of the root")
	}
	if !d.store.exists(p) {
		return nil, fail(codes.NotFound, "%s", p)
	}
	var links []corelink.Link
	link := func(q lwm2m.Path, extra ...corelink.Param) {
		l := corelink.Link{Target: q.String(), Params: extra}
		for _, kv := range d.attrs[q].Query() {
			k, v, _ := strings.Cut(kv, "=")
			l.Params = append(l.Params, corelink.Param{Key: k, Value: v, HasValue: true})
		}
		links = append(links, l)
	}
	resource := func(q lwm2m.Path) {
		def, _ := resourceDef(q.Object, q.Resource)
		if !def.multi {
			link(q)
			return
		}
		ris := d.store.resourceInstanceIDs(q)
		link(q, corelink.Param{Key: "dim", Value: strconv.Itoa(len(ris)), HasValue: true})
		if d.cfg.Version != "1.0" && p.Depth == lwm2m.DepthResource {
			for _, ri := range ris {
				link(lwm2m.ResourceInstancePath(q.Object, q.Instance, q.Resource, ri))
			}
		}
	}
	instance := func(q lwm2m.Path) {
		link(q)
		for _, r := range objectResources(q.Object) {
			resource(lwm2m.ResourcePath(q.Object, q.Instance, r))
		}
	}
	switch p.Depth {
	case lwm2m.DepthObject:
		link(p)
		for _, i := range d.store.instanceIDs(p.Object) {
			instance(lwm2m.InstancePath(p.Object, i))
		}
	case lwm2m.DepthInstance:
		instance(p)
	case lwm2m.DepthResource:
		resource(p)
	default:
		link(p)
	}
	return &response{code: codes.Content, format: lwm2m.FormatLinkFormat, payload: corelink.Format(links)}, nil
}

// decode turns a write/create payload into typed records under base.
func decode(req *request, base lwm2m.Path) ([]lwm2m.Record, error) {
	if !req.hasFormat {
		return nil, fail(codes.BadRequest, "payload without Content-Format")
	}
	if !codec.Supported(req.format) {
		return nil, fail(codes.UnsupportedMediaType, "format %d", req.format)
	}
	recs, err := codec.Decode(req.format, base, req.payload, Resolver())
	if err != nil {
		return nil, fail(codes.BadRequest, "%v", err)
	}
	return recs, nil
}

// checkWritable validates records for a Write/Create under base and
// converts their values to the resource types.
func checkWritable(base lwm2m.Path, recs []lwm2m.Record, create bool) error {
	for i, rec := range recs {
		if rec.Path.Depth < lwm2m.DepthResource || !base.Contains(rec.Path) {
			return fail(codes.BadRequest, "record %s outside %s", rec.Path, base)
		}
		def, ok := resourceDef(rec.Path.Object, rec.Path.Resource)
		if !ok {
			return fail(codes.NotFound, "no resource %s", rec.Path)
		}
		if def.multi != (rec.Path.Depth == lwm2m.DepthResourceInstance) {
			return fail(codes.BadRequest, "record %s does not match the resource's multiplicity", rec.Path)
		}
		// Create may set the read-only resources of the new instance, as a
		// device's own initial values; Write may not.
		if def.ops&opW == 0 && !(create && def.ops&opR != 0) {
			return fail(codes.MethodNotAllowed, "%s is not writable", rec.Path)
		}
		v, err := lwm2m.CoerceValue(def.typ, normalize(rec.Value))
		if err != nil {
			return fail(codes.BadRequest, "%v", err)
		}
		recs[i].Value = v
	}
	return nil
}

// write handles Write (PUT: replace) and Write partial update (POST to an
// instance). Replace of an instance does not remove resources missing from
// the payload: the simulator keeps no mandatory/optional flags, and losing
// e.g. the Lifetime would break the device.
func (d *Device) write(req *request, replace bool) (*response, error) {
	p := req.path
	if p.Depth < lwm2m.DepthInstance {
		return nil, fail(codes.MethodNotAllowed, "write to %s", p)
	}
	triggerUpdate := false
	defer func() {
		// After the unlock below: the server must learn a new lifetime or
		// binding from an Update.
		if triggerUpdate {
			d.triggerUpdate()
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.store.instances[lwm2m.InstancePath(p.Object, p.Instance)] {
		return nil, fail(codes.NotFound, "%s", p)
	}
	if p.Depth >= lwm2m.DepthResource {
		def, ok := resourceDef(p.Object, p.Resource)
		if !ok {
			return nil, fail(codes.NotFound, "%s", p)
		}
		if def.ops&opW == 0 {
			return nil, fail(codes.MethodNotAllowed, "%s is not writable", p)
		}
		if p.Depth == lwm2m.DepthResourceInstance && !def.multi {
			return nil, fail(codes.NotFound, "%s", p)
		}
	}
	recs, err := decode(req, p)
	if err != nil {
		return nil, err
	}
	if err := checkWritable(p, recs, false); err != nil {
		return nil, err
	}
	now := d.clock.Now()
	var changed []lwm2m.Path
	if replace {
		// Replacing a multiple resource replaces all of its instances.
		for _, rec := range recs {
			if rec.Path.Depth == lwm2m.DepthResourceInstance && p.Depth <= lwm2m.DepthResource {
				rp := lwm2m.ResourcePath(rec.Path.Object, rec.Path.Instance, rec.Path.Resource)
				for _, ri := range d.store.resourceInstanceIDs(rp) {
					q := lwm2m.ResourceInstancePath(rp.Object, rp.Instance, rp.Resource, ri)
					delete(d.store.values, q)
					changed = append(changed, q)
				}
			}
		}
	}
	for _, rec := range recs {
		rp := rec.Path
		switch {
		case rp.Object == objDevice && rp.Resource == resDeviceCurrentTime:
			d.store.timeOffset = rec.Value.(time.Time).Sub(now)
		case rp.Object == objServer && (rp.Resource == resServerLifetime || rp.Resource == resServerBinding):
			triggerUpdate = true
		}
		d.store.values[rp] = rec.Value
		changed = append(changed, rp)
	}
	d.changedLocked(now, changed...)
	d.log.Info("write", "path", p.String(), "records", len(recs))
	return &response{code: codes.Changed}, nil
}

// execute handles POST to a resource.
func (d *Device) execute(req *request) (*response, error) {
	p := req.path
	d.mu.Lock()
	if !d.store.exists(p) {
		d.mu.Unlock()
		return nil, fail(codes.NotFound, "%s", p)
	}
	if def, _ := resourceDef(p.Object, p.Resource); def.ops&opE == 0 {
		d.mu.Unlock()
		return nil, fail(codes.MethodNotAllowed, "%s is not executable", p)
	}
	if p.Object == objTemperature && p.Resource == resResetMinMax {
		if cur, ok := d.store.values[lwm2m.ResourcePath(objTemperature, p.Instance, resSensorValue)].(float64); ok {
			minP := lwm2m.ResourcePath(objTemperature, p.Instance, resMinMeasured)
			maxP := lwm2m.ResourcePath(objTemperature, p.Instance, resMaxMeasured)
			d.store.values[minP], d.store.values[maxP] = cur, cur
			d.changedLocked(d.clock.Now(), minP, maxP)
		}
	}
	d.mu.Unlock()
	if p.Object == objServer && p.Resource == resServerUpdateTrigger {
		d.triggerUpdate()
	}
	ex := Execution{Path: p, Args: string(req.payload)}
	d.log.Info("execute", "path", p.String(), "args", ex.Args)
	select {
	case d.executed <- ex:
	default:
		d.log.Warn("execution dropped: nobody reads Executed()", "path", p.String())
	}
	return &response{code: codes.Changed}, nil
}

// create handles POST to an object: only 3303 instances may be created.
func (d *Device) create(req *request) (*response, error) {
	p := req.path
	if !knownObject(p.Object) {
		return nil, fail(codes.NotFound, "%s", p)
	}
	if p.Object != objTemperature {
		return nil, fail(codes.MethodNotAllowed, "create in %s", p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	id, recs, err := d.createRecords(req)
	if err != nil {
		return nil, err
	}
	ip := lwm2m.InstancePath(p.Object, id)
	if d.store.instances[ip] {
		return nil, fail(codes.BadRequest, "%s exists", ip)
	}
	if err := checkWritable(ip, recs, true); err != nil {
		return nil, err
	}
	d.store.addTemperature(id)
	for _, rec := range recs {
		d.store.values[rec.Path] = rec.Value
	}
	d.changedLocked(d.clock.Now(), ip)
	d.log.Info("create", "path", ip.String())
	opts := message.Options{
		{ID: message.LocationPath, Value: []byte(strconv.Itoa(int(p.Object)))},
		{ID: message.LocationPath, Value: []byte(strconv.Itoa(int(id)))},
	}
	return &response{code: codes.Created, opts: opts}, nil
}

// createRecords decodes a Create payload, which may or may not name the new
// instance: with an instance the records lie under /o/i; without, they are
// resources of an instance the device picks.
func (d *Device) createRecords(req *request) (uint16, []lwm2m.Record, error) {
	p := req.path
	if len(req.payload) == 0 {
		return d.freeInstance(p.Object), nil, nil
	}
	if !req.hasFormat {
		return 0, nil, fail(codes.BadRequest, "payload without Content-Format")
	}
	// A TLV payload starting with a Resource or Multiple Resource TLV (type
	// bits 11 or 10) has no Object Instance TLV around it.
	tlv := req.format == lwm2m.FormatTLV || req.format == lwm2m.FormatTLVLegacy
	withInstance := !tlv || req.payload[0]>>6 == 0
	if withInstance {
		recs, err := decode(req, p)
		if err == nil && len(recs) > 0 && sameInstance(recs) {
			return recs[0].Path.Instance, recs, nil
		}
		if tlv {
			if err == nil {
				err = fail(codes.BadRequest, "create payload must hold one instance")
			}
			return 0, nil, err
		}
	}
	id := d.freeInstance(p.Object)
	recs, err := decode(req, lwm2m.InstancePath(p.Object, id))
	if err != nil {
		return 0, nil, err
	}
	return id, recs, nil
}

func sameInstance(recs []lwm2m.Record) bool {
	for _, r := range recs {
		if r.Path.Depth < lwm2m.DepthResource || r.Path.Instance != recs[0].Path.Instance {
			return false
		}
	}
	return true
}

// freeInstance returns the lowest unused instance ID of an object.
func (d *Device) freeInstance(object uint16) uint16 {
	var id uint16
	for d.store.instances[lwm2m.InstancePath(object, id)] {
		id++
	}
	return id
}

// delete handles DELETE of a 3303 instance.
func (d *Device) delete(req *request) (*response, error) {
	p := req.path
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.Depth != lwm2m.DepthInstance {
		return nil, fail(codes.MethodNotAllowed, "delete of %s", p)
	}
	if !d.store.instances[p] {
		return nil, fail(codes.NotFound, "%s", p)
	}
	if p.Object != objTemperature {
		return nil, fail(codes.MethodNotAllowed, "delete of %s", p)
	}
	d.store.deleteInstance(p)
	for k := range d.attrs {
		if p.Contains(k) {
			delete(d.attrs, k)
		}
	}
	d.changedLocked(d.clock.Now(), p)
	d.log.Info("delete", "path", p.String())
	return &response{code: codes.Deleted}, nil
}

// writeAttributes handles PUT with Uri-Query and no payload. A key without
// a value ("pmin") removes that attribute.
func (d *Device) writeAttributes(req *request) (*response, error) {
	p := req.path
	if len(req.queries) == 0 {
		return nil, fail(codes.BadRequest, "PUT without payload or attributes")
	}
	var set, unset []string
	for _, q := range req.queries {
		k, _, hasValue := strings.Cut(q, "=")
		if hasValue {
			set = append(set, q)
			continue
		}
		if _, err := lwm2m.ParseAttributes([]string{k + "=0"}); err != nil {
			return nil, fail(codes.BadRequest, "%v", err)
		}
		unset = append(unset, k)
	}
	parsed, err := lwm2m.ParseAttributes(set)
	if err != nil {
		return nil, fail(codes.BadRequest, "%v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.Depth == lwm2m.DepthRoot || !d.store.exists(p) {
		return nil, fail(codes.NotFound, "%s", p)
	}
	a := d.attrs[p].Overlay(parsed)
	for _, k := range unset {
		switch k {
		case "pmin":
			a.Pmin = nil
		case "pmax":
			a.Pmax = nil
		case "epmin":
			a.Epmin = nil
		case "epmax":
			a.Epmax = nil
		case "gt":
			a.Gt = nil
		case "lt":
			a.Lt = nil
		case "st":
			a.St = nil
		}
	}
	if a.Gt != nil || a.Lt != nil || a.St != nil {
		def, _ := resourceDef(p.Object, p.Resource)
		numericType := def.typ == lwm2m.TypeInteger || def.typ == lwm2m.TypeUnsignedInteger || def.typ == lwm2m.TypeFloat
		if p.Depth < lwm2m.DepthResource || !numericType {
			return nil, fail(codes.BadRequest, "gt, lt and st apply to numeric resources only")
		}
	}
	if a.St != nil && *a.St < 0 {
		return nil, fail(codes.BadRequest, "st must not be negative")
	}
	// LwM2M requires lt < gt and lt + 2*st < gt when these are combined.
	if a.Gt != nil && a.Lt != nil {
		st := 0.0
		if a.St != nil {
			st = *a.St
		}
		if !(*a.Lt+2*st < *a.Gt) {
			return nil, fail(codes.BadRequest, "lt + 2*st must be below gt")
		}
	}
	if a.IsZero() {
		delete(d.attrs, p)
	} else {
		d.attrs[p] = a
	}
	d.attributesChangedLocked(d.clock.Now())
	d.log.Info("write-attributes", "path", p.String(), "attributes", strings.Join(a.Query(), "&"))
	return &response{code: codes.Changed}, nil
}
