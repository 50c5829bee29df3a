package server

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/deviceserver/deviceserver/hypermedia"
	"github.com/deviceserver/deviceserver/lwm2m/security"
	mt "github.com/deviceserver/deviceserver/mimetypes"
	"github.com/deviceserver/deviceserver/storage"
)

// Limits of POST /identities/certificates.
const (
	defaultValidityDays = 365
	maxValidityDays     = 3650
)

type identitiesRep struct {
	Links hypermedia.Links `json:"Links"`
}

// getIdentities serves GET /identities: where to manage each kind of
// device credential.
func (s *Server) getIdentities(w http.ResponseWriter, r *http.Request, c *call) {
	s.write(w, c, http.StatusOK, identitiesRep{Links: hypermedia.Links{}.
		Add("self", c.base+pathIdentities, mt.Type(mt.Identities)).
		Add("psk", c.base+pathPSKs, mt.Type(mt.PSKIdentities)).
		Add("certificate", c.base+pathCertificates, mt.Type(mt.Certificates))})
}

// PSK identities.

type pskRep struct {
	Identity string           `json:"Identity"`
	Secret   string           `json:"Secret,omitempty"` // hex, only in the answer to POST
	Links    hypermedia.Links `json:"Links"`
}

func pskLinks(c *call, identity string) hypermedia.Links {
	self := href(c.base, pathPSK, identity)
	return hypermedia.Links{}.Add("self", self, mt.Type(mt.PSKIdentity)).Add("remove", self, "")
}

func (s *Server) listPSKs(w http.ResponseWriter, r *http.Request, c *call) {
	ps, err := s.cfg.Store.ListPSKIdentities(r.Context(), c.auth.Org)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reps := make([]pskRep, len(ps))
	for i, p := range ps {
		reps[i] = pskRep{Identity: p.Identity, Links: pskLinks(c, p.Identity)}
	}
	page(s, w, r, c, reps, hypermedia.Links{}.Add("add", c.base+pathPSKs, mt.Type(mt.PSKIdentity)))
}

// createPSK generates an identity and secret for the caller's
// organisation; the answer is the only place the secret is ever shown.
func (s *Server) createPSK(w http.ResponseWriter, r *http.Request, c *call) {
	var body struct{} // nothing to choose: both parts are generated
	if !s.optionalBody(w, r, &body, mt.PSKIdentity) {
		return
	}
	identity, secret, err := security.NewPSK()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := storage.PSKIdentity{Identity: identity, OrganisationID: c.auth.Org, Secret: secret, CreatedAt: s.cfg.Now().UTC()}
	if err := s.cfg.Store.CreatePSKIdentity(r.Context(), p); err != nil {
		s.fail(w, r, err)
		return
	}
	self := href(c.base, pathPSK, identity)
	w.Header().Set("Location", self)
	s.write(w, c, http.StatusCreated, pskRep{Identity: identity, Secret: hex.EncodeToString(secret),
		Links: hypermedia.Links{}.Add("self", self, mt.Type(mt.PSKIdentity))})
}

// orgPSK loads a PSK identity of the caller's organisation; other
// tenants' identities are 404.
func (s *Server) orgPSK(w http.ResponseWriter, r *http.Request, c *call) (storage.PSKIdentity, bool) {
	return owned(s, w, r, c, c.vars["identity"], s.cfg.Store.GetPSKIdentity, func(v storage.PSKIdentity) string { return v.OrganisationID })
}

func (s *Server) getPSK(w http.ResponseWriter, r *http.Request, c *call) {
	if p, ok := s.orgPSK(w, r, c); ok {
		s.write(w, c, http.StatusOK, pskRep{Identity: p.Identity, Links: pskLinks(c, p.Identity)})
	}
}

func (s *Server) deletePSK(w http.ResponseWriter, r *http.Request, c *call) {
	p, ok := s.orgPSK(w, r, c)
	if !ok {
		return
	}
	// A concurrent delete got there first: the identity is gone either way.
	if err := s.cfg.Store.DeletePSKIdentity(r.Context(), p.Identity); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Certificates.

type certificateRep struct {
	ID            string           `json:"ID"`
	Subject       string           `json:"Subject"`
	NotAfter      time.Time        `json:"NotAfter"`
	Certificate   string           `json:"Certificate,omitempty"`   // not in lists
	PrivateKey    string           `json:"PrivateKey,omitempty"`    // only in the answer to POST
	CACertificate string           `json:"CACertificate,omitempty"` // only in the answer to POST
	Links         hypermedia.Links `json:"Links"`
}

func certificateLinks(c *call, id string) hypermedia.Links {
	self := href(c.base, pathCertificate, id)
	return hypermedia.Links{}.Add("self", self, mt.Type(mt.Certificate)).Add("remove", self, "")
}

// needCA answers 503 when the server runs without a certificate authority.
func (s *Server) needCA(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.CA == nil {
		s.errorBody(w, r, http.StatusServiceUnavailable, "device certificates are unavailable: the server has no certificate authority")
		return false
	}
	return true
}

func (s *Server) listCertificates(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.needCA(w, r) {
		return
	}
	cs, err := s.cfg.Store.ListCertificates(r.Context(), c.auth.Org)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reps := make([]certificateRep, len(cs))
	for i, x := range cs {
		reps[i] = certificateRep{ID: x.ID, Subject: x.Subject, NotAfter: x.NotAfter, Links: certificateLinks(c, x.ID)}
	}
	page(s, w, r, c, reps, hypermedia.Links{}.Add("add", c.base+pathCertificates, mt.Type(mt.Certificate)))
}

type certificateBody struct {
	Subject      string `json:"Subject"`
	ValidityDays *int   `json:"ValidityDays"`
}

// createCertificate issues a device certificate and key for the caller's
// organisation. The private key is not kept: the answer is the only copy.
func (s *Server) createCertificate(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.needCA(w, r) {
		return
	}
	var body certificateBody
	if !s.decodeBody(w, r, &body, mt.Certificate) {
		return
	}
	if !validSubject(body.Subject) {
		s.badRequest(w, codeInvalidFields, "Subject must be the device's endpoint name: 1 to 64 printable characters", "Subject")
		return
	}
	days := defaultValidityDays
	if body.ValidityDays != nil {
		days = *body.ValidityDays
	}
	if days < 1 || days > maxValidityDays {
		s.badRequest(w, codeInvalidFields, "ValidityDays must be from 1 to 3650", "ValidityDays")
		return
	}
	now := s.cfg.Now().UTC()
	certPEM, keyPEM, serial, notAfter, err := s.cfg.CA.Issue(c.auth.Org, body.Subject, time.Duration(days)*24*time.Hour, now)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	x := storage.Certificate{ID: serial, OrganisationID: c.auth.Org, Subject: body.Subject, PEM: certPEM, NotAfter: notAfter, CreatedAt: now}
	if err := s.cfg.Store.CreateCertificate(r.Context(), x); err != nil {
		s.fail(w, r, err)
		return
	}
	self := href(c.base, pathCertificate, x.ID)
	w.Header().Set("Location", self)
	s.write(w, c, http.StatusCreated, certificateRep{
		ID: x.ID, Subject: x.Subject, NotAfter: x.NotAfter,
		Certificate: x.PEM, PrivateKey: keyPEM, CACertificate: s.cfg.CA.CertificatePEM(),
		Links: hypermedia.Links{}.Add("self", self, mt.Type(mt.Certificate)),
	})
}

// validSubject reports whether v can be a certificate's common name and a
// device's endpoint name.
func validSubject(v string) bool {
	if strings.TrimSpace(v) == "" || !utf8.ValidString(v) || utf8.RuneCountInString(v) > security.MaxCommonName {
		return false
	}
	return !strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) })
}

// orgCertificate loads a certificate of the caller's organisation; other
// tenants' certificates are 404.
func (s *Server) orgCertificate(w http.ResponseWriter, r *http.Request, c *call) (storage.Certificate, bool) {
	return owned(s, w, r, c, c.vars["certificate"], s.cfg.Store.GetCertificate, func(v storage.Certificate) string { return v.OrganisationID })
}

func (s *Server) getCertificate(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.needCA(w, r) {
		return
	}
	if x, ok := s.orgCertificate(w, r, c); ok {
		s.write(w, c, http.StatusOK, certificateRep{ID: x.ID, Subject: x.Subject, NotAfter: x.NotAfter,
			Certificate: x.PEM, Links: certificateLinks(c, x.ID)})
	}
}

// deleteCertificate forgets an issued certificate; the DTLS transport
// refuses certificates the store no longer has.
func (s *Server) deleteCertificate(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.needCA(w, r) {
		return
	}
	x, ok := s.orgCertificate(w, r, c)
	if !ok {
		return
	}
	if err := s.cfg.Store.DeleteCertificate(r.Context(), x.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// optionalBody is decodeBody for routes whose body may be left out: an
// empty body needs no Content-Type and leaves v as it is.
func (s *Server) optionalBody(w http.ResponseWriter, r *http.Request, v any, types ...string) bool {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.errorBody(w, r, http.StatusRequestEntityTooLarge, "body too large")
			return false
		}
		s.badRequest(w, codeMalformed, "cannot read the body")
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return true
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return s.decodeBody(w, r, v, types...)
}
