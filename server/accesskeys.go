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

type accessKeyRep struct {
	Name   string           `json:"Name"`
	Key    string           `json:"Key"`
	Secret string           `json:"Secret,omitempty"` // only in the answer to POST
	Links  hypermedia.Links `json:"Links"`
}

type listRep[T any] struct {
	PageInfo hypermedia.PageInfo `json:"PageInfo"`
	Items    []T                 `json:"Items"`
	Links    hypermedia.Links    `json:"Links"`
}

func (s *Server) accessKeyRep(c *call, k storage.AccessKey) accessKeyRep {
	self := href(c.base, pathAccessKey, k.Key)
	rep := accessKeyRep{Name: k.Name, Key: k.Key, Links: hypermedia.Links{}.
		Add("self", self, mt.Type(mt.AccessKey)).
		Add("update", self, mt.Type(mt.AccessKey))}
	// A key cannot delete itself, so its own representation offers no remove.
	if k.Key != c.auth.key() {
		rep.Links = rep.Links.Add("remove", self, "")
	}
	return rep
}

// page answers a list request with one page of all (400 for invalid
// paging parameters).
func page[T any](s *Server, w http.ResponseWriter, r *http.Request, c *call, all []T, add hypermedia.Links) {
	start, size, ok := s.pageParams(w, r)
	if !ok {
		return
	}
	items := []T{}
	if start < len(all) {
		items = all[start:min(start+size, len(all))]
	}
	writePage(s, w, r, c, items, start, size, len(all), add)
}

// pageParams reads startIndex and pageSize, answering 400 when invalid.
func (s *Server) pageParams(w http.ResponseWriter, r *http.Request) (start, size int, ok bool) {
	start, size, field, err := hypermedia.PageRequest(r.URL.Query())
	if err != nil {
		s.badRequest(w, codeInvalidFields, err.Error(), field)
		return 0, 0, false
	}
	return start, size, true
}

// writePage sends a list representation of one page.
func writePage[T any](s *Server, w http.ResponseWriter, r *http.Request, c *call, items []T, start, size, total int, add hypermedia.Links) {
	if items == nil {
		items = []T{}
	}
	self, _ := url.Parse(c.base + r.URL.RequestURI())
	s.write(w, c, http.StatusOK, listRep[T]{
		PageInfo: hypermedia.NewPageInfo(self, start, size, len(items), total),
		Items:    items,
		Links:    add,
	})
}

func (s *Server) listAccessKeys(w http.ResponseWriter, r *http.Request, c *call) {
	keys, err := s.cfg.Store.ListAccessKeys(r.Context(), c.auth.Org)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reps := make([]accessKeyRep, len(keys))
	for i, k := range keys {
		reps[i] = s.accessKeyRep(c, k)
	}
	page(s, w, r, c, reps, hypermedia.Links{}.Add("add", c.base+pathAccessKeys, mt.Type(mt.AccessKey)))
}

type accessKeyBody struct {
	Name  string           `json:"Name"`
	Links hypermedia.Links `json:"Links,omitempty"` // tolerated so a GET representation can be PUT back
	Key   string           `json:"Key,omitempty"`
}

// createAccessKey: the administrator creates a new organisation with its
// first key; anyone else adds a key to their own organisation.
func (s *Server) createAccessKey(w http.ResponseWriter, r *http.Request, c *call) {
	var body accessKeyBody
	if !s.decodeBody(w, r, &body, mt.AccessKey) {
		return
	}
	if strings.TrimSpace(body.Name) == "" {
		s.badRequest(w, codeInvalidFields, "Name is required", "Name")
		return
	}
	ctx := r.Context()
	now := s.cfg.Now().UTC()
	org := c.auth.Org
	if c.auth.Admin {
		org = randomID(9)
		if err := s.cfg.Store.CreateOrganisation(ctx, storage.Organisation{ID: org, Name: body.Name, CreatedAt: now}); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	secret := randomID(24)
	hash, err := HashSecret(secret, s.cfg.HashCost)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	k := storage.AccessKey{Key: randomID(12), Name: body.Name, OrganisationID: org, SecretHash: hash, CreatedAt: now}
	if err := s.cfg.Store.CreateAccessKey(ctx, k); err != nil {
		s.fail(w, r, err)
		return
	}
	rep := s.accessKeyRep(c, k)
	rep.Secret = secret
	w.Header().Set("Location", href(c.base, pathAccessKey, k.Key))
	s.write(w, c, http.StatusCreated, rep)
}

// orgKey loads a key of the caller's organisation; other tenants' keys are 404.
func (s *Server) orgKey(w http.ResponseWriter, r *http.Request, c *call) (storage.AccessKey, bool) {
	return owned(s, w, r, c, c.vars["key"], s.cfg.Store.GetAccessKey, func(v storage.AccessKey) string { return v.OrganisationID })
}

func (s *Server) getAccessKey(w http.ResponseWriter, r *http.Request, c *call) {
	if k, ok := s.orgKey(w, r, c); ok {
		s.write(w, c, http.StatusOK, s.accessKeyRep(c, k))
	}
}

func (s *Server) updateAccessKey(w http.ResponseWriter, r *http.Request, c *call) {
	k, ok := s.orgKey(w, r, c)
	if !ok {
		return
	}
	var body accessKeyBody
	if !s.decodeBody(w, r, &body, mt.AccessKey) {
		return
	}
	if strings.TrimSpace(body.Name) == "" {
		s.badRequest(w, codeInvalidFields, "Name is required", "Name")
		return
	}
	if body.Key != "" && body.Key != k.Key {
		s.badRequest(w, codeInvalidFields, "Key cannot be changed", "Key")
		return
	}
	k.Name = body.Name
	if err := s.cfg.Store.UpdateAccessKey(r.Context(), k); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteAccessKey(w http.ResponseWriter, r *http.Request, c *call) {
	k, ok := s.orgKey(w, r, c)
	if !ok {
		return
	}
	if k.Key == c.auth.key() {
		s.errorBody(w, r, http.StatusConflict, "a key cannot delete itself")
		return
	}
	if err := s.cfg.Store.DeleteAccessKey(r.Context(), k.Key); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
