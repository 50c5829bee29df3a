package server

import "net/http"

func (s *Server) getIdentities(w http.ResponseWriter, r *http.Request, c *call) { s.notYet(w, r) }
func (s *Server) listPSKs(w http.ResponseWriter, r *http.Request, c *call)      { s.notYet(w, r) }
func (s *Server) createPSK(w http.ResponseWriter, r *http.Request, c *call)     { s.notYet(w, r) }
func (s *Server) getPSK(w http.ResponseWriter, r *http.Request, c *call)        { s.notYet(w, r) }
func (s *Server) deletePSK(w http.ResponseWriter, r *http.Request, c *call)     { s.notYet(w, r) }
func (s *Server) listCertificates(w http.ResponseWriter, r *http.Request, c *call) {
	s.notYet(w, r)
}
func (s *Server) createCertificate(w http.ResponseWriter, r *http.Request, c *call) {
	s.notYet(w, r)
}
func (s *Server) getCertificate(w http.ResponseWriter, r *http.Request, c *call) { s.notYet(w, r) }
func (s *Server) deleteCertificate(w http.ResponseWriter, r *http.Request, c *call) {
	s.notYet(w, r)
}

func (s *Server) notYet(w http.ResponseWriter, r *http.Request) {
	s.errorBody(w, r, http.StatusNotImplemented, "not implemented yet")
}
