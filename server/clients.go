package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/deviceserver/deviceserver/hypermedia"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
	mt "github.com/deviceserver/deviceserver/mimetypes"
	"github.com/deviceserver/deviceserver/storage"
)

// clientRep is application/vnd.imgtec.client. Groups are the names of the
// organisation's groups that list the endpoint ([] when none); the device
// information comes from object 3, read after registration, when known.
type clientRep struct {
	Name            string           `json:"Name"`
	ClientID        string           `json:"ClientID"`
	Lifetime        uint32           `json:"Lifetime"`
	LwM2MVersion    string           `json:"LwM2MVersion"`
	BindingMode     string           `json:"BindingMode"`
	QueueMode       bool             `json:"QueueMode"`
	RegisteredAt    time.Time        `json:"RegisteredAt"`
	LastUpdate      time.Time        `json:"LastUpdate"`
	ExpiresAt       time.Time        `json:"ExpiresAt"`
	Online          bool             `json:"Online"`
	Address         string           `json:"Address"`
	Groups          []string         `json:"Groups"`
	Manufacturer    string           `json:"Manufacturer,omitempty"`
	Model           string           `json:"Model,omitempty"`
	FirmwareVersion string           `json:"FirmwareVersion,omitempty"`
	SerialNumber    string           `json:"SerialNumber,omitempty"`
	Links           hypermedia.Links `json:"Links"`
}

func (s *Server) clientRep(c *call, reg lwm2m.Registration) clientRep {
	self := href(c.base, pathClient, reg.ID)
	var groups []string
	if s.cfg.Subscriptions != nil {
		groups = s.cfg.Subscriptions.GroupsOf(reg.Organisation, reg.Endpoint)
	}
	if groups == nil {
		groups = []string{}
	}
	rep := clientRep{
		Name: reg.Endpoint, ClientID: reg.ID, Lifetime: reg.Lifetime, LwM2MVersion: reg.Version,
		BindingMode: reg.Binding, QueueMode: reg.QueueMode, RegisteredAt: reg.RegisteredAt.UTC(),
		LastUpdate: reg.LastUpdate.UTC(), ExpiresAt: reg.ExpiresAt.UTC(), Online: !reg.Expired(s.cfg.Now()),
		Address: reg.Address, Groups: groups,
		Links: hypermedia.Links{}.
			Add("self", self, mt.Type(mt.Client)).
			Add("remove", self, "").
			Add("objecttypes", href(c.base, pathObjectTypes, reg.ID), mt.Type(mt.ObjectTypes)).
			Add("subscriptions", href(c.base, pathClientSubs, reg.ID), mt.Type(mt.Subscriptions)).
			Add("metrics", href(c.base, pathClientMetrics, reg.ID), mt.Type(mt.Metrics)),
	}
	if d := reg.Device; d != nil {
		rep.Manufacturer, rep.Model, rep.FirmwareVersion, rep.SerialNumber = d.Manufacturer, d.ModelNumber, d.FirmwareVersion, d.SerialNumber
	}
	return rep
}

// listClients serves GET /clients with ?name=, ?online=, ?group= and paging.
func (s *Server) listClients(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	f := storage.RegistrationFilter{Organisation: c.auth.Org, Endpoint: q.Get("name"), Group: q.Get("group"), Now: s.cfg.Now()}
	if v := q.Get("online"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.badRequest(w, codeInvalidFields, "online must be true or false", "online")
			return
		}
		f.Online = &b
	}
	start, size, ok := s.pageParams(w, r)
	if !ok {
		return
	}
	regs, total, err := s.cfg.Store.ListRegistrations(r.Context(), f, start, size)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reps := make([]clientRep, len(regs))
	for i, reg := range regs {
		reps[i] = s.clientRep(c, reg)
	}
	writePage(s, w, r, c, reps, start, size, total, hypermedia.Links{})
}

// registration loads a registration of the caller's organisation.
func (s *Server) registration(w http.ResponseWriter, r *http.Request, c *call) (lwm2m.Registration, bool) {
	return owned(s, w, r, c, c.vars["client"], s.cfg.Store.GetRegistration, func(v lwm2m.Registration) string { return v.Organisation })
}

func (s *Server) getClient(w http.ResponseWriter, r *http.Request, c *call) {
	if reg, ok := s.registration(w, r, c); ok {
		s.write(w, c, http.StatusOK, s.clientRep(c, reg))
	}
}

// forgetter is implemented by a device side that keeps registrations
// itself (the CoAP endpoint): it must drop them too, or the device's next
// Update would bring the registration back.
type forgetter interface {
	Forget(ctx context.Context, clientID string) error
}

// deleteClient forgets the registration: the device must register again.
func (s *Server) deleteClient(w http.ResponseWriter, r *http.Request, c *call) {
	reg, ok := s.registration(w, r, c)
	if !ok {
		return
	}
	var err error
	if f, ok := s.cfg.Devices.(forgetter); ok {
		err = f.Forget(r.Context(), reg.ID)
	} else {
		err = s.cfg.Store.DeleteRegistration(r.Context(), reg.ID)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// definition returns the caller's view of an object definition, or a bare
// stand-in for objects nobody defined (their resources are named by ID).
func (s *Server) definition(org string, id uint16) (*model.Object, bool) {
	if d, ok := s.cfg.Models.Lookup(org, id); ok {
		return d, true
	}
	n := strconv.Itoa(int(id))
	return &model.Object{ID: id, Name: "Object " + n, MIMEType: mt.OMA + "object" + n, SerialisationName: "Object" + n, MultipleInstances: true}, false
}

type objectTypeRep struct {
	ObjectTypeID string           `json:"ObjectTypeID"`
	Version      string           `json:"Version,omitempty"`
	Links        hypermedia.Links `json:"Links"`
}

// announced returns the registration's objects: ID → version.
func announced(reg lwm2m.Registration) (ids []uint16, versions map[uint16]string) {
	versions = map[uint16]string{}
	for _, o := range reg.Objects {
		v, seen := versions[o.Path.Object]
		if !seen {
			ids = append(ids, o.Path.Object)
		}
		if v == "" {
			versions[o.Path.Object] = o.Version
		}
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	return ids, versions
}

func (s *Server) objectTypeRep(c *call, reg lwm2m.Registration, id uint16, version string) objectTypeRep {
	n := strconv.Itoa(int(id))
	rep := objectTypeRep{ObjectTypeID: n, Version: version}
	rep.Links = rep.Links.Add("self", href(c.base, pathObjectType, reg.ID, n), mt.Type(mt.ObjectType))
	def, known := s.definition(c.auth.Org, id)
	if known {
		rep.Links = rep.Links.Add("definition", href(c.base, pathDefinition, n), mt.Type(mt.ObjectDefinition))
	}
	rep.Links = rep.Links.Add("instances", href(c.base, pathInstances, reg.ID, n), mt.Plural(def.MIMEType))
	return rep
}

func (s *Server) listObjectTypes(w http.ResponseWriter, r *http.Request, c *call) {
	reg, ok := s.registration(w, r, c)
	if !ok {
		return
	}
	ids, versions := announced(reg)
	reps := make([]objectTypeRep, len(ids))
	for i, id := range ids {
		reps[i] = s.objectTypeRep(c, reg, id, versions[id])
	}
	page(s, w, r, c, reps, hypermedia.Links{})
}

// objectVar parses the {object} route variable and checks the device announced it.
func (s *Server) objectVar(w http.ResponseWriter, r *http.Request, c *call, reg lwm2m.Registration) (uint16, string, bool) {
	n, err := strconv.ParseUint(c.vars["object"], 10, 16)
	ids, versions := announced(reg)
	found := false
	for _, id := range ids {
		found = found || (err == nil && uint64(id) == n)
	}
	if !found {
		s.errorBody(w, r, http.StatusNotFound, "the client has no object "+c.vars["object"])
		return 0, "", false
	}
	return uint16(n), versions[uint16(n)], true
}

func (s *Server) getObjectType(w http.ResponseWriter, r *http.Request, c *call) {
	reg, ok := s.registration(w, r, c)
	if !ok {
		return
	}
	id, version, ok := s.objectVar(w, r, c, reg)
	if ok {
		s.write(w, c, http.StatusOK, s.objectTypeRep(c, reg, id, version))
	}
}

// instanceCall gathers what every instance-level handler needs.
type instanceCall struct {
	reg      lwm2m.Registration
	def      *model.Object
	known    bool // def is a real definition, not a stand-in
	object   uint16
	instance uint16
}

// instanceVars resolves client, object and (when withInstance) instance.
func (s *Server) instanceVars(w http.ResponseWriter, r *http.Request, c *call, withInstance bool) (instanceCall, bool) {
	var ic instanceCall
	var ok bool
	if r.URL.Query().Get("cached") != "" {
		// Answering from last known values needs a value cache, which does
		// not exist yet; saying so beats silently asking the device.
		s.errorBody(w, r, http.StatusNotImplemented, "cached reads are not supported yet")
		return ic, false
	}
	if ic.reg, ok = s.registration(w, r, c); !ok {
		return ic, false
	}
	if ic.object, _, ok = s.objectVar(w, r, c, ic.reg); !ok {
		return ic, false
	}
	ic.def, ic.known = s.definition(c.auth.Org, ic.object)
	if withInstance {
		n, err := strconv.ParseUint(c.vars["instance"], 10, 16)
		if err != nil || n == 65535 {
			s.errorBody(w, r, http.StatusNotFound, "no instance "+c.vars["instance"])
			return ic, false
		}
		ic.instance = uint16(n)
	}
	return ic, true
}

// instanceRep renders one instance: InstanceID, its resources, Links.
func (s *Server) instanceRep(c *call, ic instanceCall, inst uint16, recs []lwm2m.Record) hypermedia.Object {
	n := strconv.Itoa(int(inst))
	obj := strconv.Itoa(int(ic.object))
	self := href(c.base, pathInstance, ic.reg.ID, obj, n)
	links := hypermedia.Links{}.
		Add("self", self, ic.def.MIMEType).
		Add("update", self, ic.def.MIMEType).
		Add("remove", self, "").
		Add("subscriptions", href(c.base, pathInstanceSubs, ic.reg.ID, obj, n), mt.Type(mt.Subscriptions))
	if ic.known {
		links = links.Add("definition", href(c.base, pathDefinition, obj), mt.Type(mt.ObjectDefinition))
	}
	for _, res := range ic.def.Resources {
		if res.Executable() {
			links = append(links, hypermedia.Link{Rel: "execute", Href: href(c.base, pathResource, ic.reg.ID, obj, n, strconv.Itoa(int(res.ID))), Title: res.SerialisationName})
		}
	}
	out := hypermedia.Object{{Name: "InstanceID", Value: n}}
	out = append(out, hypermedia.ResourceFields(ic.def, recs)...)
	return append(out, hypermedia.Field{Name: "Links", Value: links})
}

// listInstances reads the whole object from the device.
func (s *Server) listInstances(w http.ResponseWriter, r *http.Request, c *call) {
	ic, ok := s.instanceVars(w, r, c, false)
	if !ok || !s.negotiate(w, r, c, mt.Plural(ic.def.MIMEType)) {
		return
	}
	recs, err := s.cfg.Devices.Read(r.Context(), ic.reg.ID, lwm2m.ObjectPath(ic.object))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	byInstance := map[uint16][]lwm2m.Record{}
	var order []uint16
	for _, rec := range recs {
		i := rec.Path.Instance
		if _, seen := byInstance[i]; !seen {
			order = append(order, i)
		}
		byInstance[i] = append(byInstance[i], rec)
	}
	sort.Slice(order, func(a, b int) bool { return order[a] < order[b] })
	items := make([]hypermedia.Object, len(order))
	for k, i := range order {
		items[k] = s.instanceRep(c, ic, i, byInstance[i])
	}
	page(s, w, r, c, items, hypermedia.Links{}.Add("add", href(c.base, pathInstances, ic.reg.ID, strconv.Itoa(int(ic.object))), ic.def.MIMEType))
}

func (s *Server) getInstance(w http.ResponseWriter, r *http.Request, c *call) {
	ic, ok := s.instanceVars(w, r, c, true)
	if !ok || !s.negotiate(w, r, c, ic.def.MIMEType) {
		return
	}
	recs, err := s.cfg.Devices.Read(r.Context(), ic.reg.ID, lwm2m.InstancePath(ic.object, ic.instance))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.write(w, c, http.StatusOK, s.instanceRep(c, ic, ic.instance, recs))
}

// instanceBody decodes a JSON instance body into records of instance inst.
func (s *Server) instanceBody(w http.ResponseWriter, r *http.Request, ic instanceCall, inst uint16, body map[string]any, create bool) ([]lwm2m.Record, bool) {
	recs, err := hypermedia.ParseResourceFields(ic.def, inst, body, create)
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	return recs, true
}

// writeInstance is LwM2M Write: partial update, or replace with ?replace=true.
func (s *Server) writeInstance(w http.ResponseWriter, r *http.Request, c *call) {
	ic, ok := s.instanceVars(w, r, c, true)
	if !ok {
		return
	}
	replace, err := strconv.ParseBool(r.URL.Query().Get("replace"))
	if err != nil && r.URL.Query().Get("replace") != "" {
		s.badRequest(w, codeInvalidFields, "replace must be true or false", "replace")
		return
	}
	var body map[string]any
	if !s.decodeBodyAs(w, r, &body, ic.def.MIMEType) {
		return
	}
	recs, ok := s.instanceBody(w, r, ic, ic.instance, body, false)
	if !ok {
		return
	}
	if len(recs) == 0 && !replace {
		s.badRequest(w, codeInvalidFields, "no writable resource given")
		return
	}
	if err := s.cfg.Devices.Write(r.Context(), ic.reg.ID, lwm2m.InstancePath(ic.object, ic.instance), recs, replace); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type createdRep struct {
	ID    string           `json:"ID"`
	Links hypermedia.Links `json:"Links"`
}

// createInstance is LwM2M Create. Without an InstanceID in the body the
// server picks the next ID after those the device announced, so that the
// same request works with 1.0 devices, which need the ID in the payload.
func (s *Server) createInstance(w http.ResponseWriter, r *http.Request, c *call) {
	ic, ok := s.instanceVars(w, r, c, false)
	if !ok {
		return
	}
	var body map[string]any
	if !s.decodeBodyAs(w, r, &body, ic.def.MIMEType) {
		return
	}
	inst := nextInstance(ic.reg, ic.object)
	if v, given := body["InstanceID"]; given {
		n, err := strconv.ParseUint(jsonString(v), 10, 16)
		if err != nil || n == 65535 {
			s.badRequest(w, codeInvalidFields, "InstanceID must be an integer from 0 to 65534", "InstanceID")
			return
		}
		inst = uint16(n)
	}
	recs, ok := s.instanceBody(w, r, ic, inst, body, true)
	if !ok {
		return
	}
	p, err := s.cfg.Devices.Create(r.Context(), ic.reg.ID, lwm2m.ObjectPath(ic.object), recs)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id := strconv.Itoa(int(p.Instance))
	self := href(c.base, pathInstance, ic.reg.ID, strconv.Itoa(int(ic.object)), id)
	w.Header().Set("Location", self)
	s.write(w, c, http.StatusCreated, createdRep{ID: id, Links: hypermedia.Links{}.Add("self", self, ic.def.MIMEType)})
}

// jsonString renders a decoded JSON scalar as text.
func jsonString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return "invalid"
}

// nextInstance is one past the highest instance the device announced.
func nextInstance(reg lwm2m.Registration, object uint16) uint16 {
	next := uint16(0)
	for _, o := range reg.Objects {
		if o.Path.Object == object && o.Path.Depth == lwm2m.DepthInstance && o.Path.Instance >= next {
			next = o.Path.Instance + 1
		}
	}
	return next
}

func (s *Server) deleteInstance(w http.ResponseWriter, r *http.Request, c *call) {
	ic, ok := s.instanceVars(w, r, c, true)
	if !ok {
		return
	}
	if err := s.cfg.Devices.Delete(r.Context(), ic.reg.ID, lwm2m.InstancePath(ic.object, ic.instance)); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// resourceVars resolves a single-resource route.
func (s *Server) resourceVars(w http.ResponseWriter, r *http.Request, c *call) (instanceCall, *model.Resource, lwm2m.Path, bool) {
	ic, ok := s.instanceVars(w, r, c, true)
	if !ok {
		return ic, nil, lwm2m.Path{}, false
	}
	n, err := strconv.ParseUint(c.vars["resource"], 10, 16)
	if err != nil || n == 65535 {
		s.errorBody(w, r, http.StatusNotFound, "no resource "+c.vars["resource"])
		return ic, nil, lwm2m.Path{}, false
	}
	res, known := ic.def.Resource(uint16(n))
	if !known {
		res = &model.Resource{ID: uint16(n), Name: c.vars["resource"], SerialisationName: c.vars["resource"], Operations: "RWE", Type: lwm2m.TypeOpaque}
	}
	return ic, res, lwm2m.ResourcePath(ic.object, ic.instance, uint16(n)), true
}

// getResource reads one resource; the body is the instance type with that field.
func (s *Server) getResource(w http.ResponseWriter, r *http.Request, c *call) {
	ic, _, p, ok := s.resourceVars(w, r, c)
	if !ok || !s.negotiate(w, r, c, ic.def.MIMEType) {
		return
	}
	recs, err := s.cfg.Devices.Read(r.Context(), ic.reg.ID, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	self := hypermedia.Links{}.Add("self", href(c.base, pathResource, ic.reg.ID, c.vars["object"], c.vars["instance"], c.vars["resource"]), ic.def.MIMEType)
	s.write(w, c, http.StatusOK, append(hypermedia.ResourceFields(ic.def, recs), hypermedia.Field{Name: "Links", Value: self}))
}

// writeResource writes one resource; the body is {"Name": value} or the bare value.
func (s *Server) writeResource(w http.ResponseWriter, r *http.Request, c *call) {
	ic, res, p, ok := s.resourceVars(w, r, c)
	if !ok {
		return
	}
	if !res.Writable() {
		s.errorBody(w, r, http.StatusMethodNotAllowed, res.SerialisationName+" is not writable")
		return
	}
	var body any
	if !s.decodeBodyAs(w, r, &body, ic.def.MIMEType) {
		return
	}
	if m, isObj := body.(map[string]any); isObj && !res.Multiple {
		v, found := m[res.SerialisationName]
		if !found {
			v, found = m[c.vars["resource"]]
		}
		if !found || len(m) != 1 {
			s.badRequest(w, codeInvalidFields, "the body must hold only "+res.SerialisationName, res.SerialisationName)
			return
		}
		body = v
	}
	recs, err := hypermedia.ParseResourceValue(res, p, body)
	if err != nil {
		s.badRequest(w, codeInvalidFields, err.Error(), res.SerialisationName)
		return
	}
	if err := s.cfg.Devices.Write(r.Context(), ic.reg.ID, p, recs, true); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// executeResource is LwM2M Execute with optional text/plain arguments.
func (s *Server) executeResource(w http.ResponseWriter, r *http.Request, c *call) {
	ic, res, p, ok := s.resourceVars(w, r, c)
	if !ok {
		return
	}
	if !res.Executable() {
		s.errorBody(w, r, http.StatusMethodNotAllowed, res.SerialisationName+" is not executable")
		return
	}
	args, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.errorBody(w, r, http.StatusRequestEntityTooLarge, "arguments too long")
			return
		}
		s.badRequest(w, codeMalformed, "cannot read the body")
		return
	}
	if len(args) > 0 {
		if typ, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || typ != "text/plain" {
			s.errorBody(w, r, http.StatusUnsupportedMediaType, "execute arguments must be text/plain")
			return
		}
	}
	if err := s.cfg.Devices.Execute(r.Context(), ic.reg.ID, p, string(args)); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
