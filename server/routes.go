package server

import (
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/gorilla/mux"

	"github.com/deviceserver/deviceserver/hypermedia"
	mt "github.com/deviceserver/deviceserver/mimetypes"
)

// Route paths, one place for every URL shape the API serves.
const (
	pathRoot          = "/"
	pathToken         = "/oauth/token"
	pathVersions      = "/versions"
	pathAccessKeys    = "/accesskeys"
	pathAccessKey     = "/accesskeys/{key}"
	pathClients       = "/clients"
	pathClient        = "/clients/{client}"
	pathClientSubs    = "/clients/{client}/subscriptions"
	pathObjectTypes   = "/clients/{client}/objecttypes"
	pathObjectType    = "/clients/{client}/objecttypes/{object:[0-9]+}"
	pathInstances     = "/clients/{client}/objecttypes/{object:[0-9]+}/instances"
	pathInstance      = "/clients/{client}/objecttypes/{object:[0-9]+}/instances/{instance:[0-9]+}"
	pathInstanceSubs  = "/clients/{client}/objecttypes/{object:[0-9]+}/instances/{instance:[0-9]+}/subscriptions"
	pathResource      = "/clients/{client}/objecttypes/{object:[0-9]+}/instances/{instance:[0-9]+}/resources/{resource:[0-9]+}"
	pathDefinitions   = "/objecttypes/definitions"
	pathDefinition    = "/objecttypes/definitions/{definition}"
	pathSubscriptions = "/subscriptions"
	pathSubscription  = "/subscriptions/{subscription}"
	pathGroups        = "/groups"
	pathGroup         = "/groups/{group}"
	pathIdentities    = "/identities"
	pathPSKs          = "/identities/psk"
	pathPSK           = "/identities/psk/{identity}"
	pathCertificates  = "/identities/certificates"
	pathCertificate   = "/identities/certificates/{certificate}"
	pathMetrics       = "/metrics"
	pathMetric        = "/metrics/{metric}"
	pathClientMetrics = "/clients/{client}/metrics"
	pathClientMetric  = "/clients/{client}/metrics/{metric}"
	pathConfiguration = "/configuration"
	pathBootstrap     = "/configuration/bootstrap"
	pathOpenAPI       = "/openapi.json"

	// The compatibility API (API.md section 7).
	pathM2MRegistration  = "/m2m/applications/registration"
	pathM2MSubscriptions = "/m2m/subscriptions"
	pathM2MSubscription  = "/m2m/subscriptions/{subscriptionid}"
)

func (s *Server) routes() {
	s.public(pathRoot, http.MethodGet, mt.API, s.root)
	s.public(pathVersions, http.MethodGet, mt.Versions, s.versions)
	s.public(pathToken, http.MethodPost, mt.OAuthToken, s.token)
	s.public(pathOpenAPI, http.MethodGet, "", s.openAPI)

	s.route(pathAccessKeys, http.MethodGet, mt.AccessKeys, s.listAccessKeys)
	s.route(pathAccessKeys, http.MethodPost, mt.AccessKey, s.createAccessKey)
	s.route(pathAccessKey, http.MethodGet, mt.AccessKey, s.getAccessKey)
	s.route(pathAccessKey, http.MethodPut, "", s.updateAccessKey)
	s.route(pathAccessKey, http.MethodDelete, "", s.deleteAccessKey)

	s.route(pathClients, http.MethodGet, mt.Clients, s.listClients)
	s.route(pathClient, http.MethodGet, mt.Client, s.getClient)
	s.route(pathClient, http.MethodDelete, "", s.deleteClient)
	s.route(pathObjectTypes, http.MethodGet, mt.ObjectTypes, s.listObjectTypes)
	s.route(pathObjectType, http.MethodGet, mt.ObjectType, s.getObjectType)
	s.route(pathInstances, http.MethodGet, "", s.listInstances)
	s.route(pathInstances, http.MethodPost, mt.ResourceCreated, s.createInstance)
	s.route(pathInstance, http.MethodGet, "", s.getInstance)
	s.route(pathInstance, http.MethodPut, "", s.writeInstance)
	s.route(pathInstance, http.MethodDelete, "", s.deleteInstance)
	s.route(pathResource, http.MethodGet, "", s.getResource)
	s.route(pathResource, http.MethodPut, "", s.writeResource)
	s.route(pathResource, http.MethodPost, "", s.executeResource)

	s.route(pathDefinitions, http.MethodGet, mt.ObjectDefinitions, s.listDefinitions)
	s.route(pathDefinitions, http.MethodPost, mt.ResourceCreated, s.createDefinition)
	s.route(pathDefinition, http.MethodGet, mt.ObjectDefinition, s.getDefinition)
	s.route(pathDefinition, http.MethodPut, "", s.updateDefinition)
	s.route(pathDefinition, http.MethodDelete, "", s.deleteDefinition)

	s.route(pathSubscriptions, http.MethodGet, mt.Subscriptions, s.listOrgSubscriptions)
	s.route(pathSubscriptions, http.MethodPost, mt.ResourceCreated, s.createOrgSubscription)
	s.route(pathClientSubs, http.MethodGet, mt.Subscriptions, s.listClientSubscriptions)
	s.route(pathClientSubs, http.MethodPost, mt.ResourceCreated, s.createClientSubscription)
	s.route(pathInstanceSubs, http.MethodGet, mt.Subscriptions, s.listInstanceSubscriptions)
	s.route(pathInstanceSubs, http.MethodPost, mt.ResourceCreated, s.createInstanceSubscription)
	s.route(pathSubscription, http.MethodGet, mt.Subscription, s.getSubscription)
	s.route(pathSubscription, http.MethodPut, "", s.updateSubscription)
	s.route(pathSubscription, http.MethodDelete, "", s.deleteSubscription)

	s.route(pathGroups, http.MethodGet, mt.Groups, s.listGroups)
	s.route(pathGroups, http.MethodPost, mt.ResourceCreated, s.createGroup)
	s.route(pathGroup, http.MethodGet, mt.Group, s.getGroup)
	s.route(pathGroup, http.MethodPut, "", s.updateGroup)
	s.route(pathGroup, http.MethodDelete, "", s.deleteGroup)

	s.m2mRoute(pathM2MRegistration, http.MethodPut, s.putCallback)
	s.m2mRoute(pathM2MRegistration, http.MethodGet, s.getCallback)
	s.m2mRoute(pathM2MRegistration, http.MethodDelete, s.deleteCallback)
	s.m2mRoute(pathM2MSubscriptions, http.MethodPost, s.createM2MSubscription)
	s.m2mRoute(pathM2MSubscription, http.MethodGet, s.getM2MSubscription)
	s.m2mRoute(pathM2MSubscription, http.MethodDelete, s.deleteM2MSubscription)

	s.route(pathIdentities, http.MethodGet, mt.Identities, s.getIdentities)
	s.route(pathPSKs, http.MethodGet, mt.PSKIdentities, s.listPSKs)
	s.route(pathPSKs, http.MethodPost, mt.PSKIdentity, s.createPSK)
	s.route(pathPSK, http.MethodGet, mt.PSKIdentity, s.getPSK)
	s.route(pathPSK, http.MethodDelete, "", s.deletePSK)
	s.route(pathCertificates, http.MethodGet, mt.Certificates, s.listCertificates)
	s.route(pathCertificates, http.MethodPost, mt.Certificate, s.createCertificate)
	s.route(pathCertificate, http.MethodGet, mt.Certificate, s.getCertificate)
	s.route(pathCertificate, http.MethodDelete, "", s.deleteCertificate)

	s.route(pathMetrics, http.MethodGet, mt.Metrics, s.listMetrics)
	s.route(pathMetric, http.MethodGet, mt.Metric, s.getMetric)
	s.route(pathClientMetrics, http.MethodGet, mt.Metrics, s.listClientMetrics)
	s.route(pathClientMetric, http.MethodGet, mt.Metric, s.getClientMetric)
	s.route(pathConfiguration, http.MethodGet, mt.Configuration, s.getConfiguration)
	s.route(pathBootstrap, http.MethodGet, mt.Bootstrap, s.getBootstrap)

	s.router.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isM2M(r) {
			s.m2mError(w, http.StatusNotFound, m2mNotFound, "no such resource: "+r.URL.Path)
			return
		}
		s.errorBody(w, r, http.StatusNotFound, "no such resource: "+r.URL.Path)
	})
	s.router.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isM2M(r) {
			s.m2mError(w, http.StatusMethodNotAllowed, m2mInvalid, r.Method+" is not allowed on "+r.URL.Path)
			return
		}
		s.errorBody(w, r, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
	})
}

// href builds an absolute URL from a route path and its variables, in
// order: href(base, pathClient, id) → base + "/clients/" + id.
func href(base, pattern string, vars ...string) string {
	var b strings.Builder
	b.WriteString(base)
	rest := pattern
	for _, v := range vars {
		i := strings.IndexByte(rest, '{')
		j := strings.IndexByte(rest, '}')
		if i < 0 || j < i {
			break
		}
		b.WriteString(rest[:i])
		b.WriteString(v)
		rest = rest[j+1:]
	}
	b.WriteString(rest)
	return b.String()
}

type apiRep struct {
	Links hypermedia.Links `json:"Links"`
}

// root serves GET /: links by authentication state.
func (s *Server) root(w http.ResponseWriter, r *http.Request, c *call) {
	l := hypermedia.Links{}.
		Add("authenticate", c.base+pathToken, mt.Type(mt.OAuthToken)).
		Add("versions", c.base+pathVersions, mt.Type(mt.Versions))
	if c.auth.Org != "" {
		l = l.Add("accesskeys", c.base+pathAccessKeys, mt.Type(mt.AccessKeys)).
			Add("configuration", c.base+pathConfiguration, mt.Type(mt.Configuration)).
			Add("clients", c.base+pathClients, mt.Type(mt.Clients)).
			Add("groups", c.base+pathGroups, mt.Type(mt.Groups)).
			Add("identities", c.base+pathIdentities, mt.Type(mt.Identities)).
			Add("metrics", c.base+pathMetrics, mt.Type(mt.Metrics)).
			Add("objectdefinitions", c.base+pathDefinitions, mt.Type(mt.ObjectDefinitions)).
			Add("subscriptions", c.base+pathSubscriptions, mt.Type(mt.Subscriptions))
	}
	s.write(w, c, http.StatusOK, apiRep{Links: l})
}

type component struct {
	Name    string `json:"Name"`
	Version string `json:"Version"`
}

type versionsRep struct {
	BuildNumber string           `json:"BuildNumber"`
	Components  []component      `json:"Components"`
	Links       hypermedia.Links `json:"Links"`
}

// versions serves GET /versions from the binary's build information.
func (s *Server) versions(w http.ResponseWriter, r *http.Request, c *call) {
	rep := versionsRep{BuildNumber: "dev", Links: hypermedia.Links{}.Add("self", c.base+pathVersions, "")}
	bi, ok := debug.ReadBuildInfo()
	main := "(devel)"
	if ok {
		main = bi.Main.Version
		for _, st := range bi.Settings {
			if st.Key == "vcs.revision" {
				rep.BuildNumber = st.Value
			}
		}
	}
	rep.Components = append(rep.Components, component{"deviceserver", main})
	names := map[string]string{
		"github.com/plgd-dev/go-coap/v3": "go-coap",
		"github.com/pion/dtls/v3":        "pion-dtls",
		"github.com/gorilla/mux":         "gorilla-mux",
		"modernc.org/sqlite":             "sqlite",
		"github.com/golang-jwt/jwt/v5":   "golang-jwt",
	}
	if ok {
		for _, d := range bi.Deps {
			if n, found := names[d.Path]; found {
				rep.Components = append(rep.Components, component{n, d.Version})
			}
		}
	}
	s.write(w, c, http.StatusOK, rep)
}

// Route is one method and path template the API serves.
type Route struct {
	Method, Path string
}

// Routes lists every route, so that documentation and tests can be
// checked against what the router really serves.
func (s *Server) Routes() []Route {
	var out []Route
	_ = s.router.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := rt.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, _ := rt.GetMethods()
		for _, m := range methods {
			out = append(out, Route{Method: m, Path: tpl})
		}
		return nil
	})
	return out
}
