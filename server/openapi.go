package server

import (
	_ "embed"
	"net/http"
	"strconv"

	mt "github.com/deviceserver/deviceserver/mimetypes"
)

// openAPIDocument describes every route of the API in OpenAPI 3.0 (docs/api.md
// is the prose reference); server/docs_test.go keeps both in step with routes().
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPIType is the media type of the OpenAPI document; negotiation answers
// application/vnd.oai.openapi+json, also for Accept: application/json.
const openAPIType = "application/vnd.oai.openapi"

// openAPIFormats: the document exists in JSON only, whatever else the API
// learns to produce.
var openAPIFormats = mt.Negotiator{Formats: []mt.Format{mt.JSON}}

// openAPI serves GET /openapi.json, public so that tools can read the
// description of the API before they have a token.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request, c *call) {
	ch, err := openAPIFormats.Negotiate(r.Header.Get("Accept"), openAPIType)
	if err != nil {
		s.errorBody(w, r, http.StatusNotAcceptable, "the OpenAPI document is "+openAPIType+"+json")
		return
	}
	w.Header().Set("Content-Type", ch.ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
	_, _ = w.Write(openAPIDocument)
}
