package server

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/deviceserver/deviceserver/hypermedia"
	"github.com/deviceserver/deviceserver/lwm2m"
	mt "github.com/deviceserver/deviceserver/mimetypes"
	"github.com/deviceserver/deviceserver/storage"
)

// Metric names (API.md section 6), shown with this spelling and matched
// case-insensitively in URLs.
const (
	metricBytesSent        = "BytesSent"
	metricBytesReceived    = "BytesReceived"
	metricTransactionCount = "TransactionCount"
	metricNumberClients    = "NumberClients" // organisation only
)

type metricRep struct {
	Name  string           `json:"Name"`
	Value int64            `json:"Value"`
	Links hypermedia.Links `json:"Links"`
}

// trafficMetrics lists the traffic counters as metrics; self builds each
// metric's href from its name.
func trafficMetrics(t lwm2m.Traffic, self func(name string) string) []metricRep {
	reps := []metricRep{
		{Name: metricBytesSent, Value: t.BytesSent},
		{Name: metricBytesReceived, Value: t.BytesReceived},
		{Name: metricTransactionCount, Value: t.TransactionCount},
	}
	for i := range reps {
		reps[i].Links = hypermedia.Links{}.Add("self", self(reps[i].Name), mt.Type(mt.Metric))
	}
	return reps
}

// orgMetrics returns the metrics of the caller's organisation.
func (s *Server) orgMetrics(ctx context.Context, c *call) ([]metricRep, error) {
	var t lwm2m.Traffic
	if s.cfg.Metrics != nil {
		t = s.cfg.Metrics.OrganisationTraffic(c.auth.Org)
	}
	// Only the total is wanted; a one-item page keeps the query cheap.
	_, n, err := s.cfg.Store.ListRegistrations(ctx, storage.RegistrationFilter{Organisation: c.auth.Org, Now: s.cfg.Now()}, 0, 1)
	if err != nil {
		return nil, err
	}
	self := func(name string) string { return href(c.base, pathMetric, name) }
	reps := trafficMetrics(t, self)
	return append(reps, metricRep{Name: metricNumberClients, Value: int64(n),
		Links: hypermedia.Links{}.Add("self", self(metricNumberClients), mt.Type(mt.Metric))}), nil
}

// clientMetrics returns the metrics of a client; counters the device side
// does not know (no Metrics configured, or not seen since start) are zero.
func (s *Server) clientMetrics(c *call, reg lwm2m.Registration) []metricRep {
	var t lwm2m.Traffic
	if s.cfg.Metrics != nil {
		t = s.cfg.Metrics.ClientTraffic(reg.ID)
	}
	return trafficMetrics(t, func(name string) string { return href(c.base, pathClientMetric, reg.ID, name) })
}

// writeMetric answers with the metric of reps named in the URL, or 404.
func (s *Server) writeMetric(w http.ResponseWriter, r *http.Request, c *call, reps []metricRep) {
	name := c.vars["metric"]
	for _, m := range reps {
		if strings.EqualFold(m.Name, name) {
			s.write(w, c, http.StatusOK, m)
			return
		}
	}
	s.errorBody(w, r, http.StatusNotFound, "no metric "+name)
}

func (s *Server) listMetrics(w http.ResponseWriter, r *http.Request, c *call) {
	reps, err := s.orgMetrics(r.Context(), c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page(s, w, r, c, reps, hypermedia.Links{})
}

func (s *Server) getMetric(w http.ResponseWriter, r *http.Request, c *call) {
	reps, err := s.orgMetrics(r.Context(), c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeMetric(w, r, c, reps)
}

func (s *Server) listClientMetrics(w http.ResponseWriter, r *http.Request, c *call) {
	if reg, ok := s.registration(w, r, c); ok {
		page(s, w, r, c, s.clientMetrics(c, reg), hypermedia.Links{})
	}
}

func (s *Server) getClientMetric(w http.ResponseWriter, r *http.Request, c *call) {
	if reg, ok := s.registration(w, r, c); ok {
		s.writeMetric(w, r, c, s.clientMetrics(c, reg))
	}
}

type configurationRep struct {
	Links hypermedia.Links `json:"Links"`
}

func (s *Server) getConfiguration(w http.ResponseWriter, r *http.Request, c *call) {
	s.write(w, c, http.StatusOK, configurationRep{Links: hypermedia.Links{}.
		Add("self", c.base+pathConfiguration, mt.Type(mt.Configuration)).
		Add("bootstrap", c.base+pathBootstrap, mt.Type(mt.Bootstrap))})
}

// bootstrapRep tells devices where the server is; a URI the server does
// not serve is left out.
type bootstrapRep struct {
	CoAPURI  string           `json:"CoAPURI,omitempty"`
	CoAPSURI string           `json:"CoAPSURI,omitempty"`
	Links    hypermedia.Links `json:"Links"`
}

func (s *Server) getBootstrap(w http.ResponseWriter, r *http.Request, c *call) {
	s.write(w, c, http.StatusOK, bootstrapRep{
		CoAPURI:  advertisedURI(s.cfg.Bootstrap.CoAPURI, c.base),
		CoAPSURI: advertisedURI(s.cfg.Bootstrap.CoAPSURI, c.base),
		Links:    hypermedia.Links{}.Add("self", c.base+pathBootstrap, mt.Type(mt.Bootstrap)),
	})
}

// advertisedURI makes a listener URI usable by devices: a server listening
// on all interfaces (coap://[::]:5683) is reached under the host name the
// caller used for the API, which is the best guess of a name devices can
// resolve too. Other URIs are returned as configured.
func advertisedURI(uri, base string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" {
		return uri
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return uri
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return uri
	}
	b, err := url.Parse(base)
	if err != nil || b.Hostname() == "" {
		return uri
	}
	u.Host = net.JoinHostPort(b.Hostname(), port)
	return u.String()
}
