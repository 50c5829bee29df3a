package server

// The compatibility API (API.md section 7): group-level pre-subscriptions
// in the JSON shape that operators of other LwM2M platforms already send,
// mapped onto the subscription engine of section 5. Every answer is plain
// application/json; errors are {"msg", "code"} with the codes below.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/deviceserver/deviceserver/hypermedia"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/mimetypes"
	"github.com/deviceserver/deviceserver/storage"
	"github.com/deviceserver/deviceserver/subscriptions"
)

// Result codes of the compatibility API (docs/api-behaviour.md).
const (
	m2mSuccess      = 1000 // the request was carried out
	m2mInvalid      = 1001 // the request is invalid: body, query, media types, method
	m2mNotFound     = 1002 // no such subscription or route
	m2mUnauthorized = 1003 // no, malformed or expired bearer token
	m2mNoCallback   = 1004 // the organisation has registered no callback
	m2mServerError  = 1005 // the server could not carry the request out
)

const m2mJSON = "application/json"

// m2mPrefix starts every path of the compatibility API.
const m2mPrefix = "/m2m/"

// Setting keys under which the compatibility API keeps its state.
func m2mCallbackKey(org string) string    { return "m2m.callback." + org }
func m2mSubscriptionKey(id string) string { return "m2m.subscription." + id }

// m2mResult is every answer that is not a resource: success and errors.
type m2mResult struct {
	SubscriptionID string `json:"subscriptionId,omitempty"`
	Msg            string `json:"msg"`
	Code           int    `json:"code"`
}

var m2mOK = m2mResult{Msg: "Success", Code: m2mSuccess}

// m2mWrite sends v as application/json.
func (s *Server) m2mWrite(w http.ResponseWriter, status int, v any) {
	body, err := encodeJSON(v)
	if err != nil {
		s.log.Error("http: render m2m response", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", m2mJSON)
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		s.log.Warn("http: write response", "err", err)
	}
}

func (s *Server) m2mError(w http.ResponseWriter, status, code int, msg string) {
	s.m2mWrite(w, status, m2mResult{Msg: msg, Code: code})
}

// isM2M reports whether a request is for the compatibility API, whose
// errors (also 401, 404, 405 and panics) have its own shape.
func isM2M(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, m2mPrefix) }

// m2mRoute registers a compatibility route: the same bearer tokens as the
// rest of the API, answers in application/json only.
func (s *Server) m2mRoute(path, method string, h handler) {
	s.router.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		cl, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", bearerChallenge(err))
			s.m2mError(w, http.StatusUnauthorized, m2mUnauthorized, err.Error())
			return
		}
		if _, err := s.jsonOnly.Negotiate(r.Header.Get("Accept"), m2mJSON); err != nil {
			s.m2mError(w, http.StatusNotAcceptable, m2mInvalid, "the compatibility API answers "+m2mJSON+" only")
			return
		}
		c := &call{auth: cl, vars: mux.Vars(r), base: hypermedia.BaseURL(r, s.cfg.TrustProxy),
			choice: mimetypes.Choice{Format: mimetypes.JSON, ContentType: m2mJSON}}
		h(w, r, c)
	}).Methods(method)
}

// m2mDecode reads an application/json body into v, refusing unknown
// members; it answers 415/413/400 itself and returns false when the
// handler must stop.
func (s *Server) m2mDecode(w http.ResponseWriter, r *http.Request, v any) bool {
	if typ, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || typ != m2mJSON {
		s.m2mError(w, http.StatusUnsupportedMediaType, m2mInvalid, "Content-Type must be "+m2mJSON)
		return false
	}
	err := decodeJSON(r.Body, v)
	if err == nil {
		return true
	}
	var mbe *http.MaxBytesError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		s.m2mError(w, http.StatusRequestEntityTooLarge, m2mInvalid, fmt.Sprintf("body larger than %d bytes", mbe.Limit))
	case errors.As(err, &te) && te.Field != "":
		s.m2mError(w, http.StatusBadRequest, m2mInvalid, "invalid value of "+te.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		s.m2mError(w, http.StatusBadRequest, m2mInvalid, "unknown field "+strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		s.m2mError(w, http.StatusBadRequest, m2mInvalid, "malformed JSON body: "+err.Error())
	}
	return false
}

// m2mFields renames the engine's field names to the compatibility API's.
var m2mFields = map[string]string{
	"Url": "url (the registered callback)", "Criteria": "criteria/groupName", "Attributes": "conditions",
	"ResourcePath": "resourcePath", "DeletionPolicy": "deletionPolicy", "Headers": "headers",
}

// m2mFail maps an error from the store or the engine onto a status and code.
func (s *Server) m2mFail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *subscriptions.ValidationError
	var de *lwm2m.DeviceError
	switch {
	case errors.As(err, &ve):
		fields := make([]string, len(ve.Fields))
		for i, f := range ve.Fields {
			fields[i] = f
			if n, ok := m2mFields[f]; ok {
				fields[i] = n
			}
		}
		s.m2mError(w, http.StatusBadRequest, m2mInvalid, "invalid "+strings.Join(fields, ", ")+": "+ve.Msg)
	case errors.Is(err, storage.ErrNotFound):
		s.m2mError(w, http.StatusNotFound, m2mNotFound, "not found")
	case errors.Is(err, errors.ErrUnsupported):
		s.m2mError(w, http.StatusNotImplemented, m2mServerError, err.Error())
	case errors.Is(err, lwm2m.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		s.m2mError(w, http.StatusGatewayTimeout, m2mServerError, "a device did not answer in time")
	case errors.As(err, &de):
		s.m2mError(w, http.StatusBadGateway, m2mServerError, fmt.Sprintf("a device answered %d.%02d", de.Class(), de.Detail()))
	default:
		s.log.Error("http: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		s.m2mError(w, http.StatusInternalServerError, m2mServerError, "internal error")
	}
}

// m2mCallback is the organisation's notification callback.
type m2mCallback struct {
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
}

// redacted replaces header values when a callback is shown: they often
// carry the receiver's credentials.
const redacted = "********"

// reservedHeaders are set by the webhook sender itself.
var reservedHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Content-Encoding": true, "Transfer-Encoding": true,
	"Host": true, "Connection": true, "X-Delivery-Id": true, "X-Signature": true,
}

// checkHeaders canonicalises header names and refuses names that are not
// HTTP tokens, values that cannot be sent, and headers the sender sets.
func checkHeaders(in map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for name, value := range in {
		if !isToken(name) {
			return nil, fmt.Errorf("header name %q is not an HTTP token", name)
		}
		if strings.ContainsFunc(value, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }) {
			return nil, fmt.Errorf("the value of header %s holds control characters", name)
		}
		canon := http.CanonicalHeaderKey(name)
		if reservedHeaders[canon] {
			return nil, fmt.Errorf("header %s is set by the server", canon)
		}
		if _, dup := out[canon]; dup {
			return nil, fmt.Errorf("header %s is given twice", canon)
		}
		out[canon] = value
	}
	return out, nil
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// callback loads the organisation's callback; storage.ErrNotFound when none.
func (s *Server) callback(ctx context.Context, org string) (m2mCallback, error) {
	var cb m2mCallback
	raw, err := s.cfg.Store.GetSetting(ctx, m2mCallbackKey(org))
	if err != nil {
		return cb, err
	}
	if err := json.Unmarshal(raw, &cb); err != nil {
		return cb, fmt.Errorf("m2m callback of %s: %w", org, err)
	}
	return cb, nil
}

// putCallback serves PUT /m2m/applications/registration: it stores the
// callback and moves every compatibility subscription of the organisation
// to it.
func (s *Server) putCallback(w http.ResponseWriter, r *http.Request, c *call) {
	var body m2mCallback
	if !s.m2mDecode(w, r, &body) {
		return
	}
	if strings.TrimSpace(body.URL) == "" {
		s.m2mError(w, http.StatusBadRequest, m2mInvalid, "url is required")
		return
	}
	if err := s.cfg.Subscriptions.CheckURL(r.Context(), "url", body.URL); err != nil {
		s.m2mFail(w, r, err)
		return
	}
	headers, err := checkHeaders(body.Headers)
	if err != nil {
		s.m2mError(w, http.StatusBadRequest, m2mInvalid, "invalid headers: "+err.Error())
		return
	}
	cb := m2mCallback{URL: body.URL, Headers: headers}
	raw, err := json.Marshal(cb)
	if err != nil {
		s.m2mFail(w, r, err)
		return
	}
	ctx := r.Context()
	if err := s.cfg.Store.PutSetting(ctx, m2mCallbackKey(c.auth.Org), raw); err != nil {
		s.m2mFail(w, r, err)
		return
	}
	// Re-target after storing: a failure part way is repaired by sending
	// the same PUT again.
	subs, err := s.compatSubscriptions(ctx, c.auth.Org, "*")
	if err != nil {
		s.m2mFail(w, r, err)
		return
	}
	for _, sub := range subs {
		h := maps.Clone(cb.Headers)
		if _, err := s.cfg.Subscriptions.Update(ctx, sub.ID, subscriptions.Patch{URL: &cb.URL, Headers: &h}); err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.m2mFail(w, r, fmt.Errorf("re-target subscription %s: %w", sub.ID, err))
			return
		}
	}
	s.m2mWrite(w, http.StatusOK, m2mOK)
}

// getCallback serves GET /m2m/applications/registration; header values are
// not shown.
func (s *Server) getCallback(w http.ResponseWriter, r *http.Request, c *call) {
	cb, err := s.callback(r.Context(), c.auth.Org)
	if errors.Is(err, storage.ErrNotFound) {
		s.m2mError(w, http.StatusNotFound, m2mNoCallback, "no callback registered")
		return
	}
	if err != nil {
		s.m2mFail(w, r, err)
		return
	}
	rep := struct {
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
	}{URL: cb.URL, Headers: map[string]string{}}
	for k := range cb.Headers {
		rep.Headers[k] = redacted
	}
	s.m2mWrite(w, http.StatusOK, rep)
}

// deleteCallback serves DELETE /m2m/applications/registration. Existing
// compatibility subscriptions keep the callback they have.
func (s *Server) deleteCallback(w http.ResponseWriter, r *http.Request, c *call) {
	err := s.cfg.Store.DeleteSetting(r.Context(), m2mCallbackKey(c.auth.Org))
	if errors.Is(err, storage.ErrNotFound) {
		s.m2mError(w, http.StatusNotFound, m2mNoCallback, "no callback registered")
		return
	}
	if err != nil {
		s.m2mFail(w, r, err)
		return
	}
	s.m2mWrite(w, http.StatusOK, m2mOK)
}

// compatSubscriptions lists the organisation's engine subscriptions made
// through the compatibility API: those of one subscription, or of all ("*").
func (s *Server) compatSubscriptions(ctx context.Context, org, compatID string) ([]storage.Subscription, error) {
	subs, err := s.cfg.Store.ListSubscriptions(ctx, storage.SubscriptionFilter{OrganisationID: org, CompatID: compatID})
	if err != nil {
		return nil, err
	}
	out := subs[:0]
	for _, sub := range subs {
		if sub.OrganisationID == org && sub.CompatID != "" && (compatID == "*" || sub.CompatID == compatID) {
			out = append(out, sub)
		}
	}
	return out, nil
}

// Subscription types of the compatibility API (?type=).
const (
	m2mLifecycle = "lifecycleEvents"
	m2mResources = "resources"
)

// m2mEvents maps the compatibility API's event names onto lifecycle types.
var m2mEvents = map[string]string{
	"registration":   subscriptions.TypeClientConnected,
	"deregistration": subscriptions.TypeClientDisconnected,
	"update":         subscriptions.TypeClientUpdated,
	"expiration":     subscriptions.TypeClientConnectionExpired,
}

// m2mRequest is the body of POST /m2m/subscriptions, and (normalised) what
// GET shows.
type m2mRequest struct {
	Criteria         *m2mCriteria  `json:"criteria,omitempty"`
	GroupName        string        `json:"groupName,omitempty"`
	Events           []string      `json:"events,omitempty"`
	Resources        []m2mResource `json:"resources,omitempty"`
	DeletionPolicy   *int          `json:"deletionPolicy,omitempty"`
	NeedNotification *bool         `json:"needNotification,omitempty"`
}

type m2mCriteria struct {
	SerialNumbers    []string             `json:"serialNumbers,omitempty"`
	ManufacturerData *m2mManufacturerData `json:"manufacturerData,omitempty"`
}

type m2mManufacturerData struct {
	Make            string `json:"make,omitempty"`
	Model           string `json:"model,omitempty"`
	FirmwareVersion string `json:"firmwareVersion,omitempty"`
}

type m2mResource struct {
	ResourcePath string         `json:"resourcePath"`
	Conditions   *m2mConditions `json:"conditions,omitempty"`
}

// m2mConditions are a resource's notification attributes; numbers or
// numeric strings.
type m2mConditions struct {
	Gt    *number `json:"gt,omitempty"`
	Lt    *number `json:"lt,omitempty"`
	Pmin  *number `json:"pmin,omitempty"`
	Pmax  *number `json:"pmax,omitempty"`
	Steps *number `json:"steps,omitempty"`
}

// m2mStored is the setting that keeps one compatibility subscription.
type m2mStored struct {
	OrganisationID string     `json:"organisationId"`
	Type           string     `json:"type"`
	Request        m2mRequest `json:"request"`
	CreatedAt      time.Time  `json:"createdAt"`
}

// m2mSubscriptionRep is what GET /m2m/subscriptions/{id} shows.
type m2mSubscriptionRep struct {
	SubscriptionID string `json:"subscriptionId"`
	Type           string `json:"type"`
	m2mRequest
}

// normalise checks the request for its type and fills in the defaults;
// the engine checks the rest when the subscriptions are created. It
// returns the engine subscriptions to create (without the shared fields).
func (req *m2mRequest) normalise(typ string) ([]storage.Subscription, error) {
	var specs []storage.Subscription
	switch typ {
	case m2mLifecycle:
		if len(req.Resources) > 0 {
			return nil, errors.New("resources belong to type=resources")
		}
		if len(req.Events) == 0 {
			return nil, errors.New("events must name at least one of registration, deregistration, update, expiration")
		}
		seen := map[string]bool{}
		var events []string
		for _, ev := range req.Events {
			name := strings.ToLower(strings.TrimSpace(ev))
			t, ok := m2mEvents[name]
			if !ok {
				return nil, fmt.Errorf("unknown event %q: events are registration, deregistration, update, expiration", ev)
			}
			if !seen[name] {
				seen[name] = true
				events = append(events, name)
				specs = append(specs, storage.Subscription{Type: t})
			}
		}
		req.Events = events
	case m2mResources:
		if len(req.Events) > 0 {
			return nil, errors.New("events belong to type=lifecycleEvents")
		}
		if len(req.Resources) == 0 {
			return nil, errors.New("resources must name at least one resourcePath")
		}
		for i := range req.Resources {
			res := &req.Resources[i]
			p, ok := parseResourcePath(res.ResourcePath)
			if !ok {
				return nil, fmt.Errorf("resources[%d].resourcePath must be /object/instance or /object/instance/resource, not %q", i, res.ResourcePath)
			}
			res.ResourcePath = p.String()
			var attrs lwm2m.Attributes
			if cond := res.Conditions; cond != nil {
				var bad []string
				attrs, bad = (&attributesRep{Pmin: cond.Pmin, Pmax: cond.Pmax, Step: cond.Steps, LessThan: cond.Lt, GreaterThan: cond.Gt}).toLwM2M()
				if len(bad) > 0 {
					return nil, fmt.Errorf("resources[%d].conditions: pmin and pmax must be whole, non-negative seconds", i)
				}
				if attrs.IsZero() {
					res.Conditions = nil
				}
			}
			specs = append(specs, storage.Subscription{Type: subscriptions.TypeObservation, Path: p.String(), Attributes: attrs})
		}
	default:
		return nil, fmt.Errorf("type must be %s or %s", m2mLifecycle, m2mResources)
	}
	if c := req.Criteria; c != nil {
		if m := c.ManufacturerData; m != nil && *m == (m2mManufacturerData{}) {
			c.ManufacturerData = nil
		}
		if len(c.SerialNumbers) == 0 && c.ManufacturerData == nil {
			req.Criteria = nil
		}
	}
	if req.DeletionPolicy == nil {
		req.DeletionPolicy = new(int)
	}
	if dp := *req.DeletionPolicy; dp != 0 && dp != 1 {
		return nil, fmt.Errorf("deletionPolicy must be 0 or 1, not %d", dp)
	}
	if req.NeedNotification == nil {
		req.NeedNotification = new(bool)
	}
	return specs, nil
}

// criteria converts the request's selection of devices; nil: every device
// of the organisation.
func (req *m2mRequest) criteria() *storage.Criteria {
	out := storage.Criteria{Group: req.GroupName}
	if c := req.Criteria; c != nil {
		out.Endpoints = c.SerialNumbers
		if m := c.ManufacturerData; m != nil {
			out.Make, out.Model, out.FirmwareVersion = m.Make, m.Model, m.FirmwareVersion
		}
	}
	if out.Group == "" && len(out.Endpoints) == 0 && out.Make == "" && out.Model == "" && out.FirmwareVersion == "" {
		return nil
	}
	return &out
}

// createM2MSubscription serves POST /m2m/subscriptions?type=: one engine
// subscription per event or resource, all sharing CompatID (the answer's
// subscriptionId) and the organisation's callback; all or nothing.
func (s *Server) createM2MSubscription(w http.ResponseWriter, r *http.Request, c *call) {
	var req m2mRequest
	if !s.m2mDecode(w, r, &req) {
		return
	}
	typ := r.URL.Query().Get("type")
	switch {
	case strings.EqualFold(typ, m2mLifecycle):
		typ = m2mLifecycle
	case strings.EqualFold(typ, m2mResources):
		typ = m2mResources
	}
	specs, err := req.normalise(typ)
	if err != nil {
		s.m2mError(w, http.StatusBadRequest, m2mInvalid, err.Error())
		return
	}
	ctx := r.Context()
	cb, err := s.callback(ctx, c.auth.Org)
	if errors.Is(err, storage.ErrNotFound) {
		s.m2mError(w, http.StatusBadRequest, m2mNoCallback, "no callback registered: PUT /m2m/applications/registration first")
		return
	}
	if err != nil {
		s.m2mFail(w, r, err)
		return
	}

	id := randomID(12)
	stored, err := json.Marshal(m2mStored{OrganisationID: c.auth.Org, Type: typ, Request: req, CreatedAt: s.cfg.Now().UTC()})
	if err != nil {
		s.m2mFail(w, r, err)
		return
	}
	// The setting first: whatever a failure leaves behind, DELETE of the
	// subscriptionId finds and removes it.
	if err := s.cfg.Store.PutSetting(ctx, m2mSubscriptionKey(id), stored); err != nil {
		s.m2mFail(w, r, err)
		return
	}
	var opts []subscriptions.CreateOption
	if !*req.NeedNotification {
		opts = append(opts, subscriptions.ApplyLater())
	}
	crit := req.criteria()
	var created []string
	for _, sub := range specs {
		sub.OrganisationID, sub.URL, sub.Headers, sub.BaseURL = c.auth.Org, cb.URL, maps.Clone(cb.Headers), c.base
		sub.DeletionPolicy, sub.CompatID = *req.DeletionPolicy, id
		if crit != nil {
			cp := *crit
			sub.Criteria = &cp
		}
		var o []subscriptions.CreateOption
		if sub.Type == subscriptions.TypeObservation {
			o = opts
		}
		n, err := s.cfg.Subscriptions.Create(ctx, sub, o...)
		if err != nil {
			s.undoM2M(id, created)
			s.m2mFail(w, r, err)
			return
		}
		created = append(created, n.ID)
	}
	w.Header().Set("Location", href(c.base, pathM2MSubscription, id))
	s.m2mWrite(w, http.StatusAccepted, m2mResult{SubscriptionID: id, Msg: "Success", Code: m2mSuccess})
}

// undoM2M removes what a failed creation made, on its own context: the
// request's may be what failed.
func (s *Server) undoM2M(id string, created []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sid := range created {
		if err := s.cfg.Subscriptions.Delete(ctx, sid); err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.log.Error("m2m: undo subscription", "subscription", sid, "compat", id, "err", err)
		}
	}
	if err := s.cfg.Store.DeleteSetting(ctx, m2mSubscriptionKey(id)); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Error("m2m: undo subscription setting", "compat", id, "err", err)
	}
}

// m2mSubscription loads a compatibility subscription of the caller's
// organisation; another organisation's is 404 like a missing one.
func (s *Server) m2mSubscription(w http.ResponseWriter, r *http.Request, c *call) (string, m2mStored, bool) {
	id := c.vars["subscriptionid"]
	var st m2mStored
	raw, err := s.cfg.Store.GetSetting(r.Context(), m2mSubscriptionKey(id))
	if err == nil {
		err = json.Unmarshal(raw, &st)
	}
	if errors.Is(err, storage.ErrNotFound) || (err == nil && st.OrganisationID != c.auth.Org) {
		s.m2mError(w, http.StatusNotFound, m2mNotFound, "no subscription "+id)
		return id, st, false
	}
	if err != nil {
		s.m2mFail(w, r, err)
		return id, st, false
	}
	return id, st, true
}

func (s *Server) getM2MSubscription(w http.ResponseWriter, r *http.Request, c *call) {
	if id, st, ok := s.m2mSubscription(w, r, c); ok {
		s.m2mWrite(w, http.StatusOK, m2mSubscriptionRep{SubscriptionID: id, Type: st.Type, m2mRequest: st.Request})
	}
}

// deleteM2MSubscription removes the engine subscriptions, then the setting.
func (s *Server) deleteM2MSubscription(w http.ResponseWriter, r *http.Request, c *call) {
	id, _, ok := s.m2mSubscription(w, r, c)
	if !ok {
		return
	}
	ctx := r.Context()
	subs, err := s.compatSubscriptions(ctx, c.auth.Org, id)
	if err != nil {
		s.m2mFail(w, r, err)
		return
	}
	for _, sub := range subs {
		if err := s.cfg.Subscriptions.Delete(ctx, sub.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.m2mFail(w, r, err)
			return
		}
	}
	if err := s.cfg.Store.DeleteSetting(ctx, m2mSubscriptionKey(id)); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.m2mFail(w, r, err)
		return
	}
	s.m2mWrite(w, http.StatusOK, m2mOK)
}
