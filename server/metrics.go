package server

import "net/http"

func (s *Server) listMetrics(w http.ResponseWriter, r *http.Request, c *call)       { s.notYet(w, r) }
func (s *Server) getMetric(w http.ResponseWriter, r *http.Request, c *call)         { s.notYet(w, r) }
func (s *Server) listClientMetrics(w http.ResponseWriter, r *http.Request, c *call) { s.notYet(w, r) }
func (s *Server) getClientMetric(w http.ResponseWriter, r *http.Request, c *call)   { s.notYet(w, r) }
func (s *Server) getConfiguration(w http.ResponseWriter, r *http.Request, c *call)  { s.notYet(w, r) }
func (s *Server) getBootstrap(w http.ResponseWriter, r *http.Request, c *call)      { s.notYet(w, r) }
