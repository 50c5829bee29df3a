package server

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/deviceserver/deviceserver/hypermedia"
	"github.com/deviceserver/deviceserver/lwm2m"
	"github.com/deviceserver/deviceserver/lwm2m/model"
	mt "github.com/deviceserver/deviceserver/mimetypes"
)

// propertyRep is one resource definition as the REST API shows it.
type propertyRep struct {
	PropertyDefinitionID string `json:"PropertyDefinitionID"`
	PropertyID           string `json:"PropertyID"`
	Name                 string `json:"Name"`
	DataType             string `json:"DataType"`
	IsCollection         bool   `json:"IsCollection"`
	IsMandatory          bool   `json:"IsMandatory"`
	Access               string `json:"Access,omitempty"`
	Units                string `json:"Units,omitempty"`
	MinValue             string `json:"MinValue,omitempty"`
	MaxValue             string `json:"MaxValue,omitempty"`
	SerialisationName    string `json:"SerialisationName"`
	Description          string `json:"Description,omitempty"`
}

// definitionRep is an object definition as the REST API shows it.
type definitionRep struct {
	ObjectDefinitionID string           `json:"ObjectDefinitionID"`
	ObjectID           string           `json:"ObjectID"`
	Name               string           `json:"Name"`
	MIMEType           string           `json:"MIMEType"`
	SerialisationName  string           `json:"SerialisationName"`
	Singleton          bool             `json:"Singleton"`
	IsMandatory        bool             `json:"IsMandatory"`
	Description        string           `json:"Description,omitempty"`
	Properties         []propertyRep    `json:"Properties"`
	Links              hypermedia.Links `json:"Links,omitempty"`
}

var accessNames = map[string]string{"R": "Read", "W": "Write", "RW": "ReadWrite", "E": "Execute"}

// rangeBounds splits a DDF RangeEnumeration such as "0..100" or "1-255".
func rangeBounds(s string) (lo, hi string) {
	for _, sep := range []string{"..", "-"} {
		if a, b, ok := strings.Cut(s, sep); ok && a != "" {
			if _, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64); err1 == nil {
				if _, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64); err2 == nil {
					return strings.TrimSpace(a), strings.TrimSpace(b)
				}
			}
		}
	}
	return "", ""
}

func (s *Server) definitionRep(c *call, o *model.Object, custom bool) definitionRep {
	id := strconv.Itoa(int(o.ID))
	rep := definitionRep{ObjectDefinitionID: id, ObjectID: id, Name: o.Name, MIMEType: o.MIMEType,
		SerialisationName: o.SerialisationName, Singleton: !o.MultipleInstances, IsMandatory: o.Mandatory,
		Description: o.Description, Properties: []propertyRep{}}
	for _, r := range o.Resources {
		rid := strconv.Itoa(int(r.ID))
		lo, hi := rangeBounds(r.RangeEnumeration)
		rep.Properties = append(rep.Properties, propertyRep{PropertyDefinitionID: rid, PropertyID: rid, Name: r.Name,
			DataType: r.Type.String(), IsCollection: r.Multiple, IsMandatory: r.Mandatory, Access: accessNames[r.Operations],
			Units: r.Units, MinValue: lo, MaxValue: hi, SerialisationName: r.SerialisationName, Description: r.Description})
	}
	self := href(c.base, pathDefinition, id)
	rep.Links = rep.Links.Add("self", self, mt.Type(mt.ObjectDefinition))
	rep.Links = rep.Links.Add("update", self, mt.Type(mt.ObjectDefinition))
	if custom {
		rep.Links = rep.Links.Add("remove", self, "")
	}
	return rep
}

func (s *Server) listDefinitions(w http.ResponseWriter, r *http.Request, c *call) {
	objs := s.cfg.Models.List(c.auth.Org)
	reps := make([]definitionRep, len(objs))
	for i, o := range objs {
		reps[i] = s.definitionRep(c, o, s.cfg.Models.Custom(c.auth.Org, o.ID))
	}
	page(s, w, r, c, reps, hypermedia.Links{}.Add("add", c.base+pathDefinitions, mt.Type(mt.ObjectDefinition)))
}

// definitionVar resolves {definition} (the object ID) in the caller's view.
func (s *Server) definitionVar(w http.ResponseWriter, r *http.Request, c *call) (*model.Object, bool) {
	n, err := strconv.ParseUint(c.vars["definition"], 10, 16)
	if err == nil {
		if o, ok := s.cfg.Models.Lookup(c.auth.Org, uint16(n)); ok {
			return o, true
		}
	}
	s.errorBody(w, r, http.StatusNotFound, "no object definition "+c.vars["definition"])
	return nil, false
}

func (s *Server) getDefinition(w http.ResponseWriter, r *http.Request, c *call) {
	if o, ok := s.definitionVar(w, r, c); ok {
		s.write(w, c, http.StatusOK, s.definitionRep(c, o, s.cfg.Models.Custom(c.auth.Org, o.ID)))
	}
}

// toObject validates a definition body and turns it into a model object.
func toObject(rep definitionRep) (*model.Object, []string) {
	var bad []string
	id, err := strconv.ParseUint(rep.ObjectID, 10, 16)
	if err != nil || id == 65535 {
		bad = append(bad, "ObjectID")
	}
	if rep.ObjectDefinitionID != "" && rep.ObjectDefinitionID != rep.ObjectID {
		bad = append(bad, "ObjectDefinitionID")
	}
	if strings.TrimSpace(rep.Name) == "" {
		bad = append(bad, "Name")
	}
	o := &model.Object{ID: uint16(id), Name: rep.Name, Description: rep.Description, MultipleInstances: !rep.Singleton,
		Mandatory: rep.IsMandatory, MIMEType: rep.MIMEType, SerialisationName: rep.SerialisationName, Version: "1.0"}
	if o.SerialisationName == "" {
		o.SerialisationName = model.SerialisationName(rep.Name)
	}
	if o.MIMEType == "" {
		o.MIMEType = model.MIMEType(rep.Name)
	}
	// The type is sent as Content-Type and matched against Accept: a bare,
	// lower-case vendor type without a +format suffix.
	if mt, params, err := mime.ParseMediaType(o.MIMEType); err != nil || len(params) > 0 || mt != o.MIMEType ||
		!strings.HasPrefix(mt, "application/vnd.") || strings.Contains(mt, "+") {
		bad = append(bad, "MIMEType")
	}
	seen := map[uint64]bool{}
	ops := map[string]string{"": "", "Read": "R", "Write": "W", "ReadWrite": "RW", "Execute": "E"}
	for i, p := range rep.Properties {
		field := "Properties[" + strconv.Itoa(i) + "]"
		rid, err := strconv.ParseUint(p.PropertyID, 10, 16)
		if err != nil || rid == 65535 || seen[rid] {
			bad = append(bad, field+".PropertyID")
			continue
		}
		seen[rid] = true
		t, err := lwm2m.ParseDataType(p.DataType)
		if err != nil {
			bad = append(bad, field+".DataType")
		}
		op, ok := ops[p.Access]
		if !ok {
			bad = append(bad, field+".Access")
		}
		if strings.TrimSpace(p.Name) == "" {
			bad = append(bad, field+".Name")
		}
		res := &model.Resource{ID: uint16(rid), Name: p.Name, Operations: op, Multiple: p.IsCollection, Mandatory: p.IsMandatory,
			Type: t, Units: p.Units, Description: p.Description, SerialisationName: p.SerialisationName}
		if p.MinValue != "" || p.MaxValue != "" {
			res.RangeEnumeration = p.MinValue + ".." + p.MaxValue
		}
		if res.SerialisationName == "" {
			res.SerialisationName = model.SerialisationName(p.Name)
		}
		o.Resources = append(o.Resources, res)
	}
	return o, bad
}

// createDefinition adds an organisation's own definitions: one
// (objectdefinition) or several at once (objectdefinitions with Items).
// Each overrides a built-in of the same ObjectID for that organisation
// only. Several are all-or-nothing: any invalid one rejects the request.
func (s *Server) createDefinition(w http.ResponseWriter, r *http.Request, c *call) {
	var reps []definitionRep
	bulk := strings.HasPrefix(r.Header.Get("Content-Type"), mt.Type(mt.ObjectDefinitions))
	if bulk {
		var body struct {
			Items []definitionRep `json:"Items"`
		}
		if !s.decodeBody(w, r, &body, mt.ObjectDefinitions) {
			return
		}
		if len(body.Items) == 0 {
			s.badRequest(w, codeInvalidFields, "Items is empty", "Items")
			return
		}
		reps = body.Items
	} else {
		var one definitionRep
		if !s.decodeBody(w, r, &one, mt.ObjectDefinition) {
			return
		}
		reps = append(reps, one)
	}
	var objs []*model.Object
	var bad []string
	seen := map[uint16]bool{}
	for i, rep := range reps {
		o, invalid := toObject(rep)
		prefix := ""
		if bulk {
			prefix = "Items[" + strconv.Itoa(i) + "]."
		}
		for _, f := range invalid {
			bad = append(bad, prefix+f)
		}
		if len(invalid) == 0 && seen[o.ID] {
			bad = append(bad, prefix+"ObjectID")
		}
		if len(invalid) == 0 {
			seen[o.ID] = true
			objs = append(objs, o)
		}
	}
	if len(bad) > 0 {
		s.badRequest(w, codeInvalidFields, "invalid fields", bad...)
		return
	}
	for _, o := range objs {
		if s.cfg.Models.Custom(c.auth.Org, o.ID) {
			s.errorBody(w, r, http.StatusConflict, "the organisation already defines object "+strconv.Itoa(int(o.ID)))
			return
		}
	}
	created := make([]createdRep, 0, len(objs))
	for _, o := range objs {
		if err := s.cfg.Store.PutObjectDefinition(r.Context(), c.auth.Org, *o); err != nil {
			s.fail(w, r, err)
			return
		}
		s.cfg.Models.Put(c.auth.Org, o)
		id := strconv.Itoa(int(o.ID))
		created = append(created, createdRep{ID: id, Links: hypermedia.Links{}.Add("self", href(c.base, pathDefinition, id), mt.Type(mt.ObjectDefinition))})
	}
	if !bulk {
		w.Header().Set("Location", created[0].Links[0].Href)
		s.write(w, c, http.StatusCreated, created[0])
		return
	}
	if !s.negotiate(w, r, c, mt.Type(mt.ResourcesCreated)) {
		return
	}
	s.write(w, c, http.StatusCreated, struct {
		Items []createdRep     `json:"Items"`
		Links hypermedia.Links `json:"Links"`
	}{created, hypermedia.Links{}.Add("definitions", c.base+pathDefinitions, mt.Type(mt.ObjectDefinitions))})
}

func (s *Server) updateDefinition(w http.ResponseWriter, r *http.Request, c *call) {
	cur, ok := s.definitionVar(w, r, c)
	if !ok {
		return
	}
	var rep definitionRep
	if !s.decodeBody(w, r, &rep, mt.ObjectDefinition) {
		return
	}
	if rep.ObjectID == "" {
		rep.ObjectID = strconv.Itoa(int(cur.ID))
	}
	o, bad := toObject(rep)
	if len(bad) == 0 && o.ID != cur.ID {
		bad = append(bad, "ObjectID")
	}
	if len(bad) > 0 {
		s.badRequest(w, codeInvalidFields, "invalid fields", bad...)
		return
	}
	if err := s.cfg.Store.PutObjectDefinition(r.Context(), c.auth.Org, *o); err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Models.Put(c.auth.Org, o)
	w.WriteHeader(http.StatusNoContent)
}

// deleteDefinition removes an organisation's own definition (the built-in,
// if any, shows again); built-ins themselves cannot be deleted.
func (s *Server) deleteDefinition(w http.ResponseWriter, r *http.Request, c *call) {
	o, ok := s.definitionVar(w, r, c)
	if !ok {
		return
	}
	if !s.cfg.Models.Custom(c.auth.Org, o.ID) {
		s.errorBody(w, r, http.StatusForbidden, "built-in definitions cannot be deleted")
		return
	}
	if err := s.cfg.Store.DeleteObjectDefinition(r.Context(), c.auth.Org, o.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Models.Delete(c.auth.Org, o.ID)
	w.WriteHeader(http.StatusNoContent)
}
