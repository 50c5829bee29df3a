// Package server is the HTTP side of the device server: gorilla/mux routes,
// OAuth2 bearer authentication, and one handler file per resource of the
// REST API (../shared/spec/API.md). Handlers talk to devices through the
// Devices interface and never speak CoAP themselves.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/deviceserver/deviceserver/hypermedia"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
	"github.com/deviceserver/deviceserver/lwm2m/security"
	"github.com/deviceserver/deviceserver/mimetypes"
	"github.com/deviceserver/deviceserver/storage"
	"github.com/deviceserver/deviceserver/subscriptions"
)

// Devices is the device-management API the handlers use; the CoAP
// endpoint implements it.
type Devices interface {
	Read(ctx context.Context, clientID string, p lwm2m.Path) ([]lwm2m.Record, error)
	Write(ctx context.Context, clientID string, p lwm2m.Path, recs []lwm2m.Record, replace bool) error
	Execute(ctx context.Context, clientID string, p lwm2m.Path, args string) error
	Create(ctx context.Context, clientID string, object lwm2m.Path, recs []lwm2m.Record) (lwm2m.Path, error)
	Delete(ctx context.Context, clientID string, p lwm2m.Path) error
}

// Metrics reports traffic with devices; the CoAP endpoint implements it.
type Metrics interface {
	ClientTraffic(clientID string) lwm2m.Traffic
	OrganisationTraffic(organisationID string) lwm2m.Traffic
}

// BootstrapInfo is what devices need to reach the server (GET /configuration/bootstrap).
type BootstrapInfo struct {
	CoAPURI  string // coap://host:port, "" when NoSec is off
	CoAPSURI string // coaps://host:port, "" until DTLS is served
}

// Config wires the server to the rest of the device server.
type Config struct {
	Store         storage.Store
	Models        *model.Registry
	Devices       Devices
	Subscriptions *subscriptions.Engine
	Metrics       Metrics
	CA            *security.CA // issues device certificates
	Bootstrap     BootstrapInfo
	TokenKey      []byte        // HMAC key signing access tokens
	AccessTTL     time.Duration // access token lifetime (default 1h)
	RefreshTTL    time.Duration // refresh token lifetime (default 30 days)
	TrustProxy    bool          // honour X-Forwarded-Proto / X-Forwarded-Host
	MaxBodyBytes  int64         // request body limit (default 1 MiB)
	HashCost      int           // bcrypt cost of new secrets (0: bcrypt's default; tests lower it)
	Logger        *slog.Logger
	Now           func() time.Time
}

// Server serves the REST API.
type Server struct {
	cfg    Config
	router *mux.Router
	neg    mimetypes.Negotiator
	// jsonOnly negotiates routes whose standard fixes JSON.
	jsonOnly mimetypes.Negotiator
	log      *slog.Logger
}

// New builds the router.
func New(cfg Config) *Server {
	if cfg.AccessTTL == 0 {
		cfg.AccessTTL = time.Hour
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = 30 * 24 * time.Hour
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, router: mux.NewRouter(), neg: mimetypes.Negotiator{Formats: []mimetypes.Format{mimetypes.JSON, mimetypes.XML}},
		jsonOnly: mimetypes.Negotiator{Formats: []mimetypes.Format{mimetypes.JSON}}, log: cfg.Logger}
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if id := r.Header.Get("X-Client-RequestId"); id != "" {
		w.Header().Set("X-Client-RequestId", id)
	}
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("http: handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
			if isM2M(r) {
				s.m2mError(w, http.StatusInternalServerError, m2mServerError, "internal error")
				return
			}
			s.errorBody(w, r, http.StatusInternalServerError, "internal error")
		}
	}()
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	s.router.ServeHTTP(&acceptWriter{ResponseWriter: w, accept: r.Header.Get("Accept")}, r)
}

// call carries what every handler needs about the request.
type call struct {
	auth    claims
	choice  mimetypes.Choice
	vars    map[string]string
	base    string // scheme://host as the caller sees the API
	xFields string // X-Fields: keep only these fields
	xLinks  string // X-Links: keep only these link rels
}

type handler func(w http.ResponseWriter, r *http.Request, c *call)

// route registers an authenticated handler whose response has the vendor
// type named typ ("" when the handler negotiates itself or has no body).
func (s *Server) route(path, method, typ string, h handler) {
	s.router.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		cl, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", bearerChallenge(err))
			s.errorBody(w, r, http.StatusUnauthorized, err.Error())
			return
		}
		s.serve(w, r, typ, &call{auth: cl}, h)
	}).Methods(method)
}

// public registers a handler that needs no token; a valid token is still
// read so that representations can show the caller's links.
func (s *Server) public(path, method, typ string, h handler) {
	s.router.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		c := &call{}
		if r.Header.Get("Authorization") != "" {
			if cl, err := s.authenticate(r); err == nil {
				c.auth = cl
			}
		}
		s.serve(w, r, typ, c, h)
	}).Methods(method)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, typ string, c *call, h handler) {
	c.vars = mux.Vars(r)
	c.base = hypermedia.BaseURL(r, s.cfg.TrustProxy)
	c.xFields, c.xLinks = r.Header.Get("X-Fields"), r.Header.Get("X-Links")
	if typ != "" {
		neg := s.neg
		if typ == mimetypes.OAuthToken {
			neg = s.jsonOnly // RFC 6749: token responses are JSON
		}
		ch, err := neg.Negotiate(r.Header.Get("Accept"), mimetypes.Type(typ))
		if err != nil {
			s.errorBody(w, r, http.StatusNotAcceptable, "none of the Accept types can be produced; this resource is "+mimetypes.Type(typ)+"+json")
			return
		}
		c.choice = ch
	}
	h(w, r, c)
}

// negotiate picks the representation for a dynamic vendor type (object instances).
func (s *Server) negotiate(w http.ResponseWriter, r *http.Request, c *call, base string) bool {
	ch, err := s.neg.Negotiate(r.Header.Get("Accept"), base)
	if err != nil {
		s.errorBody(w, r, http.StatusNotAcceptable, "none of the Accept types can be produced; this resource is "+base+"+json")
		return false
	}
	c.choice = ch
	return true
}

// write sends v in the negotiated representation, after the response
// optimisation the caller asked for (X-Fields, X-Links). The body is
// rendered before the status is sent, so a rendering error is a clean 500.
func (s *Server) write(w http.ResponseWriter, c *call, status int, v any) {
	body, err := s.render(c, v)
	if err != nil {
		s.log.Error("http: render response", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", c.choice.ContentType)
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		s.log.Warn("http: write response", "err", err)
	}
}

// render encodes v. Plain JSON needs nothing from the ordered tree, so it
// is encoded directly; X-Fields, X-Links and XML go through the tree.
func (s *Server) render(c *call, v any) ([]byte, error) {
	if c.choice.Format == mimetypes.JSON && c.xFields == "" && c.xLinks == "" {
		return encodeJSON(v)
	}
	tree, err := hypermedia.Tree(v)
	if err != nil {
		return nil, err
	}
	tree = hypermedia.Select(tree, c.xFields, c.xLinks)
	if c.choice.Format == mimetypes.XML {
		var b bytes.Buffer
		err := mimetypes.EncodeXML(&b, mimetypes.XMLName(c.choice.ContentType), tree)
		return b.Bytes(), err
	}
	return encodeJSON(tree)
}

// encodeJSON encodes v without HTML escaping (the API is not HTML).
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return b.Bytes(), err
}

// badRequestBody is the BadRequest representation of API.md section 1.
type badRequestBody struct {
	ErrorCode     int      `json:"ErrorCode"`
	ErrorMessage  string   `json:"ErrorMessage"`
	InvalidFields []string `json:"InvalidFields,omitempty"`
}

// Error codes of BadRequest bodies.
const (
	codeInvalidFields = 1 // a body or query field is invalid
	codeMalformed     = 2 // the body cannot be parsed at all
	codeDeviceRefused = 3 // the device answered 4.00 Bad Request
)

func (s *Server) badRequest(w http.ResponseWriter, code int, msg string, fields ...string) {
	s.writeError(w, http.StatusBadRequest, mimetypes.BadRequest, badRequestBody{ErrorCode: code, ErrorMessage: msg, InvalidFields: fields})
}

// errorBody is the small body of non-400 errors.
func (s *Server) errorBody(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if status == http.StatusBadRequest {
		s.badRequest(w, codeInvalidFields, msg)
		return
	}
	s.writeError(w, status, mimetypes.Error, struct {
		ErrorCode    int    `json:"ErrorCode"`
		ErrorMessage string `json:"ErrorMessage"`
	}{status, msg})
}

// acceptWriter carries the request's Accept header to the error writers,
// which are called from deep inside handlers without the request.
type acceptWriter struct {
	http.ResponseWriter
	accept string
}

// writeError sends an error body in XML when the caller's Accept prefers
// XML (application/xml or any vendor +xml type), else in JSON (also when
// nothing fits: an error must still be read).
func (s *Server) writeError(w http.ResponseWriter, status int, name string, body any) {
	base := mimetypes.Type(name)
	c := &call{choice: mimetypes.Choice{Format: mimetypes.JSON, ContentType: base + "+json"}}
	if aw, ok := w.(*acceptWriter); ok {
		// Accept names the resource's type, not the error's: its format counts.
		if f, ok := s.neg.AskedFormat(aw.accept); ok {
			c.choice = mimetypes.Choice{Format: f, ContentType: base + f.Suffix()}
		}
	}
	s.write(w, c, status, body)
}

// fail maps an error from the store, the device side or the engine onto a status.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var de *lwm2m.DeviceError
	var ve *subscriptions.ValidationError
	var fe *hypermedia.FieldError
	switch {
	case errors.As(err, &ve):
		s.badRequest(w, codeInvalidFields, ve.Msg, ve.Fields...)
	case errors.As(err, &fe):
		s.badRequest(w, codeInvalidFields, fe.Msg, fe.Fields...)
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, lwm2m.ErrClientNotFound):
		s.errorBody(w, r, http.StatusNotFound, "not found")
	case errors.Is(err, errors.ErrUnsupported):
		s.errorBody(w, r, http.StatusNotImplemented, err.Error())
	case errors.Is(err, storage.ErrConflict):
		s.errorBody(w, r, http.StatusConflict, "already exists")
	case errors.Is(err, lwm2m.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		s.errorBody(w, r, http.StatusGatewayTimeout, "the device did not answer in time")
	case errors.As(err, &de):
		status, msg := deviceStatus(de)
		if status == http.StatusBadRequest {
			s.badRequest(w, codeDeviceRefused, msg)
			return
		}
		s.errorBody(w, r, status, msg)
	default:
		s.log.Error("http: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		s.errorBody(w, r, http.StatusInternalServerError, "internal error")
	}
}

// deviceStatus maps a device's CoAP error onto HTTP (API.md section 3).
func deviceStatus(de *lwm2m.DeviceError) (int, string) {
	msg := fmt.Sprintf("the device answered %d.%02d", de.Class(), de.Detail())
	if de.Msg != "" {
		msg += ": " + de.Msg
	}
	if de.Class() == 5 {
		return http.StatusBadGateway, msg
	}
	switch de.Detail() {
	case 0:
		return http.StatusBadRequest, msg
	case 1, 3:
		return http.StatusForbidden, msg
	case 4:
		return http.StatusNotFound, msg
	case 5:
		return http.StatusMethodNotAllowed, msg
	}
	return http.StatusBadGateway, msg
}

// decodeBody reads a JSON request body into v after checking Content-Type
// against the route's vendor types; it answers 415/400 itself and returns
// false when the handler must stop.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any, types ...string) bool {
	bases := make([]string, len(types))
	for i, t := range types {
		bases[i] = mimetypes.Type(t)
	}
	return s.decodeBodyAs(w, r, v, bases...)
}

// decodeBodyAs is decodeBody for full vendor base types.
func (s *Server) decodeBodyAs(w http.ResponseWriter, r *http.Request, v any, bases ...string) bool {
	format, err := s.neg.RequestFormat(r.Header.Get("Content-Type"), bases...)
	if err != nil {
		s.errorBody(w, r, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type must be one of %s (+json or +xml), application/json or application/xml", strings.Join(bases, ", ")))
		return false
	}
	if format == mimetypes.XML {
		err = mimetypes.DecodeXML(r.Body, v)
	} else {
		err = decodeJSON(r.Body, v)
	}
	if err == nil {
		return true
	}
	var mbe *http.MaxBytesError
	var te *json.UnmarshalTypeError
	var xe *mimetypes.XMLFieldError
	switch {
	case errors.As(err, &mbe):
		s.errorBody(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit))
	case errors.As(err, &xe) && xe.Unknown:
		s.badRequest(w, codeInvalidFields, "unknown field", xe.Field)
	case errors.As(err, &xe):
		s.badRequest(w, codeInvalidFields, "invalid fields", xe.Field)
	case errors.As(err, &te) && te.Field != "": // "": the body itself has the wrong JSON type
		s.badRequest(w, codeInvalidFields, "invalid fields", te.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		s.badRequest(w, codeInvalidFields, "unknown field", strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
	default:
		s.badRequest(w, codeMalformed, "malformed body: "+err.Error())
	}
	return false
}

// decodeJSON reads exactly one JSON value into v; unknown fields are an
// error unless v is a generic map (instance bodies, checked by name later).
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.UseNumber()
	if _, ok := v.(*map[string]any); !ok {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// owned loads the resource with id and answers 404 (false) unless it
// belongs to the caller's organisation: the one place the tenant rule for
// single resources lives, so that another tenant's resource is
// indistinguishable from a missing one.
func owned[T any](s *Server, w http.ResponseWriter, r *http.Request, c *call, id string,
	get func(context.Context, string) (T, error), orgOf func(T) string) (T, bool) {
	v, err := get(r.Context(), id)
	if err == nil && orgOf(v) != c.auth.Org {
		err = storage.ErrNotFound
	}
	if err != nil {
		s.fail(w, r, err)
		var zero T
		return zero, false
	}
	return v, true
}
