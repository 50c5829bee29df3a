package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/deviceserver/deviceserver/hypermedia"
	"github.com/deviceserver/deviceserver/lwm2m"
	mt "github.com/deviceserver/deviceserver/mimetypes"
	"github.com/deviceserver/deviceserver/storage"
	"github.com/deviceserver/deviceserver/subscriptions"
)

// number is a JSON attribute value given as a number or a numeric string.
type number struct {
	v   float64
	set bool
}

// UnmarshalJSON accepts 5, 0.5 and "5".
func (n *number) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		// A type error lets encoding/json name the field (Attributes.Pmin)
		// for the BadRequest's InvalidFields.
		return &json.UnmarshalTypeError{Value: "value " + string(b), Type: reflect.TypeFor[float64]()}
	}
	n.v, n.set = f, true
	return nil
}

// MarshalJSON writes the number.
func (n number) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(n.v, 'g', -1, 64)), nil
}

// attributesRep is the Attributes member of a subscription.
type attributesRep struct {
	Pmin        *number `json:"Pmin,omitempty"`
	Pmax        *number `json:"Pmax,omitempty"`
	Step        *number `json:"Step,omitempty"`
	LessThan    *number `json:"LessThan,omitempty"`
	GreaterThan *number `json:"GreaterThan,omitempty"`
}

// toLwM2M converts to notification attributes; periods must be whole,
// non-negative seconds.
func (a *attributesRep) toLwM2M() (lwm2m.Attributes, []string) {
	var out lwm2m.Attributes
	if a == nil {
		return out, nil
	}
	var bad []string
	period := func(name string, n *number) *uint32 {
		if n == nil || !n.set {
			return nil
		}
		if n.v < 0 || n.v != math.Trunc(n.v) || n.v > math.MaxUint32 {
			bad = append(bad, "Attributes."+name)
			return nil
		}
		v := uint32(n.v)
		return &v
	}
	value := func(n *number) *float64 {
		if n == nil || !n.set {
			return nil
		}
		v := n.v
		return &v
	}
	out.Pmin = period("Pmin", a.Pmin)
	out.Pmax = period("Pmax", a.Pmax)
	out.St = value(a.Step)
	out.Lt = value(a.LessThan)
	out.Gt = value(a.GreaterThan)
	return out, bad
}

func attributesFrom(a lwm2m.Attributes) *attributesRep {
	if a.IsZero() {
		return nil
	}
	u := func(v *uint32) *number {
		if v == nil {
			return nil
		}
		return &number{v: float64(*v), set: true}
	}
	f := func(v *float64) *number {
		if v == nil {
			return nil
		}
		return &number{v: *v, set: true}
	}
	return &attributesRep{Pmin: u(a.Pmin), Pmax: u(a.Pmax), Step: f(a.St), LessThan: f(a.Lt), GreaterThan: f(a.Gt)}
}

// criteriaRep is the Criteria member of an organisation-level
// pre-subscription: which clients it applies to.
type criteriaRep struct {
	Group        string           `json:"Group,omitempty"`
	Endpoints    []string         `json:"Endpoints,omitempty"`
	Manufacturer *manufacturerRep `json:"Manufacturer,omitempty"`
}

// manufacturerRep selects clients by what their object 3 says.
type manufacturerRep struct {
	Make            string `json:"Make,omitempty"`
	Model           string `json:"Model,omitempty"`
	FirmwareVersion string `json:"FirmwareVersion,omitempty"`
}

// toStorage converts criteria; empty criteria are none (every client).
func (c *criteriaRep) toStorage() *storage.Criteria {
	if c == nil {
		return nil
	}
	out := storage.Criteria{Group: c.Group, Endpoints: c.Endpoints}
	if m := c.Manufacturer; m != nil {
		out.Make, out.Model, out.FirmwareVersion = m.Make, m.Model, m.FirmwareVersion
	}
	if out.Group == "" && len(out.Endpoints) == 0 && out.Make == "" && out.Model == "" && out.FirmwareVersion == "" {
		return nil
	}
	return &out
}

func criteriaFrom(c *storage.Criteria) *criteriaRep {
	if c == nil {
		return nil
	}
	out := &criteriaRep{Group: c.Group, Endpoints: c.Endpoints}
	if c.Make != "" || c.Model != "" || c.FirmwareVersion != "" {
		out.Manufacturer = &manufacturerRep{Make: c.Make, Model: c.Model, FirmwareVersion: c.FirmwareVersion}
	}
	if out.Group == "" && len(out.Endpoints) == 0 && out.Manufacturer == nil {
		return nil
	}
	return out
}

// subscriptionBody is what POST accepts.
type subscriptionBody struct {
	SubscriptionType  string           `json:"SubscriptionType"`
	URL               string           `json:"Url"`
	AcceptContentType string           `json:"AcceptContentType"`
	Property          string           `json:"Property"`
	Attributes        *attributesRep   `json:"Attributes"`
	DeletionPolicy    *int             `json:"DeletionPolicy"`
	Secret            string           `json:"Secret"`
	Criteria          *criteriaRep     `json:"Criteria"`     // organisation level only
	ResourcePath      string           `json:"ResourcePath"` // organisation-level Observation only
	Links             hypermedia.Links `json:"Links"`        // ignored, so a representation can be posted back
}

type deliveryRep struct {
	Delivered   int64      `json:"Delivered"`
	Dropped     int64      `json:"Dropped"`
	Pending     int        `json:"Pending"`
	LastError   string     `json:"LastError,omitempty"`
	LastSuccess *time.Time `json:"LastSuccess,omitempty"`
}

type subscriptionRep struct {
	ID                string           `json:"ID"`
	SubscriptionType  string           `json:"SubscriptionType"`
	URL               string           `json:"Url"`
	AcceptContentType string           `json:"AcceptContentType,omitempty"`
	Property          string           `json:"Property,omitempty"`
	Criteria          *criteriaRep     `json:"Criteria,omitempty"`
	ResourcePath      string           `json:"ResourcePath,omitempty"`
	Attributes        *attributesRep   `json:"Attributes,omitempty"`
	DeletionPolicy    int              `json:"DeletionPolicy"`
	Delivery          deliveryRep      `json:"Delivery"`
	Links             hypermedia.Links `json:"Links"`
}

func (s *Server) subscriptionRep(r *http.Request, c *call, sub storage.Subscription) subscriptionRep {
	self := href(c.base, pathSubscription, sub.ID)
	rep := subscriptionRep{ID: sub.ID, SubscriptionType: sub.Type, URL: sub.URL, AcceptContentType: sub.AcceptContentType,
		Property: sub.Property, Criteria: criteriaFrom(sub.Criteria), Attributes: attributesFrom(sub.Attributes), DeletionPolicy: sub.DeletionPolicy}
	if sub.ClientID == "" {
		rep.ResourcePath = sub.Path // an organisation-level pre-subscription's
	}
	rep.Links = rep.Links.Add("self", self, mt.Type(mt.Subscription)).
		Add("update", self, mt.Type(mt.Subscription)).
		Add("remove", self, "")
	if sub.ClientID != "" {
		rep.Links = rep.Links.Add("client", href(c.base, pathClient, sub.ClientID), mt.Type(mt.Client))
		if p, err := lwm2m.ParsePath(sub.Path); err == nil && p.Depth >= lwm2m.DepthInstance {
			rep.Links = rep.Links.Add("object", href(c.base, pathInstance, sub.ClientID, strconv.Itoa(int(p.Object)), strconv.Itoa(int(p.Instance))), "")
		}
	}
	if st, pending, err := s.cfg.Subscriptions.Stats(r.Context(), sub.ID); err == nil {
		rep.Delivery = deliveryRep{Delivered: st.Delivered, Dropped: st.Dropped, Pending: pending, LastError: st.LastError}
		if !st.LastSuccess.IsZero() {
			t := st.LastSuccess.UTC()
			rep.Delivery.LastSuccess = &t
		}
	}
	return rep
}

// newSubscription validates the common part of a POST body. Criteria and
// ResourcePath belong to the organisation level: only orgLevel takes them.
func (s *Server) newSubscription(w http.ResponseWriter, r *http.Request, c *call, orgLevel bool) (storage.Subscription, subscriptionBody, bool) {
	var body subscriptionBody
	if !s.decodeBody(w, r, &body, mt.Subscription) {
		return storage.Subscription{}, body, false
	}
	if !orgLevel {
		var bad []string
		if body.Criteria != nil {
			bad = append(bad, "Criteria")
		}
		if body.ResourcePath != "" {
			bad = append(bad, "ResourcePath")
		}
		if len(bad) > 0 {
			s.badRequest(w, codeInvalidFields, strings.Join(bad, " and ")+" belong to organisation-level subscriptions (POST /subscriptions)", bad...)
			return storage.Subscription{}, body, false
		}
	}
	attrs, bad := body.Attributes.toLwM2M()
	if len(bad) > 0 {
		s.badRequest(w, codeInvalidFields, "periods must be whole, non-negative seconds", bad...)
		return storage.Subscription{}, body, false
	}
	sub := storage.Subscription{OrganisationID: c.auth.Org, Type: body.SubscriptionType, URL: body.URL,
		AcceptContentType: body.AcceptContentType, Property: body.Property, Attributes: attrs,
		Secret: body.Secret, BaseURL: c.base}
	if body.DeletionPolicy != nil {
		sub.DeletionPolicy = *body.DeletionPolicy
	}
	return sub, body, true
}

// createSubscription hands a subscription to the engine and answers 201.
func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request, c *call, sub storage.Subscription) {
	created, err := s.cfg.Subscriptions.Create(r.Context(), sub)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	self := href(c.base, pathSubscription, created.ID)
	w.Header().Set("Location", self)
	s.write(w, c, http.StatusCreated, createdRep{ID: created.ID, Links: hypermedia.Links{}.Add("self", self, mt.Type(mt.Subscription))})
}

// isLifecycleType reports whether t is one of the client lifecycle types.
func isLifecycleType(t string) bool {
	switch t {
	case subscriptions.TypeClientConnected, subscriptions.TypeClientDisconnected,
		subscriptions.TypeClientUpdated, subscriptions.TypeClientConnectionExpired:
		return true
	}
	return false
}

// parseResourcePath reads a pre-subscription's ResourcePath: an object
// instance "/o/i" or a resource "/o/i/r" (the leading slash may be left out).
func parseResourcePath(raw string) (lwm2m.Path, bool) {
	p, err := lwm2m.ParsePath(strings.TrimSpace(raw))
	if err != nil || (p.Depth != lwm2m.DepthInstance && p.Depth != lwm2m.DepthResource) {
		return lwm2m.Path{}, false
	}
	return p, true
}

// createOrgSubscription: lifecycle events of every client of the
// organisation, or a pre-subscription: Criteria select the clients (every
// client without), and an Observation names its ResourcePath.
func (s *Server) createOrgSubscription(w http.ResponseWriter, r *http.Request, c *call) {
	sub, body, ok := s.newSubscription(w, r, c, true)
	if !ok {
		return
	}
	if sub.Property != "" {
		s.badRequest(w, codeInvalidFields, "Property belongs to instance subscriptions; pre-subscriptions name a ResourcePath", "Property")
		return
	}
	switch {
	case isLifecycleType(sub.Type) && body.ResourcePath != "":
		s.badRequest(w, codeInvalidFields, "ResourcePath belongs to Observation pre-subscriptions, not to "+sub.Type, "ResourcePath")
		return
	case sub.Type == subscriptions.TypeObservation && body.ResourcePath == "":
		s.badRequest(w, codeInvalidFields, "an organisation-level Observation needs a ResourcePath: /object/instance or /object/instance/resource", "ResourcePath")
		return
	case body.ResourcePath != "":
		p, ok := parseResourcePath(body.ResourcePath)
		if !ok {
			s.badRequest(w, codeInvalidFields, fmt.Sprintf("ResourcePath must be /object/instance or /object/instance/resource, not %q", body.ResourcePath), "ResourcePath")
			return
		}
		sub.Path = p.String()
	}
	sub.Criteria = body.Criteria.toStorage()
	s.createSubscription(w, r, c, sub)
}

// createClientSubscription: one client's lifecycle events; Property
// belongs to instances only.
func (s *Server) createClientSubscription(w http.ResponseWriter, r *http.Request, c *call) {
	reg, ok := s.registration(w, r, c)
	if !ok {
		return
	}
	sub, _, ok := s.newSubscription(w, r, c, false)
	if !ok {
		return
	}
	if sub.Property != "" {
		s.badRequest(w, codeInvalidFields, "Property belongs to instance subscriptions", "Property")
		return
	}
	sub.ClientID = reg.ID
	s.createSubscription(w, r, c, sub)
}

// createInstanceSubscription: Observation of an instance or, with
// Property (resource ID or SerialisationName), of one resource.
func (s *Server) createInstanceSubscription(w http.ResponseWriter, r *http.Request, c *call) {
	ic, ok := s.instanceVars(w, r, c, true)
	if !ok {
		return
	}
	sub, _, ok := s.newSubscription(w, r, c, false)
	if !ok {
		return
	}
	if sub.Type != "Observation" {
		s.badRequest(w, codeInvalidFields, "instances take Observation subscriptions", "SubscriptionType")
		return
	}
	p := lwm2m.InstancePath(ic.object, ic.instance)
	if sub.Property != "" {
		res, found := ic.def.ResourceByName(sub.Property)
		if !found {
			n, err := strconv.ParseUint(sub.Property, 10, 16)
			if err != nil || n == 65535 {
				s.badRequest(w, codeInvalidFields, "no such resource", "Property")
				return
			}
			p = lwm2m.ResourcePath(ic.object, ic.instance, uint16(n))
		} else {
			p = lwm2m.ResourcePath(ic.object, ic.instance, res.ID)
		}
	}
	sub.ClientID = ic.reg.ID
	sub.Path = p.String()
	s.createSubscription(w, r, c, sub)
}

// listSubscriptions answers one list of the organisation's subscriptions.
func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request, c *call, f storage.SubscriptionFilter, under string, add string) {
	f.OrganisationID = c.auth.Org
	subs, err := s.cfg.Store.ListSubscriptions(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var reps []subscriptionRep
	for _, sub := range subs {
		if under != "" && sub.Path != under && !strings.HasPrefix(sub.Path, under+"/") {
			continue
		}
		reps = append(reps, s.subscriptionRep(r, c, sub))
	}
	page(s, w, r, c, reps, hypermedia.Links{}.Add("add", add, mt.Type(mt.Subscription)))
}

// listOrgSubscriptions lists every subscription of the organisation, at any level.
func (s *Server) listOrgSubscriptions(w http.ResponseWriter, r *http.Request, c *call) {
	s.listSubscriptions(w, r, c, storage.SubscriptionFilter{}, "", c.base+pathSubscriptions)
}

func (s *Server) listClientSubscriptions(w http.ResponseWriter, r *http.Request, c *call) {
	if reg, ok := s.registration(w, r, c); ok {
		s.listSubscriptions(w, r, c, storage.SubscriptionFilter{ClientID: reg.ID}, "", href(c.base, pathClientSubs, reg.ID))
	}
}

func (s *Server) listInstanceSubscriptions(w http.ResponseWriter, r *http.Request, c *call) {
	ic, ok := s.instanceVars(w, r, c, true)
	if !ok {
		return
	}
	under := lwm2m.InstancePath(ic.object, ic.instance).String()
	s.listSubscriptions(w, r, c, storage.SubscriptionFilter{ClientID: ic.reg.ID}, under,
		href(c.base, pathInstanceSubs, ic.reg.ID, c.vars["object"], c.vars["instance"]))
}

// orgSubscription loads a subscription of the caller's organisation.
func (s *Server) orgSubscription(w http.ResponseWriter, r *http.Request, c *call) (storage.Subscription, bool) {
	return owned(s, w, r, c, c.vars["subscription"], s.cfg.Store.GetSubscription, func(v storage.Subscription) string { return v.OrganisationID })
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request, c *call) {
	if sub, ok := s.orgSubscription(w, r, c); ok {
		s.write(w, c, http.StatusOK, s.subscriptionRep(r, c, sub))
	}
}

// updateSubscription changes Url, Attributes, AcceptContentType,
// DeletionPolicy or Secret; any other field is a 400. Criteria and
// ResourcePath decide which devices a pre-subscription was applied to, so
// they are fixed: a different selection is a new subscription.
func (s *Server) updateSubscription(w http.ResponseWriter, r *http.Request, c *call) {
	sub, ok := s.orgSubscription(w, r, c)
	if !ok {
		return
	}
	var body struct {
		URL               *string          `json:"Url"`
		AcceptContentType *string          `json:"AcceptContentType"`
		Attributes        *attributesRep   `json:"Attributes"`
		DeletionPolicy    *int             `json:"DeletionPolicy"`
		Secret            *string          `json:"Secret"`
		Criteria          *criteriaRep     `json:"Criteria"`
		ResourcePath      *string          `json:"ResourcePath"`
		Links             hypermedia.Links `json:"Links"`
	}
	if !s.decodeBody(w, r, &body, mt.Subscription) {
		return
	}
	var fixed []string
	if body.Criteria != nil {
		fixed = append(fixed, "Criteria")
	}
	if body.ResourcePath != nil {
		fixed = append(fixed, "ResourcePath")
	}
	if len(fixed) > 0 {
		s.badRequest(w, codeInvalidFields, strings.Join(fixed, " and ")+" cannot be changed: delete the subscription and create a new one", fixed...)
		return
	}
	patch := subscriptions.Patch{URL: body.URL, AcceptContentType: body.AcceptContentType, DeletionPolicy: body.DeletionPolicy, Secret: body.Secret}
	if body.Attributes != nil {
		attrs, bad := body.Attributes.toLwM2M()
		if len(bad) > 0 {
			s.badRequest(w, codeInvalidFields, "periods must be whole, non-negative seconds", bad...)
			return
		}
		patch.Attributes = &attrs
	}
	if _, err := s.cfg.Subscriptions.Update(r.Context(), sub.ID, patch); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request, c *call) {
	sub, ok := s.orgSubscription(w, r, c)
	if !ok {
		return
	}
	if err := s.cfg.Subscriptions.Delete(r.Context(), sub.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
