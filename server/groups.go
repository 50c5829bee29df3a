package server

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/deviceserver/deviceserver/hypermedia"
	mt "github.com/deviceserver/deviceserver/mimetypes"
	"github.com/deviceserver/deviceserver/storage"
)

// groupRep is application/vnd.imgtec.group: a named set of endpoint names
// of the organisation (API.md section 5, "Groups").
type groupRep struct {
	ID        string           `json:"ID"`
	Name      string           `json:"Name"`
	Endpoints []string         `json:"Endpoints"`
	Links     hypermedia.Links `json:"Links"`
}

// groupBody is what POST and PUT take. ID and Links are tolerated so that
// a representation can be sent back; PUT refuses a different ID.
type groupBody struct {
	Name      string           `json:"Name"`
	Endpoints []string         `json:"Endpoints"`
	ID        string           `json:"ID,omitempty"`
	Links     hypermedia.Links `json:"Links,omitempty"`
}

func (s *Server) groupRep(c *call, g storage.Group) groupRep {
	self := href(c.base, pathGroup, g.ID)
	eps := g.Endpoints
	if eps == nil {
		eps = []string{}
	}
	return groupRep{ID: g.ID, Name: g.Name, Endpoints: eps, Links: hypermedia.Links{}.
		Add("self", self, mt.Type(mt.Group)).
		Add("update", self, mt.Type(mt.Group)).
		Add("remove", self, "").
		Add("clients", c.base+pathClients+"?group="+url.QueryEscape(g.Name), mt.Type(mt.Clients))}
}

// groupFromBody decodes and checks a POST or PUT body; the engine checks
// the rest (*subscriptions.ValidationError).
func (s *Server) groupFromBody(w http.ResponseWriter, r *http.Request) (groupBody, bool) {
	var body groupBody
	if !s.decodeBody(w, r, &body, mt.Group) {
		return body, false
	}
	if strings.TrimSpace(body.Name) == "" {
		s.badRequest(w, codeInvalidFields, "Name is required", "Name")
		return body, false
	}
	if body.Endpoints == nil {
		body.Endpoints = []string{}
	}
	return body, true
}

// groupFail answers a failed group change: a name clash is 409 with the name.
func (s *Server) groupFail(w http.ResponseWriter, r *http.Request, name string, err error) {
	if errors.Is(err, storage.ErrConflict) {
		s.errorBody(w, r, http.StatusConflict, "the organisation already has a group named "+name)
		return
	}
	s.fail(w, r, err)
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request, c *call) {
	groups, err := s.cfg.Store.ListGroups(r.Context(), c.auth.Org)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reps := make([]groupRep, len(groups))
	for i, g := range groups {
		reps[i] = s.groupRep(c, g)
	}
	page(s, w, r, c, reps, hypermedia.Links{}.Add("add", c.base+pathGroups, mt.Type(mt.Group)))
}

// createGroup: POST /groups → 201 resourcecreated.
func (s *Server) createGroup(w http.ResponseWriter, r *http.Request, c *call) {
	body, ok := s.groupFromBody(w, r)
	if !ok {
		return
	}
	g, err := s.cfg.Subscriptions.CreateGroup(r.Context(), storage.Group{OrganisationID: c.auth.Org, Name: body.Name, Endpoints: body.Endpoints})
	if err != nil {
		s.groupFail(w, r, body.Name, err)
		return
	}
	self := href(c.base, pathGroup, g.ID)
	w.Header().Set("Location", self)
	s.write(w, c, http.StatusCreated, createdRep{ID: g.ID, Links: hypermedia.Links{}.Add("self", self, mt.Type(mt.Group))})
}

// orgGroup loads a group of the caller's organisation; other tenants' are 404.
func (s *Server) orgGroup(w http.ResponseWriter, r *http.Request, c *call) (storage.Group, bool) {
	return owned(s, w, r, c, c.vars["group"], s.cfg.Store.GetGroup, func(v storage.Group) string { return v.OrganisationID })
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request, c *call) {
	if g, ok := s.orgGroup(w, r, c); ok {
		s.write(w, c, http.StatusOK, s.groupRep(c, g))
	}
}

// updateGroup replaces the group's Name and Endpoints.
func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request, c *call) {
	g, ok := s.orgGroup(w, r, c)
	if !ok {
		return
	}
	body, ok := s.groupFromBody(w, r)
	if !ok {
		return
	}
	if body.ID != "" && body.ID != g.ID {
		s.badRequest(w, codeInvalidFields, "ID cannot be changed", "ID")
		return
	}
	g.Name, g.Endpoints = body.Name, body.Endpoints
	if err := s.cfg.Subscriptions.UpdateGroup(r.Context(), g); err != nil {
		s.groupFail(w, r, body.Name, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request, c *call) {
	g, ok := s.orgGroup(w, r, c)
	if !ok {
		return
	}
	if err := s.cfg.Subscriptions.DeleteGroup(r.Context(), g.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
